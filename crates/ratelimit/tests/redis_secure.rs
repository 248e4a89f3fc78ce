//! Redis with a password and over TLS (`rediss://`), each a real redis-server.
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use portcullis_ratelimit::store::{RedisStore, RedisTarget, RedisTls};
use portcullis_ratelimit::{Limiter, Metrics};

/// A redis-server with extra flags, killed on drop.
struct Server {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(dir: tempfile::TempDir, args: &[String], port: u16) -> Server {
    let child = Command::new(find_bin("redis-server"))
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "redis-server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { child, _dir: dir }
}

async fn per_key_limit_works(store: Arc<RedisStore>) {
    let store = connected(store).await;
    let l = Limiter::builder(mk_table(&[mk_config("ns/r/a", &["user"], &[(3, 60)])]))
        .store(store)
        .store_timeout(Duration::from_secs(2))
        .build();
    let req = mk_request(vec![mk_descriptor("ns/r/a", &[("user", "u")])]);
    let mut admitted = 0;
    for _ in 0..5 {
        admitted += usize::from(is_ok(&l.should_rate_limit(&req).await));
    }
    assert_eq!(admitted, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_the_url_authenticates_and_a_wrong_one_fails_per_policy() {
    let port = free_port();
    let _redis = spawn(
        tempfile::tempdir().unwrap(),
        &[
            "--port".into(),
            port.to_string(),
            "--requirepass".into(),
            "s3cret pass".into(),
        ],
        port,
    );
    let good = format!("redis://:s3cret%20pass@127.0.0.1:{port}");
    per_key_limit_works(RedisStore::connect(RedisTarget::Single(good))).await;

    // A wrong password never connects: every decision follows the failure policy.
    let bad = RedisStore::connect(RedisTarget::Single(format!(
        "redis://:wrong@127.0.0.1:{port}"
    )));
    let metrics = Metrics::unregistered();
    let l = Limiter::builder(mk_table(&[mk_config("ns/r/a", &["user"], &[(1, 60)])]))
        .store(bad.clone())
        .metrics(metrics.clone())
        .build();
    let req = mk_request(vec![mk_descriptor("ns/r/a", &[("user", "u")])]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..3 {
        assert!(is_ok(&l.should_rate_limit(&req).await), "allow policy");
    }
    assert!(!bad.is_connected());
    assert_eq!(
        metrics
            .store_errors
            .with_label_values(&["not_connected"])
            .get(),
        3
    );
}

struct Pki {
    ca: String,
    cert: String,
    key: String,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    Pki {
        ca: ca.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_verifies_the_server_against_the_given_ca() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = (
        write(dir.path(), "ca.pem", &pki.ca),
        write(dir.path(), "cert.pem", &pki.cert),
        write(dir.path(), "key.pem", &pki.key),
    );
    let port = free_port();
    let _redis = spawn(
        dir,
        &[
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            cert,
            "--tls-key-file".into(),
            key,
            "--tls-ca-cert-file".into(),
            ca.clone(),
            "--tls-auth-clients".into(),
            "no".into(),
        ],
        port,
    );
    let url = format!("rediss://127.0.0.1:{port}");
    let tls = RedisTls {
        ca: Some(ca.into()),
        ..RedisTls::default()
    };
    per_key_limit_works(RedisStore::connect_with(RedisTarget::Single(url.clone()), &tls).unwrap())
        .await;

    // Without the CA the server's certificate is not trusted: no connection.
    let untrusted = RedisStore::connect(RedisTarget::Single(url));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!untrusted.is_connected());
}
