//! Hosts own hostnames: who may route on them, one owner per hostname, certificates.
use super::*;
use crate::{Certificate, CertificateState, Document, certificate::PrivateKey, parse_documents};

fn objects(yaml: &str) -> Objects {
    let docs: Vec<Document> = parse_documents(yaml)
        .into_iter()
        .map(|d| d.unwrap())
        .collect();
    Objects::from_documents(&docs)
}

fn host(ns: &str, name: &str, age: u32, spec: &str) -> String {
    format!(
        "---\napiVersion: portcullis.dev/v1alpha1\nkind: Host\nmetadata: {{name: {name}, namespace: {ns}, creationTimestamp: '2026-01-0{age}T00:00:00Z'}}\nspec: {spec}\n"
    )
}

fn route(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {{name: s, namespace: {ns}}}\nspec: {{destinations: [{{name: a, address: '10.0.0.1:80'}}]}}\n---\napiVersion: portcullis.dev/v1alpha1\nkind: Route\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"
    )
}

fn condition(o: &Outcome, key: &ObjectKey, t: &str) -> crate::Condition {
    o.report(key)
        .unwrap()
        .conditions()
        .into_iter()
        .find(|c| c.type_ == t)
        .unwrap_or_else(|| panic!("no {t} on {key}"))
}

fn cert(days: i64) -> CertificateState {
    CertificateState {
        serving: Some(Certificate {
            chain_pem: "-----BEGIN CERTIFICATE-----".into(),
            key: PrivateKey("TOP-KEY-MATERIAL".into()),
            not_after: days * 86_400,
            fingerprint: "ab".repeat(32),
            names: vec!["api.example.com".into()],
        }),
        ..Default::default()
    }
}

#[test]
fn a_route_from_a_namespace_the_host_does_not_admit_is_not_served_and_says_why() {
    let yaml = host("a", "api", 1, "{hostname: api.example.com}")
        + &route(
            "a",
            "mine",
            "{hosts: [api.example.com], match: {paths: [{prefix: /}]}, backends: [{service: s}]}",
        )
        + &route(
            "b",
            "theirs",
            "{hosts: [api.example.com], match: {paths: [{prefix: /x}]}, backends: [{service: s}]}",
        );
    let o = validate_objects(&objects(&yaml), &Certificates::new(), &Rules::file_mode());
    let theirs = ObjectKey::route("b", "theirs");
    let c = condition(&o, &theirs, "Accepted");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "NotAllowedByHost")
    );
    assert!(
        c.message.contains("owned by Host a/api") && c.message.contains("namespace b"),
        "{}",
        c.message
    );
    assert!(!o.report(&theirs).unwrap().is_served());
    assert!(
        o.report(&ObjectKey::route("a", "mine"))
            .unwrap()
            .is_served()
    );

    // Admitting b serves it.
    let yaml = host(
        "a",
        "api",
        1,
        "{hostname: api.example.com, allowedRoutes: {namespaces: [b]}}",
    ) + &route(
        "b",
        "theirs",
        "{hosts: [api.example.com], match: {paths: [{prefix: /x}]}, backends: [{service: s}]}",
    );
    let o = validate_objects(&objects(&yaml), &Certificates::new(), &Rules::file_mode());
    assert!(o.report(&theirs).unwrap().is_served());
}

#[test]
fn host_less_routes_apply_to_an_owned_host_only_from_admitted_namespaces() {
    let yaml = host("a", "api", 1, "{hostname: '*.example.com'}")
        + &route(
            "a",
            "own",
            "{hosts: [x.example.com], match: {paths: [{prefix: /own}]}, backends: [{service: s}]}",
        )
        + &route(
            "a",
            "anywhere-a",
            "{match: {paths: [{prefix: /a}]}, backends: [{service: s}]}",
        )
        + &route(
            "b",
            "anywhere-b",
            "{match: {paths: [{prefix: /b}]}, backends: [{service: s}]}",
        );
    let o = validate_objects(&objects(&yaml), &Certificates::new(), &Rules::file_mode());
    let names = |host: &str| -> Vec<String> {
        o.model
            .host_table(host)
            .entries
            .iter()
            .map(|e| e.key.name.to_string())
            .collect()
    };
    // The wildcard Host owns x.example.com: b's host-less Route is not copied there.
    assert_eq!(names("x.example.com"), ["own", "anywhere-a"]);
    assert_eq!(names("*"), ["anywhere-a", "anywhere-b"]);
}

#[test]
fn the_older_host_keeps_a_hostname_and_ownership_can_be_required() {
    let yaml = host("a", "first", 1, "{hostname: api.example.com}")
        + &host("b", "second", 2, "{hostname: api.example.com}")
        + &route(
            "c",
            "r",
            "{hosts: [free.example.com], match: {paths: [{prefix: /}]}, backends: [{service: s}]}",
        );
    let mut rules = Rules::file_mode();
    let o = validate_objects(&objects(&yaml), &Certificates::new(), &rules);
    let c = condition(
        &o,
        &ObjectKey {
            kind: "Host",
            namespace: "b".into(),
            name: "second".into(),
        },
        "Conflicted",
    );
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "HostnameTaken")
    );
    assert!(c.message.contains("older Host a/first"), "{}", c.message);
    assert!(o.report(&ObjectKey::route("c", "r")).unwrap().is_served());
    rules.require_host_ownership = true;
    let o = validate_objects(&objects(&yaml), &Certificates::new(), &rules);
    let c = condition(&o, &ObjectKey::route("c", "r"), "Accepted");
    assert!(
        c.message.contains("no Host owns free.example.com"),
        "{}",
        c.message
    );
}

#[test]
fn certificates_resolve_warn_and_expire() {
    let key = ObjectKey {
        kind: "Host",
        namespace: "a".into(),
        name: "api".into(),
    };
    let yaml = host(
        "a",
        "api",
        1,
        "{hostname: api.example.com, tls: {certificateFile: c.pem, keyFile: k.pem}}",
    );
    let objs = objects(&yaml);
    // Nothing loaded: not resolved, no certificate served, the Host still owns the name.
    let o = validate_objects(&objs, &Certificates::new(), &Rules::file_mode());
    let c = condition(&o, &key, "ResolvedRefs");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "InvalidCertificate")
    );
    assert!(o.model.hosts[&key].certificate.is_none());
    // A good one, then a bad replacement: the good one keeps serving, with a warning.
    let mut state = cert(100);
    state.problem = Some("the key does not match the certificate".into());
    state.expiring = Some("expires in 3 days".into());
    let certs: Certificates = [(key.clone(), state)].into();
    let o = validate_objects(&objs, &certs, &Rules::file_mode());
    assert!(o.model.hosts[&key].certificate.is_some());
    let accepted = condition(&o, &key, "Accepted");
    assert!(
        accepted.is_true() && accepted.message.contains("still serving the previous one"),
        "{}",
        accepted.message
    );
    assert!(condition(&o, &key, "CertificateExpiring").is_true());
    // The private key never reaches a message.
    assert!(
        o.reports
            .iter()
            .flat_map(|r| r.conditions())
            .all(|c| !c.message.contains("TOP-KEY-MATERIAL"))
    );
    assert!(!format!("{:?}", o.model.hosts).contains("TOP-KEY-MATERIAL"));
}

#[test]
fn host_fields_are_checked_for_the_mode() {
    let yaml = host(
        "a",
        "bad",
        1,
        "{hostname: 'API.x', tls: {secretName: s, minVersion: '1.1', alpn: [h3]}}",
    );
    let o = validate_objects(&objects(&yaml), &Certificates::new(), &Rules::file_mode());
    let m: Vec<String> = o.problems().map(|i| i.to_string()).collect();
    for want in [
        "spec.hostname: \"API.x\" has upper-case letters",
        "spec.tls: in file mode the certificate comes from PEM files",
        "spec.tls.minVersion: \"1.1\" is not offered",
        "spec.tls.alpn[0]: \"h3\"",
    ] {
        assert!(m.iter().any(|x| x.contains(want)), "{want} not in {m:#?}");
    }
    let yaml = host(
        "a",
        "ok",
        1,
        "{hostname: api.example.com, tls: {secretName: api-tls}}",
    );
    let o = validate_objects(
        &objects(&yaml),
        &Certificates::new(),
        &Rules::cluster(vec![]),
    );
    assert_eq!(
        o.report(&ObjectKey {
            kind: "Host",
            namespace: "a".into(),
            name: "ok".into()
        })
        .unwrap()
        .errors,
        vec![]
    );
}
