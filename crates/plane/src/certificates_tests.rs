use super::*;

fn host(name: &str, hostname: &str, cert: &str, key: &str) -> Document {
    let text = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: Host\nmetadata: {{name: {name}, namespace: edge}}\nspec: {{hostname: {hostname}, tls: {{certificateFile: {cert}, keyFile: {key}}}}}\n"
    );
    portcullis_api::parse_documents(&text).remove(0).unwrap()
}

// Hosts sharing a wildcard certificate get it from one read per load: the same
// certificate for each, the files watched once each. A Host whose key file is missing
// is refused, naming the file, and the missing file is still watched (so writing it
// is noticed); a later load with the file present takes it.
#[test]
fn hosts_sharing_files_share_one_read_and_each_file_is_watched_once() {
    let dir = tempfile::tempdir().unwrap();
    let ca = portcullis_tls::mtls::generate::LocalCa::new("test CA").unwrap();
    let leaf = ca.issue("wild", &["*.example.com"], &[]).unwrap();
    std::fs::write(dir.path().join("wild.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.path().join("wild.key"), &leaf.key_pem).unwrap();
    let docs = [
        host("a", "a.example.com", "wild.crt", "wild.key"),
        host("b", "b.example.com", "wild.crt", "wild.key"),
        host("c", "c.example.com", "wild.crt", "missing.key"),
    ];
    let mut certs = FileCertificates::default();
    let now = jiff::Timestamp::now().as_second();
    let loaded = certs.load(dir.path(), &docs, now);
    let state = |loaded: &Certificates, name: &str| {
        let key = docs.iter().map(Document::key).find(|k| &*k.name == name);
        loaded[&key.unwrap()].clone()
    };
    let (a, b, c) = (
        state(&loaded, "a"),
        state(&loaded, "b"),
        state(&loaded, "c"),
    );
    assert!(a.problem.is_none() && b.problem.is_none(), "{a:?} {b:?}");
    assert!(a.serving.is_some());
    assert_eq!(a.serving, b.serving);
    let problem = c.problem.expect("no key, no certificate");
    assert!(problem.contains("missing.key"), "{problem}");
    let names: Vec<_> = certs.files.iter().map(|f| f.file_name().unwrap()).collect();
    assert_eq!(names, ["missing.key", "wild.crt", "wild.key"]);

    std::fs::write(dir.path().join("missing.key"), &leaf.key_pem).unwrap();
    let again = certs.load(dir.path(), &docs, now);
    assert!(state(&again, "c").problem.is_none());
}
