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
