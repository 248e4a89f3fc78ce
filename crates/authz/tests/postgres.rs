//! The PostgreSQL key store against a real PostgreSQL server started by this test
//! (Debian `postgresql`; `make tools` installs it).
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use portcullis_authz::Digest;

/// The server binaries: on PATH, or in Debian's versioned directory.
fn pg_bin(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Path::new(&dir).join(name);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .into_iter()
        .rev()
        .map(|d| d.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// PostgreSQL refuses to run as root: then it runs as the `postgres` user.
fn as_server_user(cmd: &Path) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(cmd);
        c
    } else {
        Command::new(cmd)
    }
}

struct Postgres {
    child: Child,
    port: u16,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Postgres {
    /// `pg_ctl stop`: killing `runuser` would leave the server itself running.
    fn drop(&mut self) {
        let _ = as_server_user(&pg_bin("pg_ctl"))
            .args(["stop", "-m", "immediate", "-D"])
            .arg(&self.data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port below the kernel's ephemeral range (`portcullis_process::port`):
/// one picked there and released could be taken by any outgoing connection first.
fn free_port() -> u16 {
    portcullis_process::port::free_loopback_port().expect("a free loopback port")
}

async fn postgres() -> Postgres {
    postgres_with(|_| Vec::new()).await
}

/// A server whose data directory `setup` may add files to before it starts; `setup`
/// returns extra server arguments.
async fn postgres_with(setup: impl FnOnce(&Path) -> Vec<String>) -> Postgres {
    let dir = tempfile::Builder::new()
        .prefix("pg")
        .tempdir_in("/tmp")
        .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let _ = Command::new("chown")
        .args(["-R", "postgres"])
        .arg(dir.path())
        .status();
    let out = as_server_user(&pg_bin("initdb"))
        .args([
            "-A",
            "trust",
            "-U",
            "portcullis",
            "-E",
            "UTF8",
            "--no-sync",
            "-D",
        ])
        .arg(&data)
        .output()
        .expect("initdb runs (apt-get install postgresql)");
    assert!(
        out.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let extra = setup(&data);
    let _ = Command::new("chown")
        .args(["-R", "postgres"])
        .arg(&data)
        .status();
    let port = free_port();
    let child = as_server_user(&pg_bin("postgres"))
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(dir.path())
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("postgres starts");
    let pg = Postgres {
        child,
        port,
        data,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "postgres not accepting connections"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pg
}

impl Postgres {
    fn url(&self) -> String {
        format!("postgres://portcullis@127.0.0.1:{}/postgres", self.port)
    }

    async fn execute(&self, sql: &str) {
        let (client, conn) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client.batch_execute(sql).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_in_a_postgres_table_authenticate_and_revoke_and_an_outage_fails_closed() {
    let pg = postgres().await;
    pg.execute(&format!(
        "CREATE TABLE portcullis_api_keys (key_hash text PRIMARY KEY, key_id text NOT NULL, \
         user_id text NOT NULL, account text NOT NULL DEFAULT '', scopes text[] NOT NULL DEFAULT '{{}}');
         INSERT INTO portcullis_api_keys VALUES ('{}', 'k-1', 'carol', 'acme', ARRAY['read','write']);",
        Digest::of(b"carol-key").hex()
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "authz.yaml",
        "cache: {ttl: 1s, negativeTtl: 1s}\nkeyStore:\n  postgres: {timeout: 500ms, breaker: {failureThreshold: 2, openFor: 30s}}\n",
    );
    let mut svc = start(&["--config", &config, "--postgres-url", &pg.url()]).await;
    let ext = [("portcullis.auth.scopes", "write")];
    let key = [("x-api-key", "carol-key")];

    let r = svc
        .client
        .check(check_request(&key, &ext))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(http_status(&r), 200, "{r:?}");
    let md = r.dynamic_metadata.unwrap();
    let user = md.fields["user"].kind.clone();
    assert_eq!(
        user,
        Some(envoy_types::pb::google::protobuf::value::Kind::StringValue(
            "carol".into()
        ))
    );
    let r = svc
        .client
        .check(check_request(&[("x-api-key", "other")], &ext))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(http_status(&r), 401);

    // Deleting the row revokes the key once the cached identity's TTL is over.
    pg.execute("DELETE FROM portcullis_api_keys WHERE key_id = 'k-1'")
        .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = svc
        .client
        .check(check_request(&key, &ext))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(http_status(&r), 401);

    // The database gone: fail closed (503), and once the breaker opens, fast.
    drop(pg);
    for _ in 0..2 {
        let r = svc
            .client
            .check(check_request(&[("x-api-key", "new-key")], &ext))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(http_status(&r), 503);
    }
    let started = Instant::now();
    let r = svc
        .client
        .check(check_request(&[("x-api-key", "new-key")], &ext))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(http_status(&r), 503);
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
}

/// A CA and a server certificate it signed for `names` (PEM: CA, cert, key).
fn pki(names: &[&str]) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// `sslmode=verify-full` against a real server with TLS on: the chain must lead to
/// `sslrootcert` and the certificate must name the host; `verify-ca` skips the name.
/// Anything else fails closed (503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_verify_full_checks_the_chain_and_the_host_name() {
    let (ca, cert, key) = pki(&["localhost"]);
    let pg = postgres_with(|data| {
        std::fs::write(data.join("server.crt"), &cert).unwrap();
        std::fs::write(data.join("server.key"), &key).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        [
            "ssl=on",
            "ssl_cert_file=server.crt",
            "ssl_key_file=server.key",
        ]
        .iter()
        .flat_map(|c| ["-c".to_string(), c.to_string()])
        .collect()
    })
    .await;
    pg.execute(&format!(
        "CREATE TABLE portcullis_api_keys (key_hash text PRIMARY KEY, key_id text NOT NULL, \
         user_id text NOT NULL, account text NOT NULL DEFAULT '', scopes text[] NOT NULL DEFAULT '{{}}');
         INSERT INTO portcullis_api_keys VALUES ('{}', 'k-1', 'carol', 'acme', ARRAY['read']);",
        Digest::of(b"carol-key").hex()
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(dir.path(), "ca.pem", &ca);
    let other_ca = write(dir.path(), "other-ca.pem", &pki(&["localhost"]).0);
    let config = write(
        dir.path(),
        "authz.yaml",
        "keyStore:\n  postgres: {timeout: 3s, breaker: {failureThreshold: 100, openFor: 1s}}\n",
    );
    let key = [("x-api-key", "carol-key")];
    let mut kept = Vec::new();
    for (host, tls, want) in [
        (
            "localhost",
            format!("sslmode=verify-full&sslrootcert={ca_file}"),
            200,
        ),
        (
            "127.0.0.1",
            format!("sslmode=verify-full&sslrootcert={ca_file}"),
            503,
        ),
        (
            "127.0.0.1",
            format!("sslmode=verify-ca&sslrootcert={ca_file}"),
            200,
        ),
        (
            "localhost",
            format!("sslmode=verify-full&sslrootcert={other_ca}"),
            503,
        ),
    ] {
        // hostaddr: connect to 127.0.0.1 whatever `localhost` resolves to, and check
        // the certificate against `host`.
        let url = format!(
            "postgres://portcullis@{host}:{}/postgres?hostaddr=127.0.0.1&{tls}",
            pg.port
        );
        let mut svc = start(&["--config", &config, "--postgres-url", &url]).await;
        let r = svc
            .client
            .check(check_request(&key, &[]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(http_status(&r), want, "{host} {tls}: {r:?}");
        kept.push(svc);
    }
    // The admitted lookups went over TLS (the test's own connection does not).
    let (client, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let row = client
        .query_one("SELECT count(*) FROM pg_stat_ssl WHERE ssl", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2, "two services hold TLS connections");
}
