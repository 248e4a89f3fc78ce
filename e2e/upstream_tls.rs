//! Upstream TLS and mTLS through real Envoy: a TLS backend written here that requires
//! a client certificate signed by the test CA accepts the gateway's (and sees its
//! subject), refuses a direct call without one; a Service whose CA does not trust the
//! backend, or whose subject alt names do not match it, gets 503 from Envoy (TLS was
//! attempted and failed verification, nothing went out in plaintext); TLS to an IP
//! without subjectAltNames is refused by validation; the client key appears in no
//! debug output, metric or Envoy admin page; the expiry metric counts down to the
//! client certificate's notAfter.
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use parking_lot::Mutex;
use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use crate::harness::*;
use crate::tls_client::{Ca, client, der, get};

/// What the backend saw.
#[derive(Default)]
struct Seen {
    /// Leaf client certificates (DER) of the requests it answered.
    clients: Mutex<Vec<Vec<u8>>>,
    /// Handshakes it refused (no or untrusted client certificate, or not TLS).
    refused: AtomicUsize,
}

/// A TLS backend for `names`, signed by `ca`, requiring a client certificate `ca`
/// signed. Answers every request with 200 and `{"name": "secure"}`.
async fn tls_backend(ca: &Ca, names: &[&str]) -> (SocketAddr, Arc<Seen>) {
    let (chain, key) = ca.named_leaf("backend", names, 30);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(der(&ca.pem))).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            CertificateDer::pem_slice_iter(chain.as_bytes())
                .map(Result::unwrap)
                .collect(),
            PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, seen) = (acceptor.clone(), s.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    seen.refused.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
                let leaf = leaf.map(|c| c.to_vec()).unwrap_or_default();
                // One request at a time on the connection (Envoy reuses it).
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = tls.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        seen.clients.lock().push(leaf.clone());
                        let body = r#"{"name":"secure"}"#;
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if tls.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn tls_service(name: &str, address: &str, tls: &str) -> String {
    service_spec_yaml(
        name,
        &format!("{{destinations: [{{name: d, address: '{address}'}}], tls: {tls}}}"),
    ) + &route_yaml(
        name,
        &format!(
            "{{hosts: [{name}.e2e], match: {{paths: [{{prefix: /}}]}}, backends: [{{service: {name}}}]}}"
        ),
    )
}

const CLIENT: &str = "clientCertificate: {certificateFile: gw.crt, keyFile: gw.key}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_requiring_client_certificates_accepts_the_gateway_and_verifies_it() {
    let ca = Ca::new();
    let other_ca = Ca::new();
    let (addr, seen) = tls_backend(&ca, &["backend.e2e", "localhost"]).await;
    let dir = tempfile::tempdir().unwrap();
    write_atomic(&dir.path().join("ca.pem"), &ca.pem);
    write_atomic(&dir.path().join("other-ca.pem"), &other_ca.pem);
    let (gw_cert, gw_key) = ca.named_leaf("portcullis-gateway", &["gateway.e2e"], 30);
    write_atomic(&dir.path().join("gw.crt"), &gw_cert);
    write_atomic(&dir.path().join("gw.key"), &gw_key);
    let ip = addr.to_string();
    let by_name = format!("localhost:{}", addr.port());
    let manifests = [
        tls_service(
            "good",
            &ip,
            &format!("{{sni: backend.e2e, caFile: ca.pem, subjectAltNames: [backend.e2e], {CLIENT}}}"),
        ),
        // SNI and the name to verify default to the destination's host name.
        tls_service("byname", &by_name, &format!("{{caFile: ca.pem, {CLIENT}}}")),
        tls_service(
            "untrusted",
            &ip,
            &format!("{{sni: backend.e2e, caFile: other-ca.pem, subjectAltNames: [backend.e2e], {CLIENT}}}"),
        ),
        tls_service(
            "wrongsan",
            &ip,
            &format!("{{sni: backend.e2e, caFile: ca.pem, subjectAltNames: [other.e2e], {CLIENT}}}"),
        ),
        tls_service(
            "noclient",
            &ip,
            "{sni: backend.e2e, caFile: ca.pem, subjectAltNames: [backend.e2e]}",
        ),
        // Refused by validation: an IP proves nothing about whose certificate to expect.
        tls_service("ipnosan", &ip, "{caFile: ca.pem}"),
    ]
    .concat();
    write_atomic(&dir.path().join("all.yaml"), &manifests);
    let plane = Plane::start(dir.path(), None).await;
    let gw = Gateway::start(plane.xds, "upstream-tls", false).await;
    plane.wait_synced(None, STARTUP).await;

    // Validation: the IP Service without subjectAltNames is refused, naming the field.
    let objects = plane.objects().await;
    let report = |name: &str| {
        objects["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["object"] == format!("Service e2e/{name}"))
            .unwrap_or_else(|| panic!("no {name}: {objects:#}"))
            .clone()
    };
    let refused = report("ipnosan");
    assert_eq!(refused["served"], false, "{refused:#}");
    assert!(
        refused.to_string().contains("spec.tls.subjectAltNames"),
        "{refused:#}"
    );
    for name in ["good", "byname", "untrusted", "wrongsan", "noclient"] {
        assert_eq!(report(name)["served"], true, "{:#}", report(name));
    }

    // Through Envoy with the gateway's client certificate: 200, and the backend saw it.
    let want = der(&gw_cert);
    for name in ["good", "byname"] {
        let before = seen.clients.lock().len();
        let r = gw.get(&format!("{name}.e2e"), "/").await;
        assert_eq!(r.status, 200, "{name}: {:?}", r.body);
        assert_eq!(r.backend.as_deref(), Some("secure"));
        let clients = seen.clients.lock();
        assert_eq!(
            clients.len(),
            before + 1,
            "{name}: the backend answered once"
        );
        assert_eq!(
            clients.last().unwrap(),
            &want,
            "{name}: the backend saw another client certificate"
        );
        let subject = b"portcullis-gateway";
        assert!(
            want.windows(subject.len()).any(|w| w == subject),
            "the client certificate's subject names the gateway"
        );
    }

    // Directly, without a client certificate: the backend refuses the handshake.
    let refused_before = seen.refused.load(Ordering::Relaxed);
    let direct = get(
        &client(Some(&ca.pem)),
        addr.port(),
        "backend.e2e",
        "backend.e2e",
        "/",
    )
    .await;
    assert!(
        direct.is_err(),
        "a call without a client certificate was answered"
    );
    wait_until("the backend counted the refused handshake", || {
        seen.refused.load(Ordering::Relaxed) > refused_before
    })
    .await;

    // An untrusted backend, a SAN mismatch: 503, each for its reason (Envoy's TLS
    // stats), and no request reached the backend in plaintext.
    let answered = seen.clients.lock().len();
    for (name, stat) in [
        ("untrusted", "ssl.fail_verify_error"),
        ("wrongsan", "ssl.fail_verify_san"),
    ] {
        let r = gw.get(&format!("{name}.e2e"), "/").await;
        assert_eq!(r.status, 503, "{name}: {:?}", r.body);
        let count = gw.stat(&format!("cluster.e2e/{name}.{stat}")).await;
        assert!(count > 0, "{name}: cluster.e2e/{name}.{stat} is {count}");
    }
    // Without a client certificate the backend refuses Envoy too.
    let refused_before = seen.refused.load(Ordering::Relaxed);
    let r = gw.get("noclient.e2e", "/").await;
    assert_eq!(r.status, 503, "noclient: {:?}", r.body);
    wait_until(
        "the backend refused the gateway without a certificate",
        || seen.refused.load(Ordering::Relaxed) > refused_before,
    )
    .await;
    assert_eq!(
        seen.clients.lock().len(),
        answered,
        "a refused upstream still got a request"
    );

    // The expiry metric counts down to the client certificate's real notAfter (30 days).
    let metrics = fetch(&format!("http://{}/metrics", plane.admin))
        .await
        .unwrap()
        .1;
    let series = "portcullis_upstream_certificate_expiry_seconds{portcullis_service=\"e2e/good\"} ";
    let left: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .unwrap_or_else(|| panic!("no {series}in {metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert!(
        (left - 30.0 * 86_400.0).abs() < 300.0,
        "{left}s left, want 30 days"
    );

    // The client key is nowhere the control plane or Envoy shows.
    let mut shown = plane.xds_debug().await.to_string() + &plane.objects().await.to_string();
    shown += &fetch(&format!("http://{}/metrics", plane.admin))
        .await
        .unwrap()
        .1;
    for page in ["/config_dump?include_eds", "/stats", "/clusters"] {
        shown += &fetch(&gw.envoy.admin_url(page)).await.unwrap().1;
    }
    assert!(
        shown.contains("service/e2e/good/client"),
        "the secret is named"
    );
    for line in gw_key
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 20)
    {
        assert!(!shown.contains(line), "a client key line is shown");
    }
    plane.stop().await;
}

async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + STARTUP;
    while !ok() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
