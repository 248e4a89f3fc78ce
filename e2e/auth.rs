//! Authentication through real Envoy: the control plane puts each Route's auth policy
//! in ext_authz `context_extensions`, `portcullis authz` (in this process, on its real
//! gRPC server) answers Envoy's Check from a hashed key file or an RFC 7662
//! introspection server started here.
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::harness::*;

/// `portcullis authz` in this process, on kernel-chosen ports.
pub struct Authz {
    pub grpc: SocketAddr,
    pub metrics: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl Authz {
    pub async fn start(flags: &[&str]) -> Authz {
        let args = portcullis_authz::Args::parse_from(["authz"].iter().chain(flags).copied());
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (g, m) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            if let Err(e) = portcullis_authz::run(args, grpc, http, async move {
                let _ = stopped.await;
            })
            .await
            {
                panic!("authz: {e:#}");
            }
        });
        wait_ok(&format!("http://{m}/healthz"), "authz").await;
        Authz {
            grpc: g,
            metrics: m,
            _stop: stop,
        }
    }

    /// One sample of `/metrics`, by its full name with labels as rendered.
    pub async fn metric(&self, series: &str) -> f64 {
        let (_, text) = fetch(&format!("http://{}/metrics", self.metrics))
            .await
            .unwrap();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }
}

fn sha256_hex(key: &str) -> String {
    portcullis_authz::Digest::of(key.as_bytes()).hex()
}

pub fn keys_yaml(keys: &[(&str, &str, &str, &str)]) -> String {
    let mut s = String::from("keys:\n");
    for (id, key, user, scopes) in keys {
        s.push_str(&format!(
            "- {{id: {id}, sha256: {}, user: {user}, account: acme, scopes: [{scopes}]}}\n",
            sha256_hex(key)
        ));
    }
    s
}

/// Service `echo` and Routes with each kind of auth policy.
pub fn manifests(echo: SocketAddr) -> String {
    let mut m = service_yaml("echo", echo);
    let b = "backends: [{service: echo}]";
    for (name, path, auth) in [
        ("orders", "/orders", "auth: {scopes: ['orders:read']}, "),
        ("public", "/public", ""),
        ("optional", "/optional", "auth: {required: false}, "),
        (
            "shadow",
            "/shadow",
            "auth: {shadow: true, scopes: [admin]}, ",
        ),
    ] {
        m.push_str(&route_yaml(
            name,
            &format!("{{match: {{paths: [{{prefix: {path}}}]}}, {auth}{b}}}"),
        ));
    }
    m
}

struct AuthStack {
    gw: Gateway,
    _plane: Plane,
    _dir: tempfile::TempDir,
}

async fn auth_stack(authz: &Authz, echo: SocketAddr, node: &str) -> AuthStack {
    let options = portcullis_translate::Options {
        authz: Some(authz.grpc.to_string()),
        ..Default::default()
    };
    auth_stack_with(&manifests(echo), options, node).await
}

/// The control plane on `manifests` with `options` (listening on 127.0.0.1, port 0),
/// and an Envoy synced to it.
async fn auth_stack_with(
    manifests: &str,
    options: portcullis_translate::Options,
    node: &str,
) -> AuthStack {
    let dir = tempfile::tempdir().unwrap();
    write_atomic(&dir.path().join("all.yaml"), manifests);
    let options = portcullis_translate::Options {
        listen_address: "127.0.0.1".into(),
        listen_port: 0,
        ..options
    };
    let plane = Plane::start_with(dir.path(), None, options).await;
    let gw = Gateway::start(plane.xds, node, false).await;
    plane.wait_synced(None, STARTUP).await;
    AuthStack {
        gw,
        _plane: plane,
        _dir: dir,
    }
}

fn header<'a>(r: &'a Reply, name: &str) -> Option<&'a str> {
    r.body["headers"][name].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_scopes_forged_headers_and_shadow_through_envoy() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.yaml");
    write_atomic(
        &keys,
        &keys_yaml(&[
            ("alice-ci", "alice-key", "alice", "'orders:read'"),
            ("bob-ci", "bob-key", "bob", ""),
        ]),
    );
    let authz = Authz::start(&["--keys-file", keys.to_str().unwrap()]).await;
    let s = auth_stack(&authz, echo("echo").await, "auth-keys").await;
    let gw = &s.gw;
    let forged = ("x-portcullis-user", "mallory");

    // A valid key with the scope: the backend sees the identity, never the forgery.
    let r = gw
        .request(
            "GET",
            "x",
            "/orders/1",
            &[("x-api-key", "alice-key"), forged],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(header(&r, "x-portcullis-user"), Some("alice"));
    assert_eq!(header(&r, "x-portcullis-account"), Some("acme"));
    assert_eq!(header(&r, "x-portcullis-scopes"), Some("orders:read"));
    let r = gw
        .request(
            "GET",
            "x",
            "/orders/1",
            &[("authorization", "Bearer alice-key")],
        )
        .await;
    assert_eq!(
        r.status, 200,
        "an opaque bearer token goes to the same key store"
    );

    // Missing and wrong credentials: 401 with a challenge and a stable error code.
    let r = gw.request("GET", "x", "/orders/1", &[forged]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error"], "missing_credentials");
    assert_eq!(
        r.headers["www-authenticate"],
        r#"Bearer realm="portcullis""#
    );
    assert!(
        r.body["requestId"].as_str().is_some_and(|s| s.len() > 8),
        "{:?}",
        r.body
    );
    let r = gw
        .request("GET", "x", "/orders/1", &[("x-api-key", "guess")])
        .await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (401, Some("invalid_credentials"))
    );

    // A valid key without the scope: 403 naming it.
    let r = gw
        .request("GET", "x", "/orders/1", &[("x-api-key", "bob-key")])
        .await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (403, Some("insufficient_scope"))
    );
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains(r#"scope="orders:read""#)
    );

    // Routes without auth bypass the filter, and still drop forged identity headers.
    let r = gw.request("GET", "x", "/public", &[forged]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        header(&r, "x-portcullis-user"),
        None,
        "forged header reached the backend"
    );

    // Optional auth: anonymous passes without identity; a key is still checked.
    let r = gw.request("GET", "x", "/optional", &[forged]).await;
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "x-portcullis-user"), None);
    let r = gw
        .request("GET", "x", "/optional", &[("x-api-key", "bob-key")])
        .await;
    assert_eq!(header(&r, "x-portcullis-user"), Some("bob"));
    let r = gw
        .request("GET", "x", "/optional", &[("x-api-key", "guess")])
        .await;
    assert_eq!(
        r.status, 401,
        "a wrong key is refused even where auth is optional"
    );

    // Shadow: bob lacks `admin`; the request passes, unauthenticated, and is counted.
    let before = authz
        .metric(r#"portcullis_authz_decisions_total{result="forbidden",shadow="true"}"#)
        .await;
    let r = gw
        .request("GET", "x", "/shadow", &[("x-api-key", "bob-key"), forged])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        header(&r, "x-portcullis-user"),
        None,
        "a shadow denial carries no identity"
    );
    let after = authz
        .metric(r#"portcullis_authz_decisions_total{result="forbidden",shadow="true"}"#)
        .await;
    assert_eq!(after - before, 1.0);

    // Revocation: the key file changes, the service reloads it, the key stops working.
    let reloads = r#"portcullis_authz_key_file_reloads_total{outcome="ok"}"#;
    write_atomic(&keys, &keys_yaml(&[("bob-ci", "bob-key", "bob", "")]));
    let deadline = Instant::now() + STARTUP;
    while authz.metric(reloads).await < 1.0 {
        assert!(Instant::now() < deadline, "key file not reloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = gw
        .request("GET", "x", "/orders/1", &[("x-api-key", "alice-key")])
        .await;
    assert_eq!(r.status, 401, "revoked key still admitted");
}

/// Credentials and identity headers a backend receives, under the default names and
/// under names set only on the control plane (`--api-key-header`, `--identity-headers`;
/// the authz service is started without any).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumed_credentials_and_forged_identities_never_reach_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.yaml");
    write_atomic(
        &keys,
        &keys_yaml(&[("alice-ci", "alice-key", "alice", "'orders:read'")]),
    );
    let authz = Authz::start(&["--keys-file", keys.to_str().unwrap()]).await;
    let echo = echo("echo").await;
    let mut m = manifests(echo);
    m.push_str(&route_yaml(
        "forward",
        "{match: {paths: [{prefix: /forward}]}, auth: {forwardCredential: true}, backends: [{service: echo}]}",
    ));

    // Default names.
    let options = portcullis_translate::Options {
        authz: Some(authz.grpc.to_string()),
        ..Default::default()
    };
    let s = auth_stack_with(&m, options, "auth-strip-default").await;
    let seen = |r: &Reply, h: &str| header(r, h).map(str::to_string);
    let bearer = ("authorization", "Bearer alice-key");
    let key = ("x-api-key", "alice-key");
    for (path, creds) in [
        ("/orders/1", vec![key]),
        ("/orders/1", vec![bearer]),
        (
            "/orders/1",
            vec![key, ("authorization", "Bearer not-checked")],
        ),
        ("/optional", vec![key]),
    ] {
        let r = s.gw.request("GET", "x", path, &creds).await;
        assert_eq!(r.status, 200, "{path} {creds:?}: {:?}", r.body);
        assert_eq!(seen(&r, "x-portcullis-user").as_deref(), Some("alice"));
        assert_eq!(
            seen(&r, "x-api-key"),
            None,
            "{path} {creds:?}: key reached the backend"
        );
        assert_eq!(
            seen(&r, "authorization"),
            None,
            "{path} {creds:?}: Authorization reached the backend"
        );
    }
    let r = s.gw.request("GET", "x", "/forward", &[key]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        seen(&r, "x-api-key").as_deref(),
        Some("alice-key"),
        "forwardCredential"
    );
    let r = s.gw.request("GET", "x", "/forward", &[bearer]).await;
    assert_eq!(
        seen(&r, "authorization").as_deref(),
        Some("Bearer alice-key")
    );
    assert_eq!(seen(&r, "x-portcullis-user").as_deref(), Some("alice"));
    // Shadow only adds: the credential stays while the Route's auth is rolled out.
    let r = s.gw.request("GET", "x", "/shadow", &[key]).await;
    assert_eq!(r.status, 200);
    assert_eq!(seen(&r, "x-api-key").as_deref(), Some("alice-key"));
    drop(s);

    // Names set on the control plane only: authz follows them per Route, Envoy strips
    // forged copies of both the custom and the default names everywhere.
    let options = portcullis_translate::Options {
        authz: Some(authz.grpc.to_string()),
        api_key_header: "x-tenant-key".into(),
        identity_headers: portcullis_contract::authz::IdentityHeaderNames::parse(
            "user=x-id-user,account=x-id-account,scopes=x-id-scopes",
        )
        .unwrap(),
        ..Default::default()
    };
    let s = auth_stack_with(&m, options, "auth-strip-custom").await;
    let forged = [
        ("x-id-user", "mallory"),
        ("x-id-account", "evil"),
        ("x-id-scopes", "admin"),
        ("x-portcullis-user", "mallory"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut h = forged.to_vec();
        h.extend_from_slice(extra);
        h
    };
    let r =
        s.gw.request(
            "GET",
            "x",
            "/orders/1",
            &with(&[("x-tenant-key", "alice-key")]),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(seen(&r, "x-id-user").as_deref(), Some("alice"));
    assert_eq!(seen(&r, "x-id-account").as_deref(), Some("acme"));
    assert_eq!(seen(&r, "x-id-scopes").as_deref(), Some("orders:read"));
    assert_eq!(seen(&r, "x-portcullis-user"), None);
    assert_eq!(
        seen(&r, "x-tenant-key"),
        None,
        "custom key header reached the backend"
    );
    let r =
        s.gw.request("GET", "x", "/orders/1", &[("x-api-key", "alice-key")])
            .await;
    assert_eq!(
        r.status, 401,
        "the old header is no credential under the new name"
    );
    for path in ["/public", "/optional"] {
        let r = s.gw.request("GET", "x", path, &with(&[])).await;
        assert_eq!(r.status, 200);
        for (h, _) in forged {
            assert_eq!(seen(&r, h), None, "{path}: forged {h} reached the backend");
        }
    }
}

/// An RFC 7662 introspection endpoint: `active` for the tokens in `valid`, counting
/// every call.
pub struct Introspection {
    pub url: String,
    pub calls: Arc<AtomicUsize>,
    pub valid: Arc<parking_lot::Mutex<Vec<String>>>,
}

pub async fn introspection(delay: Duration) -> Introspection {
    use axum::{Form, Json, Router, extract::State, routing::post};
    type St = (
        Arc<AtomicUsize>,
        Arc<parking_lot::Mutex<Vec<String>>>,
        Duration,
    );
    async fn answer(
        State((calls, valid, delay)): State<St>,
        Form(form): Form<std::collections::HashMap<String, String>>,
    ) -> Json<serde_json::Value> {
        calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(delay).await;
        let token = form.get("token").cloned().unwrap_or_default();
        if valid.lock().contains(&token) {
            Json(
                serde_json::json!({"active": true, "sub": format!("user-{token}"), "scope": "orders:read", "account": "acme"}),
            )
        } else {
            Json(serde_json::json!({"active": false}))
        }
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let valid = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let app = Router::new()
        .route("/introspect", post(answer))
        .with_state((calls.clone(), valid.clone(), delay));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/introspect", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Introspection { url, calls, valid }
}

fn write_config(dir: &Path, yaml: &str) -> String {
    let p = dir.join("authz.yaml");
    write_atomic(&p, yaml);
    p.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspected_token_is_cached_then_revoked_after_the_ttl() {
    let idp = introspection(Duration::ZERO).await;
    idp.valid.lock().push("tok-1".into());
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_secs(2);
    let config = write_config(
        dir.path(),
        &format!(
            "cache: {{ttl: 2s, negativeTtl: 1s}}\nkeyStore:\n  introspection: {{endpoints: ['{}']}}\n",
            idp.url
        ),
    );
    let authz = Authz::start(&["--config", &config]).await;
    let s = auth_stack(&authz, echo("echo").await, "auth-introspect").await;
    let bearer = ("authorization", "Bearer tok-1");

    for _ in 0..20 {
        let r = s.gw.request("GET", "x", "/orders/1", &[bearer]).await;
        assert_eq!(r.status, 200);
        assert_eq!(header(&r, "x-portcullis-user"), Some("user-tok-1"));
    }
    assert_eq!(
        idp.calls.load(Ordering::SeqCst),
        1,
        "20 requests within the TTL: one lookup"
    );

    idp.valid.lock().clear();
    tokio::time::sleep(ttl + Duration::from_millis(500)).await;
    let r = s.gw.request("GET", "x", "/orders/1", &[bearer]).await;
    assert_eq!(r.status, 401, "revoked token admitted past the TTL");
    assert_eq!(idp.calls.load(Ordering::SeqCst), 2);
}
