use std::sync::Arc;

use portcullis_api::Document;

use super::*;
use crate::files::Loaded;

fn service(name: &str, address: &str) -> String {
    format!(
        "---\napiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{destinations: [{{name: a, address: '{address}'}}]}}\n"
    )
}

fn arc(loaded: &Loaded, name: &str) -> Arc<portcullis_api::Service> {
    loaded
        .documents
        .iter()
        .find_map(|(_, _, d)| match d {
            Document::Service(s) if s.metadata.name.as_deref() == Some(name) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Service {name}"))
}

// An unchanged file is not parsed again and gives the same documents; in a changed
// file, a document identical to its last version is that version, and any other
// is new, `prepare`d once. What `prepare` did stays with a reused document.
#[test]
fn the_reader_parses_only_changed_files_and_reuses_identical_documents() {
    let dir = tempfile::tempdir().unwrap();
    let write = |f: &str, text: String| std::fs::write(dir.path().join(f), text).unwrap();
    write(
        "a.yaml",
        service("a1", "127.0.0.1:1") + &service("a2", "127.0.0.1:2"),
    );
    write("b.yaml", service("b1", "127.0.0.1:3"));
    let mut reader = Reader::by_piece();
    let mut prepared = Vec::new();
    let load = |reader: &mut Reader, prepared: &mut Vec<String>| {
        reader
            .load(dir.path(), |d| {
                prepared.push(d.key().to_string());
                if let Document::Service(s) = d {
                    Arc::make_mut(s).metadata.uid = Some("prepared".into());
                }
            })
            .unwrap()
    };
    let first = load(&mut reader, &mut prepared);
    assert_eq!(prepared.len(), 3);
    let again = load(&mut reader, &mut prepared);
    assert_eq!(prepared.len(), 3, "nothing changed, nothing parsed");
    for name in ["a1", "a2", "b1"] {
        assert!(
            Arc::ptr_eq(&arc(&first, name), &arc(&again, name)),
            "{name}"
        );
        assert_eq!(arc(&again, name).metadata.uid.as_deref(), Some("prepared"));
    }
    // a2 edited: only its text is parsed; a1 is reused; b.yaml is not read again.
    write(
        "a.yaml",
        service("a1", "127.0.0.1:1") + &service("a2", "127.0.0.1:9"),
    );
    let edited = load(&mut reader, &mut prepared);
    assert_eq!(prepared[3..], ["Service default/a2"]);
    assert!(Arc::ptr_eq(&arc(&first, "a1"), &arc(&edited, "a1")));
    assert!(!Arc::ptr_eq(&arc(&first, "a2"), &arc(&edited, "a2")));
    assert_eq!(
        arc(&edited, "a2").spec.destinations[0].address.as_deref(),
        Some("127.0.0.1:9")
    );
    assert!(Arc::ptr_eq(&arc(&first, "b1"), &arc(&edited, "b1")));
    // A comment makes a1's text new: parsed, and identical, so reused.
    write(
        "a.yaml",
        service("a1", "127.0.0.1:1") + "# moved\n" + &service("a2", "127.0.0.1:9"),
    );
    let commented = load(&mut reader, &mut prepared);
    assert_eq!(prepared[4..], ["Service default/a1"]);
    assert!(Arc::ptr_eq(&arc(&first, "a1"), &arc(&commented, "a1")));
    assert!(Arc::ptr_eq(&arc(&edited, "a2"), &arc(&commented, "a2")));
    // A metadata-only edit is an edit: not reused.
    write(
        "b.yaml",
        service("b1", "127.0.0.1:3").replace("name: b1", "name: b1, labels: {x: y}"),
    );
    let relabelled = load(&mut reader, &mut prepared);
    assert!(!Arc::ptr_eq(&arc(&first, "b1"), &arc(&relabelled, "b1")));
    // A deleted file's documents are gone; a broken one reports as before.
    std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
    write("c.yaml", "kind: [".into());
    let after = load(&mut reader, &mut prepared);
    assert_eq!(after.documents.len(), 1);
    assert_eq!(after.broken_files().count(), 1);
    assert_eq!(reader.files.len(), 2, "the deleted file's text is let go");
}

/// A random multi-document text from pieces that are valid, odd or broken YAML.
fn random_text(rng: &mut u64) -> String {
    let mut pick = |n: u64| {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng % n
    };
    const PIECES: [&str; 18] = [
        "---\napiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {name: s1}\nspec: {destinations: [{name: a, address: '127.0.0.1:1'}]}\n",
        "---\napiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {name: s2}\nspec: {destinations: [{name: a, address: '127.0.0.1:2'}]}\n",
        "--- {apiVersion: portcullis.dev/v1alpha1, kind: Service, metadata: {name: s3}, spec: {destinations: [{name: a, address: '127.0.0.1:3'}]}}\n",
        "---\r\napiVersion: portcullis.dev/v1alpha1\r\nkind: Service\r\nmetadata: {name: s4}\r\nspec: {destinations: [{name: a, address: '127.0.0.1:4'}]}\r\n",
        "---\napiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata:\n  name: s5\n  annotations:\n    note: |\n      ---\n      not a marker, indented\nspec: {destinations: [{name: a, address: '127.0.0.1:5'}]}\n",
        "---\napiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {name: s6}\nspec: {destinations: 3}\n",
        "---\n",
        "# a comment\n",
        "\n",
        "---\nkind: [\n",
        "...\n",
        "%YAML 1.2\n",
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
        "---\n- a\n- b\n",
        "--- # nothing here\n\n  # indented comment\r\n",
        "---\n#not: a key\n'#': quoted\n",
        "---x\n",
        "---\napiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {name: s1}\nspec: {destinations: [{name: b, address: '127.0.0.1:7'}]}\n",
    ];
    (0..pick(8))
        .map(|_| PIECES[pick(PIECES.len() as u64) as usize])
        .collect()
}

fn summary(loaded: &Loaded) -> (Vec<String>, Vec<String>) {
    let docs = loaded
        .documents
        .iter()
        .map(|(_, k, d)| format!("{k} {d:?}"));
    (
        docs.collect(),
        loaded.errors.iter().map(ToString::to_string).collect(),
    )
}

// Reading piece by piece, reusing pieces, gives what parsing each text whole gives:
// the same documents (in every field) and the same errors, through random edits of
// texts with comments, empty documents, markers with content, CRLF, block scalars
// holding `---`, directives, document-end markers and broken YAML.
#[test]
fn reading_by_piece_gives_what_a_whole_parse_gives() {
    let dir = tempfile::tempdir().unwrap();
    let mut reader = Reader::by_piece();
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut by_piece = 0;
    for step in 0..400 {
        let text = random_text(&mut rng);
        std::fs::write(dir.path().join("a.yaml"), &text).unwrap();
        let read = reader.load(dir.path(), |_| {}).unwrap();
        let file = dir.path().join("a.yaml");
        let mut whole = Loaded::default();
        for doc in parse_documents(&text) {
            match doc {
                Ok(d) => whole
                    .documents
                    .push((Arc::from(file.as_path()), d.key(), d)),
                Err(error) => whole.errors.push(FileError {
                    file: file.clone(),
                    error,
                }),
            }
        }
        assert_eq!(summary(&read), summary(&whole), "step {step}: {text:?}");
        by_piece += reader.files.values().filter(|p| p.pieces.is_some()).count();
    }
    assert!(by_piece > 100, "read by piece {by_piece} times");
}

#[test]
fn a_text_splits_at_marker_lines_only() {
    let text = "# c\n---\na: 1\n--- {b: 2}\n---x: 3\n  ---\n---\r\nc: 4\n---";
    assert_eq!(
        split_documents(text).unwrap(),
        [
            "# c\n",
            "---\na: 1\n",
            "--- {b: 2}\n---x: 3\n  ---\n",
            "---\r\nc: 4\n",
            "---"
        ]
    );
    assert_eq!(split_documents("a: 1\n...\n"), None);
    let pieces = |n: usize| split_documents(&"---\n".repeat(n)).map(|p| p.len());
    assert_eq!(pieces(MAX_PIECES), Some(MAX_PIECES));
    assert_eq!(
        pieces(MAX_PIECES + 1),
        None,
        "too many pieces: parsed whole"
    );
    assert_eq!(split_documents("%YAML 1.2\n---\na: 1\n"), None);
}

#[test]
fn loads_recursively_and_reports_bad_documents_with_file_and_index() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("team")).unwrap();
    std::fs::create_dir(dir.path().join("..data")).unwrap();
    std::fs::write(
        dir.path().join("team/svc.yaml"),
        "apiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {name: s}\nspec: {destinations: [{name: a, address: '127.0.0.1:1'}]}\n---\napiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {name: t}\nspec: {destinations: 3}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("..data/ignored.yaml"), "garbage: [").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "garbage: [").unwrap();
    let loaded = load(dir.path()).unwrap();
    assert_eq!(loaded.documents.len(), 1);
    assert_eq!(loaded.errors.len(), 1);
    let msg = loaded.errors[0].to_string();
    assert!(
        msg.contains("team/svc.yaml: document 1 (Service t): spec.destinations"),
        "{msg}"
    );
    assert_eq!(
        loaded.failed_keys().next().unwrap().to_string(),
        "Service default/t"
    );
}

// A file of nothing but markers (a careless generator, or a hostile one): up to the cap
// it is read piece by piece without a parser per piece, past it parsed whole; either
// way it gives no document and no error, and an edit after it is read as usual.
#[test]
fn a_file_of_empty_documents_gives_nothing_on_either_side_of_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let mut reader = Reader::by_piece();
    for n in [MAX_PIECES, MAX_PIECES + 1] {
        std::fs::write(dir.path().join("a.yaml"), "---\n".repeat(n)).unwrap();
        let read = reader.load(dir.path(), |_| {}).unwrap();
        assert!(read.documents.is_empty() && read.errors.is_empty(), "{n}");
        let by_piece = reader.files.values().all(|p| p.pieces.is_some());
        assert_eq!(by_piece, n == MAX_PIECES, "{n}");
    }
    let text = "---\n".repeat(10) + &service("s", "127.0.0.1:1");
    std::fs::write(dir.path().join("a.yaml"), text).unwrap();
    let read = reader.load(dir.path(), |_| {}).unwrap();
    assert_eq!(read.documents.len(), 1);
}
