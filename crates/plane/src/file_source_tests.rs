use super::*;

fn host(ns: &str, name: &str, hostname: &str) -> String {
    format!(
        "---\napiVersion: portcullis.dev/v1alpha1\nkind: Host\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{hostname: {hostname}}}\n"
    )
}

fn hosts(source: &mut FileSource) -> Vec<String> {
    source
        .reload()
        .model
        .hosts
        .keys()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn extra_objects_are_served_unless_the_directory_has_the_hostname_or_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let extra = portcullis_api::parse_documents(&host("zz-up", "api", "api.localhost"))
        .remove(0)
        .unwrap();
    let mut source = FileSource::new(dir.path().to_path_buf(), Created::default());
    source.extra = vec![extra];
    std::fs::write(
        dir.path().join("a.yaml"),
        host("shop", "web", "web.localhost"),
    )
    .unwrap();
    assert_eq!(hosts(&mut source), ["Host shop/web", "Host zz-up/api"]);
    // The directory's Host for the same name replaces it (whatever its key).
    std::fs::write(
        dir.path().join("b.yaml"),
        host("team", "mine", "api.localhost"),
    )
    .unwrap();
    assert_eq!(hosts(&mut source), ["Host shop/web", "Host team/mine"]);
}

// First-seen times stand in for creation times ("older wins"): each object keeps
// its own across reloads, and it goes once the object is neither in the files nor
// served, so a re-created object counts as new.
#[test]
fn first_seen_times_stay_while_an_object_exists_and_go_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut source = FileSource::new(dir.path().to_path_buf(), Created::default());
    let both = host("shop", "web", "web.localhost") + &host("shop", "api", "api.localhost");
    std::fs::write(dir.path().join("a.yaml"), &both).unwrap();
    source.reload();
    let first = source.created.clone();
    let names: Vec<&str> = first.keys().map(String::as_str).collect();
    assert_eq!(names, ["Host shop/api", "Host shop/web"]);
    source.reload();
    assert_eq!(source.created, first, "kept across a reload");
    std::fs::write(
        dir.path().join("a.yaml"),
        host("shop", "web", "web.localhost"),
    )
    .unwrap();
    source.reload();
    let names: Vec<&str> = source.created.keys().map(String::as_str).collect();
    assert_eq!(names, ["Host shop/web"], "the deleted Host's time is gone");
    assert_eq!(source.created["Host shop/web"], first["Host shop/web"]);
}

/// A document of the little world the tests below edit at random: Services that exist or
/// not, Routes that conflict, refer to missing Services, fail validation or carry their
/// own creation time, and YAML that does not parse.
fn random_document(rng: &mut u64) -> String {
    let mut pick = |n: u64| {
        // xorshift: deterministic, so a failure reproduces.
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng % n
    };
    let name = pick(5);
    match pick(10) {
        0 => "kind: [\n".into(),
        1 | 2 => format!(
            "---\napiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {{name: s{name}}}\nspec: {{destinations: [{{name: a, address: '127.0.0.1:{}'}}]}}\n",
            1 + pick(2)
        ),
        _ => {
            let created = match pick(3) {
                0 => format!(", creationTimestamp: '2026-01-0{}T00:00:00Z'", 1 + pick(3)),
                _ => String::new(),
            };
            let timeout = ["5s", "2s", "soon"][pick(3) as usize];
            format!(
                "---\napiVersion: portcullis.dev/v1alpha1\nkind: Route\nmetadata: {{name: r{name}{created}}}\nspec: {{match: {{paths: [{{prefix: /p{}}}]}}, backends: [{{service: s{}}}], timeout: {timeout}}}\n",
                pick(3),
                pick(3)
            )
        }
    }
}

// The reader's reuse and the validation memo change what is computed, never what comes
// out: through random edits of three files (conflicts, duplicates across files, missing
// Services, invalid and unparseable documents, deleted files), a source that reuses gives
// what one that reads and validates everything each time gives, with the same history.
#[test]
fn a_reload_that_reuses_gives_what_a_full_read_gives() {
    let dir = tempfile::tempdir().unwrap();
    let mut reusing = FileSource::new(dir.path().to_path_buf(), Created::default());
    let mut full = FileSource::new(dir.path().to_path_buf(), Created::default());
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let (mut reused, mut kept) = (0, 0);
    let mut shown = Board::default();
    for step in 0..300 {
        let file = dir.path().join(format!("f{}.yaml", step % 3));
        // The first draw of a document that is not written: the count varies.
        let docs = random_document(&mut rng).len() % 4;
        let text: String = (0..docs).map(|_| random_document(&mut rng)).collect();
        if docs == 0 && step % 2 == 0 {
            let _ = std::fs::remove_file(&file);
        } else {
            std::fs::write(&file, text).unwrap();
        }
        let before = reusing.reader.documents();
        let a = reusing.reload();
        // Everything anew, with the same first-seen times.
        full.reader = Default::default();
        full.directory = Default::default();
        full.memo = Memo::new();
        full.pruned = false;
        full.created = reusing.created.clone();
        let b = full.reload();
        assert_eq!(
            format!("{:?}", a.model),
            format!("{:?}", b.model),
            "step {step}"
        );
        assert_eq!(
            format!("{:?}", reusing.reports),
            format!("{:?}", full.reports),
            "step {step}"
        );
        assert_eq!(reusing.file_errors, full.file_errors, "step {step}");
        assert_eq!(reusing.created, full.created, "step {step}");
        // The board says served exactly for the objects served, kept ones included
        // (their reports carry the new version's errors).
        let served: BTreeSet<String> = reusing.last_served.keys().map(|k| k.to_string()).collect();
        kept += reusing.kept.len();
        let board = reusing.next_board(&mut shown, format!("v{step}"), &[], "t");
        for view in &board.objects {
            assert_eq!(
                view.served,
                served.contains(&view.object),
                "step {step}: {}",
                view.object
            );
        }
        shown = board;
        reused += reusing
            .reader
            .documents()
            .iter()
            .filter(|d| before.iter().any(|o| same_arc(o, d)))
            .count();
    }
    assert!(reused > 100, "the reader reused {reused} documents");
    assert!(kept > 20, "a last served version was kept {kept} times");
}

fn same_arc(a: &Document, b: &Document) -> bool {
    match (a, b) {
        (Document::Route(a), Document::Route(b)) => Arc::ptr_eq(a, b),
        (Document::Service(a), Document::Service(b)) => Arc::ptr_eq(a, b),
        (Document::Host(a), Document::Host(b)) => Arc::ptr_eq(a, b),
        _ => false,
    }
}

// Reuse goes by the whole object, not only its spec: a Route moved earlier by its
// creation time alone (older wins a conflict) takes the path from the other one.
#[test]
fn an_edit_of_metadata_alone_takes_effect() {
    let dir = tempfile::tempdir().unwrap();
    let route = |name: &str, created: &str| {
        format!(
            "---\napiVersion: portcullis.dev/v1alpha1\nkind: Route\nmetadata: {{name: {name}, creationTimestamp: '{created}'}}\nspec: {{match: {{paths: [{{prefix: /pay}}]}}, backends: [{{service: s}}]}}\n"
        )
    };
    let svc = "---\napiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {name: s}\nspec: {destinations: [{name: a, address: '127.0.0.1:1'}]}\n";
    let write = |b: &str| {
        let text = format!(
            "{svc}{}{}",
            route("a", "2026-01-01T00:00:00Z"),
            route("b", b)
        );
        std::fs::write(dir.path().join("all.yaml"), text).unwrap();
    };
    let mut source = FileSource::new(dir.path().to_path_buf(), Created::default());
    let served = |source: &mut FileSource| -> Vec<String> {
        source
            .reload()
            .model
            .routes
            .iter()
            .map(|r| r.key.to_string())
            .collect()
    };
    write("2026-02-01T00:00:00Z");
    assert_eq!(served(&mut source), ["Route default/a"]);
    write("2025-12-01T00:00:00Z");
    assert_eq!(served(&mut source), ["Route default/b"]);
}

// A directory that cannot be read (unmounted, deleted, permissions) says so and takes
// nothing away; a file that is not YAML keeps what it held; both recover when fixed.
#[test]
fn an_unreadable_directory_or_broken_file_keeps_everything_served() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("config");
    std::fs::create_dir(&dir).unwrap();
    let both = host("shop", "web", "web.localhost") + &host("shop", "api", "api.localhost");
    std::fs::write(dir.join("a.yaml"), &both).unwrap();
    let mut source = FileSource::new(dir.clone(), Created::default());
    assert_eq!(hosts(&mut source), ["Host shop/api", "Host shop/web"]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(hosts(&mut source), ["Host shop/api", "Host shop/web"]);
    let errors = &source.file_errors;
    assert!(
        errors.len() == 1 && errors[0].contains("config"),
        "{errors:?}"
    );
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("a.yaml"),
        host("shop", "web", "web.localhost") + "kind: [\n",
    )
    .unwrap();
    assert_eq!(hosts(&mut source), ["Host shop/api", "Host shop/web"]);
    std::fs::write(dir.join("a.yaml"), host("shop", "web", "web.localhost")).unwrap();
    assert_eq!(hosts(&mut source), ["Host shop/web"]);
    assert!(source.file_errors.is_empty());
}

// A careless (or hostile) copy of another team's object, in a later file or later in
// the same file, never replaces the one served: the first copy in file-name order,
// then document order, wins.
#[test]
fn the_first_copy_of_a_duplicated_object_wins_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut source = FileSource::new(dir.path().to_path_buf(), Created::default());
    let hostname = |source: &mut FileSource| {
        let model = source.reload().model;
        let key = ObjectKey {
            kind: "Host",
            namespace: "shop".into(),
            name: "web".into(),
        };
        model.hosts[&key].host.spec.hostname.clone()
    };
    std::fs::write(
        dir.path().join("b.yaml"),
        host("shop", "web", "web.localhost") + &host("shop", "web", "evil.localhost"),
    )
    .unwrap();
    assert_eq!(hostname(&mut source), "web.localhost", "first in the file");
    std::fs::write(
        dir.path().join("c.yaml"),
        host("shop", "web", "taken.localhost"),
    )
    .unwrap();
    assert_eq!(hostname(&mut source), "web.localhost", "a later file");
    // A file that sorts first holds the first copy.
    std::fs::write(
        dir.path().join("a.yaml"),
        host("shop", "web", "first.localhost"),
    )
    .unwrap();
    assert_eq!(hostname(&mut source), "first.localhost", "an earlier file");
}
