//! What an attacker sends to get past an authenticated Route, through real Envoy and
//! `portcullis authz`: odd path spellings, methods, header case, oversized headers and
//! bodies, forged identity headers, sent as raw bytes so no client library tidies them.
//!
//! The routes are the hardening issue's case: a public `GET /` next to an authenticated
//! `/admin`. The invariant: no request without credentials reaches the admin backend,
//! and none reaches the public backend with a path a lenient backend (servlet
//! containers, case-insensitive file systems, double decoders) would read as `/admin`.
use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::auth::{Authz, keys_yaml};
use crate::harness::*;

/// Request targets with their headers, as a backend received them.
type Seen = Arc<Mutex<Vec<(String, Vec<(String, String)>)>>>;

/// A backend that records the raw request target and headers of everything it serves.
struct Recorder {
    addr: SocketAddr,
    seen: Seen,
}

async fn recorder() -> Recorder {
    let seen: Seen = Arc::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback({
        let seen = seen.clone();
        move |req: axum::extract::Request| async move {
            let headers = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
                .collect();
            seen.lock().push((req.uri().to_string(), headers));
            "ok"
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Recorder { addr, seen }
}

/// Sends `head` (request line and headers, CRLF-separated, without the blank line) and
/// `body`; returns the status code, or 0 when Envoy closed without answering.
async fn raw(port: u16, head: &str, body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut req = format!("{head}\r\nconnection: close\r\n\r\n").into_bytes();
    req.extend_from_slice(body);
    // Envoy may answer and close before reading everything (431, 413): fine.
    let _ = s.write_all(&req).await;
    // Only the status line matters: stop at the end of the response head rather than
    // wait for Envoy's delayed close after a refused request.
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut chunk = [0u8; 4096];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&out);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// How the most lenient backend reads a request target: percent-decoded (twice), `\`
/// as `/`, `;params` dropped per segment, dot segments resolved, slashes merged, lower
/// case.
fn lenient(target: &str) -> String {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let mut p = path.to_string();
    for _ in 0..2 {
        p = percent_decode(&p);
    }
    let p = p.replace('\\', "/").to_ascii_lowercase();
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        let seg = seg.split(';').next().unwrap_or_default();
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_spelling_of_admin_reaches_a_backend_without_credentials() {
    let (public, admin) = (recorder().await, recorder().await);
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.yaml");
    write_atomic(&keys, &keys_yaml(&[("k1", "admin-key", "alice", "")]));
    let authz = Authz::start(&["--keys-file", keys.to_str().unwrap()]).await;
    let manifests = service_yaml("public", public.addr)
        + &service_yaml("admin", admin.addr)
        + &route_yaml(
            "public",
            "{match: {methods: [GET, HEAD], paths: [{prefix: /}]}, backends: [{service: public}]}",
        )
        + &route_yaml(
            "admin",
            "{match: {paths: [{prefix: /admin}]}, auth: {}, backends: [{service: admin}]}",
        );
    write_atomic(&dir.path().join("all.yaml"), &manifests);
    let options = portcullis_translate::Options {
        listen_address: "127.0.0.1".into(),
        listen_port: 0,
        authz: Some(authz.grpc.to_string()),
        ..Default::default()
    };
    let plane = Plane::start_with(dir.path(), None, options).await;
    let gw = Gateway::start(plane.xds, "adversarial", false).await;
    plane.wait_synced(None, STARTUP).await;
    let port = gw.port;

    let targets = [
        "/admin",
        "/admin/",
        "/admin/users",
        "/ADMIN",
        "/Admin/Users",
        "/admin;x",
        "/admin;jsessionid=1/users",
        "/%61dmin",
        "/%41DMIN/users",
        "/%2561dmin",
        "/admin%2Fusers",
        "/admin%2fusers",
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin",
        "/public/..%2Fadmin",
        "//admin",
        "/./admin",
        "/admin/./users",
        "/admin%5Cusers",
        "/public%5C..%5Cadmin",
        "/admin?x=1",
        "/admin%20",
        "/admin%00",
        "/admin%3Bx",
        "http://x.test/admin",
        "*",
    ];
    let mut outcomes = Vec::new();
    for target in targets {
        for method in ["GET", "HEAD", "POST", "OPTIONS", "get", "PURGE"] {
            let status = raw(
                port,
                &format!("{method} {target} HTTP/1.1\r\nhost: x.test"),
                b"",
            )
            .await;
            outcomes.push(format!("{method} {target} → {status}"));
            // `explain` predicts Envoy's answer for every spelling Envoy routes.
            if method == "GET" && target.starts_with('/') {
                let e = plane.explain(method, "x.test", target, &[]).await;
                let predicted = match e["outcome"].as_str().unwrap() {
                    "routed" if e["served"]["auth"].is_object() => 401,
                    "routed" => 200,
                    _ => e["status"].as_u64().unwrap() as u16,
                };
                assert_eq!(predicted, status, "{method} {target}: explain said {e:#}");
            }
        }
    }
    // Header case and a forged identity on both routes.
    for head in [
        "GET /admin HTTP/1.1\r\nhost: X.TEST\r\nX-API-KEY: not-a-key",
        "GET /admin HTTP/1.1\r\nhost: x.test\r\nx-portcullis-user: alice",
        "GET /admin HTTP/1.1\r\nhost: x.test\r\nAuthorization: bearer ",
        "GET /public HTTP/1.1\r\nhost: x.test\r\nX-Portcullis-User: alice\r\nx-portcullis-scopes: admin",
    ] {
        let status = raw(port, head, b"").await;
        outcomes.push(format!("{head:?} → {status}"));
    }
    // Oversized headers and bodies are refused before any backend.
    let big = "a".repeat(100 * 1024);
    let status = raw(
        port,
        &format!("GET /admin HTTP/1.1\r\nhost: x.test\r\nx-big: {big}"),
        b"",
    )
    .await;
    assert!(
        status == 431 || status == 0,
        "a 100 KiB header got {status}"
    );
    let body = vec![b'x'; 8 * 1024 * 1024];
    let status = raw(
        port,
        &format!(
            "POST /admin HTTP/1.1\r\nhost: x.test\r\ncontent-length: {}",
            body.len()
        ),
        &body,
    )
    .await;
    assert!(
        [401, 413, 0].contains(&status),
        "an 8 MiB body to /admin got {status}"
    );

    let admin_seen = admin.seen.lock().clone();
    assert!(
        admin_seen.is_empty(),
        "requests without credentials reached the admin backend: {admin_seen:#?}\n{outcomes:#?}"
    );
    for (target, headers) in public.seen.lock().iter() {
        let read_as = lenient(target);
        assert!(
            read_as != "/admin" && !read_as.starts_with("/admin/"),
            "the public backend got {target:?}, which a lenient backend reads as {read_as:?}\n{outcomes:#?}"
        );
        assert!(
            headers.iter().all(|(k, _)| !k.starts_with("x-portcullis-")),
            "a forged identity header reached the public backend: {headers:?}"
        );
    }
    // Nothing above was refused for the wrong reason: the public route still serves,
    // and the admin route serves with a key.
    assert_eq!(
        raw(port, "GET /public HTTP/1.1\r\nhost: x.test", b"").await,
        200
    );
    let started = Instant::now();
    assert_eq!(
        raw(
            port,
            "GET /admin/users HTTP/1.1\r\nhost: x.test\r\nx-api-key: admin-key",
            b""
        )
        .await,
        200
    );
    assert_eq!(admin.seen.lock().len(), 1, "{:?}", started.elapsed());
    eprintln!("{}", outcomes.join("\n"));
}
