use super::*;

fn docs(yaml: &str) -> Objects {
    portcullis_api::parse_documents(yaml)
        .into_iter()
        .map(|d| d.unwrap())
        .map(|d| (d.key(), d))
        .collect()
}

const SVC: &str = "apiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {name: s}\nspec: {destinations: [{name: a, address: '127.0.0.1:1'}]}\n";

fn route(path: &str, timeout: &str) -> String {
    format!(
        "---\napiVersion: portcullis.dev/v1alpha1\nkind: Route\nmetadata: {{name: r}}\nspec: {{match: {{paths: [{{prefix: {path}}}]}}, backends: [{{service: s}}], timeout: {timeout}}}\n"
    )
}

#[test]
fn invalid_edit_keeps_last_served_version_and_reports_the_error() {
    let good = docs(&format!("{SVC}{}", route("/good", "5s")));
    let first = reconcile(
        &good,
        &BTreeSet::new(),
        &Objects::new(),
        &Default::default(),
        &portcullis_api::validate::Rules::file_mode(),
    );
    assert_eq!(first.served.len(), 2);
    let bad = docs(&format!("{SVC}{}", route("/bad", "90s")));
    let second = reconcile(
        &bad,
        &BTreeSet::new(),
        &first.served,
        &Default::default(),
        &portcullis_api::validate::Rules::file_mode(),
    );
    let key = ObjectKey::route("default", "r");
    assert!(second.kept.contains(&key));
    let paths: Vec<_> = second
        .outcome
        .model
        .routes
        .iter()
        .map(|e| e.path_parts().1.to_string())
        .collect();
    assert_eq!(paths, ["/good"]);
    let report = second.outcome.report(&key).unwrap();
    assert!(report.errors[0].message.contains("over the 60s maximum"));
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.message.contains("last accepted version"))
    );
    // Fixing it serves the new version.
    let fixed = docs(&format!("{SVC}{}", route("/fixed", "5s")));
    let third = reconcile(
        &fixed,
        &BTreeSet::new(),
        &second.served,
        &Default::default(),
        &portcullis_api::validate::Rules::file_mode(),
    );
    assert!(third.kept.is_empty());
    assert_eq!(third.outcome.model.routes[0].path_parts().1, "/fixed");
}

#[test]
fn unparseable_object_keeps_serving() {
    let good = docs(&format!("{SVC}{}", route("/good", "5s")));
    let first = reconcile(
        &good,
        &BTreeSet::new(),
        &Objects::new(),
        &Default::default(),
        &portcullis_api::validate::Rules::file_mode(),
    );
    let only_svc = docs(SVC);
    let failed: BTreeSet<_> = [ObjectKey::route("default", "r")].into();
    let second = reconcile(
        &only_svc,
        &failed,
        &first.served,
        &Default::default(),
        &portcullis_api::validate::Rules::file_mode(),
    );
    assert_eq!(second.outcome.model.routes.len(), 1);
    // Deleting it (no parse failure) removes it.
    let third = reconcile(
        &only_svc,
        &BTreeSet::new(),
        &second.served,
        &Default::default(),
        &portcullis_api::validate::Rules::file_mode(),
    );
    assert!(third.outcome.model.routes.is_empty());
}

#[test]
fn new_invalid_object_is_simply_not_served() {
    let objs = docs(&format!("{SVC}{}", route("/x", "90s")));
    let r = reconcile(
        &objs,
        &BTreeSet::new(),
        &Objects::new(),
        &Default::default(),
        &portcullis_api::validate::Rules::file_mode(),
    );
    assert!(r.outcome.model.routes.is_empty());
    assert!(r.kept.is_empty());
    assert_eq!(r.served.len(), 1);
}
