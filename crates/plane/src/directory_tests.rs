use super::*;
use portcullis_api::Document;

use crate::reader::Reader;

fn pick(rng: &mut u64, n: u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    *rng % n
}

/// A Service from a small pool of names and namespaces, so that files often define
/// the same object (the second copy loses) and objects move between files.
fn random_document(rng: &mut u64) -> String {
    let name = pick(rng, 6);
    let ns = ["a", "b"][pick(rng, 2) as usize];
    let port = pick(rng, 3) + 1;
    match pick(rng, 12) {
        // Broken YAML: hides what follows in its file.
        0 => "---\nkind: [\n".into(),
        // Invalid, with a readable key: that key fails to parse.
        1 => format!(
            "---\napiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {{name: s{name}, namespace: {ns}}}\nspec: {{destinations: 3}}\n"
        ),
        _ => format!(
            "---\napiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {{name: s{name}, namespace: {ns}}}\nspec: {{destinations: [{{name: a, address: '127.0.0.1:{port}'}}]}}\n"
        ),
    }
}

fn same(a: &Document, b: &Document) -> bool {
    matches!((a, b), (Document::Service(a), Document::Service(b)) if std::sync::Arc::ptr_eq(a, b))
}

fn summary(objects: &Objects) -> Vec<String> {
    objects.iter().map(|(k, d)| format!("{k} {d:?}")).collect()
}

// Through random edits of three files (documents added, removed, edited, moved
// between files, defined twice within a file or across files, broken; files deleted
// and written again), the map a patch gives is the one built from every document,
// with the same first copy winning, and patches do happen.
#[test]
fn a_patched_map_is_the_map_built_whole_through_any_edits() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let files = ["a.yaml", "b.yaml", "sub/c.yaml"];
    let mut reader = Reader::by_piece();
    let mut directory = Directory::default();
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let (mut patched, mut duplicated) = (0, 0);
    for step in 0..600 {
        let file = dir.path().join(files[pick(&mut rng, 3) as usize]);
        match pick(&mut rng, 10) {
            0 => {
                let _ = std::fs::remove_file(&file);
            }
            _ => {
                let text: String = (0..pick(&mut rng, 5))
                    .map(|_| random_document(&mut rng))
                    .collect();
                std::fs::write(&file, text).unwrap();
            }
        }
        let loaded = reader.load(dir.path(), |_| {}).unwrap();
        let could_patch = directory.last.is_some();
        let got = directory.objects(&loaded);
        let (whole, duplicates) = build(&loaded);
        assert_eq!(summary(&got), summary(&whole), "step {step}");
        // Each object is the very document read (what the memo recognises).
        for (key, doc) in &got {
            assert!(same(doc, &whole[key]), "step {step}: {key}");
        }
        patched += usize::from(could_patch && directory.last.is_some());
        duplicated += usize::from(duplicates);
        assert_eq!(directory.last.is_some(), !duplicates, "step {step}");
    }
    assert!(patched > 100, "patched {patched} times");
    assert!(duplicated > 100, "duplicates {duplicated} times");
}

// A key that moves into a changed file from a file that did not change is a
// duplicate until the other file lets it go; the first file's copy wins meanwhile.
#[test]
fn an_object_copied_into_another_file_stays_with_the_first_file() {
    let dir = tempfile::tempdir().unwrap();
    let service = |port: u32| {
        format!(
            "---\napiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {{name: s, namespace: a}}\nspec: {{destinations: [{{name: a, address: '127.0.0.1:{port}'}}]}}\n"
        )
    };
    let write = |f: &str, t: &str| std::fs::write(dir.path().join(f), t).unwrap();
    let address = |objects: &Objects| match objects.values().next() {
        Some(Document::Service(s)) => s.spec.destinations[0].address.clone().unwrap(),
        other => panic!("{other:?}"),
    };
    let mut reader = Reader::by_piece();
    let mut directory = Directory::default();
    write("b.yaml", &service(2));
    let _ = directory.objects(&reader.load(dir.path(), |_| {}).unwrap());
    write("a.yaml", &service(1));
    let both = directory.objects(&reader.load(dir.path(), |_| {}).unwrap());
    assert_eq!(address(&both), "127.0.0.1:1", "a.yaml comes first");
    assert!(directory.last.is_none(), "a duplicate is built whole");
    write("a.yaml", "");
    let moved = directory.objects(&reader.load(dir.path(), |_| {}).unwrap());
    assert_eq!(address(&moved), "127.0.0.1:2");
    assert!(directory.last.is_some());
}
