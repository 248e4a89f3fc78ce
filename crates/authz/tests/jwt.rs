//! Local JWT validation: ES256 tokens signed here, the JWKS served by a real HTTP
//! server started here (so key rotation can be exercised), and a JWKS file through
//! the service's gRPC Check.
mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use portcullis_authz::{JwksSource, JwtConfig, JwtValidator};

struct Signer {
    kid: String,
    key: EncodingKey,
    jwk: serde_json::Value,
}

fn signer(kid: &str) -> Signer {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = kp.public_key_raw(); // 0x04 || X || Y
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    Signer {
        kid: kid.into(),
        key: EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap(),
        jwk: serde_json::json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": b64(&raw[1..33]), "y": b64(&raw[33..65]),
        }),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Signer {
    fn token(&self, claims: serde_json::Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, &claims, &self.key).unwrap()
    }

    fn good(&self) -> String {
        self.token(serde_json::json!({
            "iss": "https://issuer.test/", "aud": "api", "sub": "dave", "account": "acme",
            "scope": "orders:read orders:write", "exp": now() + 300, "jti": "t-1",
        }))
    }
}

fn jwks(signers: &[&Signer]) -> String {
    serde_json::json!({"keys": signers.iter().map(|s| s.jwk.clone()).collect::<Vec<_>>()})
        .to_string()
}

/// A JWKS endpoint whose document can be swapped; returns its URL.
async fn jwks_server(doc: Arc<Mutex<String>>) -> String {
    use axum::{Router, extract::State, routing::get};
    let app = Router::new()
        .route(
            "/jwks",
            get(|State(d): State<Arc<Mutex<String>>>| async move { d.lock().clone() }),
        )
        .with_state(doc);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn validator(url: String) -> JwtValidator {
    let mut c = JwtConfig::new(
        JwksSource::Url(url),
        vec!["https://issuer.test/".into()],
        vec!["api".into()],
    );
    c.min_refresh = Duration::ZERO;
    c.leeway = Duration::ZERO;
    JwtValidator::new(c).unwrap()
}

#[tokio::test]
async fn tokens_are_checked_for_signature_issuer_audience_and_expiry() {
    let k1 = signer("k1");
    let doc = Arc::new(Mutex::new(jwks(&[&k1])));
    let v = validator(jwks_server(doc).await);

    let id = v.validate(&k1.good()).await.unwrap().expect("valid token");
    assert_eq!(
        (id.user.as_str(), id.account.as_str(), id.key_id.as_str()),
        ("dave", "acme", "t-1")
    );
    assert_eq!(id.scopes, vec!["orders:read", "orders:write"]);
    assert!(id.expires_at.is_some());

    // An exp past what the clock can represent (u64::MAX, as a fuzzer found): valid
    // and with no expiry of its own, not a panic in the service.
    let far = serde_json::json!({"iss": "https://issuer.test/", "aud": "api", "sub": "x", "exp": u64::MAX});
    let id = v
        .validate(&k1.token(far))
        .await
        .unwrap()
        .expect("valid token");
    assert_eq!(id.expires_at, None);

    let base = serde_json::json!({"iss": "https://issuer.test/", "aud": "api", "sub": "x", "exp": now() + 300});
    let with = |k: &str, val: serde_json::Value| {
        let mut c = base.clone();
        c[k] = val;
        c
    };
    let rejected = [
        ("expired", k1.token(with("exp", (now() - 10).into()))),
        (
            "wrong issuer",
            k1.token(with("iss", "https://evil.test/".into())),
        ),
        ("wrong audience", k1.token(with("aud", "other".into()))),
        ("not yet valid", k1.token(with("nbf", (now() + 600).into()))),
        ("signed by an unknown key", signer("k1").good()),
        (
            "garbage",
            "eyJhbGciOiJFUzI1NiJ9.eyJ4IjoxfQ.AAAA".to_string(),
        ),
    ];
    for (why, token) in rejected {
        assert!(
            v.validate(&token).await.unwrap().is_none(),
            "{why} accepted"
        );
    }
    // alg confusion: an HS256 token "signed" with the public key material.
    let hs = jsonwebtoken::encode(
        &Header {
            kid: Some("k1".into()),
            ..Header::new(Algorithm::HS256)
        },
        &base,
        &EncodingKey::from_secret(k1.jwk["x"].as_str().unwrap().as_bytes()),
    )
    .unwrap();
    assert!(v.validate(&hs).await.unwrap().is_none(), "HS256 accepted");
}

#[tokio::test]
async fn rotated_keys_are_fetched_on_an_unknown_kid_and_retired_keys_stop_working() {
    let (k1, k2) = (signer("k1"), signer("k2"));
    let doc = Arc::new(Mutex::new(jwks(&[&k1])));
    let v = validator(jwks_server(doc.clone()).await);
    assert!(v.validate(&k1.good()).await.unwrap().is_some());
    assert!(
        v.validate(&k2.good()).await.unwrap().is_none(),
        "k2 not published yet"
    );

    *doc.lock() = jwks(&[&k2]);
    assert!(
        v.validate(&k2.good()).await.unwrap().is_some(),
        "k2 fetched on its first use"
    );
    assert!(
        v.validate(&k1.good()).await.unwrap().is_none(),
        "k1 retired with the refetch"
    );
}

#[tokio::test]
async fn an_unreachable_jwks_fails_closed_through_check() {
    let k1 = signer("k1");
    let dir = tempfile::tempdir().unwrap();
    let jwks_path = write(dir.path(), "jwks.json", &jwks(&[&k1]));
    let config = write(
        dir.path(),
        "authz.yaml",
        &format!(
            "jwt: {{jwksFile: '{jwks_path}', issuers: ['https://issuer.test/'], audiences: [api]}}\n"
        ),
    );
    let mut svc = start(&["--config", &config]).await;
    let ext = [("portcullis.auth.scopes", "orders:read")];
    let bearer = format!("Bearer {}", k1.good());
    let r = svc
        .client
        .check(check_request(&[("authorization", &bearer)], &ext))
        .await
        .unwrap();
    assert_eq!(http_status(r.get_ref()), 200);

    let missing = write(
        dir.path(),
        "authz2.yaml",
        "jwt: {jwksUrl: 'http://127.0.0.1:9/none', issuers: [i], audiences: [a]}\n",
    );
    let mut down = start(&["--config", &missing]).await;
    let r = down
        .client
        .check(check_request(&[("authorization", &bearer)], &ext))
        .await
        .unwrap();
    assert_eq!(
        http_status(r.get_ref()),
        503,
        "no key set could be loaded: fail closed"
    );
}

/// A JWKS endpoint that can be told to answer, fail (500) or hang; counts requests.
struct Flaky {
    url: String,
    doc: Arc<Mutex<String>>,
    mode: Arc<std::sync::atomic::AtomicU8>,
    calls: Arc<std::sync::atomic::AtomicUsize>,
}

const ANSWER: u8 = 0;
const FAIL: u8 = 1;
const HANG: u8 = 2;

async fn flaky_jwks(doc: String) -> Flaky {
    use axum::{Router, extract::State, http::StatusCode, routing::get};
    use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
    type St = (Arc<Mutex<String>>, Arc<AtomicU8>, Arc<AtomicUsize>);
    async fn serve(State((doc, mode, calls)): State<St>) -> Result<String, StatusCode> {
        calls.fetch_add(1, Ordering::SeqCst);
        match mode.load(Ordering::SeqCst) {
            FAIL => Err(StatusCode::INTERNAL_SERVER_ERROR),
            HANG => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Err(StatusCode::GATEWAY_TIMEOUT)
            }
            _ => Ok(doc.lock().clone()),
        }
    }
    let st: St = (
        Arc::new(Mutex::new(doc)),
        Arc::new(AtomicU8::new(ANSWER)),
        Arc::new(AtomicUsize::new(0)),
    );
    let app = Router::new()
        .route("/jwks", get(serve))
        .with_state(st.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Flaky {
        url,
        doc: st.0,
        mode: st.1,
        calls: st.2,
    }
}

impl Flaky {
    fn set(&self, mode: u8) {
        self.mode.store(mode, std::sync::atomic::Ordering::SeqCst);
    }
    fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn validator(&self) -> JwtValidator {
        let mut c = JwtConfig::new(
            JwksSource::Url(self.url.clone()),
            vec!["https://issuer.test/".into()],
            vec!["api".into()],
        );
        c.refresh = Duration::from_millis(300);
        c.min_refresh = Duration::ZERO;
        c.fetch_timeout = Duration::from_secs(2);
        c.retry_backoff = Duration::from_millis(400);
        c.max_backoff = Duration::from_secs(2);
        c.leeway = Duration::ZERO;
        JwtValidator::new(c).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_endpoint_that_is_down_costs_one_fetch_per_backoff_and_no_waiting() {
    let (k1, k2) = (signer("k1"), signer("k2"));
    let idp = flaky_jwks(jwks(&[&k1])).await;
    let v = idp.validator();
    assert!(v.validate(&k1.good()).await.unwrap().is_some());
    assert_eq!(idp.calls(), 1);

    // The endpoint hangs (each fetch would take the 2 s timeout): once the set is due
    // for its refresh, one fetch starts in the background and validations go on with
    // the loaded keys instead of queueing behind it.
    idp.set(HANG);
    tokio::time::sleep(Duration::from_millis(400)).await;
    for _ in 0..50 {
        let started = std::time::Instant::now();
        assert!(v.validate(&k1.good()).await.unwrap().is_some());
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a validation took {:?}: it waited for the hung fetch",
            started.elapsed()
        );
    }
    // The refresh runs in the background: on a loaded machine its request may reach
    // the endpoint only after the 50 validations. Wait for it (well inside the 2 s the
    // hung fetch holds), then count.
    let deadline = std::time::Instant::now() + Duration::from_millis(1500);
    while idp.calls() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(idp.calls(), 2, "one refresh for 50 validations");

    // Down hard, and a flood of tokens naming a key the set does not hold (each of
    // which would want a refetch): fetches are spaced by the growing backoff
    // (0.2-0.4 s, 0.4-0.8 s, 0.8-1.6 s, ...), not one per token.
    idp.set(FAIL);
    tokio::time::sleep(Duration::from_millis(2100)).await; // the hung fetch times out
    let before = idp.calls();
    let flood_until = std::time::Instant::now() + Duration::from_millis(1500);
    let mut tokens = 0;
    while std::time::Instant::now() < flood_until {
        assert!(v.validate(&k2.good()).await.unwrap().is_none());
        tokens += 1;
    }
    let fetches = idp.calls() - before;
    assert!(
        fetches <= 5,
        "{fetches} fetches for {tokens} unknown-kid tokens in 1.5 s"
    );
    assert!(tokens >= 100, "only {tokens} validations in 1.5 s");
    assert!(
        v.validate(&k1.good()).await.unwrap().is_some(),
        "the loaded keys still work"
    );

    // Back up with k2 published: after the (capped) backoff, k2 is fetched on use.
    *idp.doc.lock() = jwks(&[&k1, &k2]);
    idp.set(ANSWER);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(v.validate(&k2.good()).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_keys_and_the_endpoint_down_validations_fail_fast_without_refetching() {
    let k1 = signer("k1");
    let idp = flaky_jwks(jwks(&[&k1])).await;
    idp.set(FAIL);
    let v = idp.validator();
    for _ in 0..100 {
        assert!(v.validate(&k1.good()).await.is_err(), "fail closed");
    }
    assert!(
        idp.calls() <= 2,
        "{} fetches for 100 validations",
        idp.calls()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_document_over_the_size_cap_is_refused() {
    let k1 = signer("k1");
    // Valid JSON, padded past 1 MiB: without the cap it would load.
    let padded = format!("{}{}", " ".repeat(1 << 20), jwks(&[&k1]));
    let idp = flaky_jwks(padded).await;
    assert!(idp.validator().validate(&k1.good()).await.is_err());
    *idp.doc.lock() = jwks(&[&k1]);
    let fresh = idp.validator();
    assert!(fresh.validate(&k1.good()).await.unwrap().is_some());
}
