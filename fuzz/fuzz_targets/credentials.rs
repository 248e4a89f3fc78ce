//! `portcullis authz` on hostile input, without a network: the whole ext_authz Check
//! (credential headers, route context, key file store, local JWT validation, response
//! building), the key-file parser, the config parser and the JWKS parser.
//!
//! The first byte picks the mode. Check: headers and context extensions from the bytes,
//! with bearer tokens that are often validly signed (ES256, a key made at start-up)
//! over fuzzed claims, so claim handling is reached. Beyond not panicking: a Check
//! without a credential, or with an API key the store does not hold, is denied unless
//! the route says credentials are optional or shadow mode is on; and what the gRPC
//! server sends for the same request (`AuthzGrpc::answer`, with its lean decode and
//! shared "allowed" answers) decodes to that same CheckResponse.
#![no_main]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbitrary::{Arbitrary, Result, Unstructured};
use base64::Engine;
use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse,
    attribute_context::{HttpRequest, Request},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use portcullis_authz::store::FileStore;
use portcullis_authz::{
    Authorizer, AuthzGrpc, CacheConfig, CheckCall, Config, Digest, IdentityCache, IdentityHeaders, JwksSource,
    JwtConfig, JwtValidator, KeyStore, Metrics,
};
use portcullis_contract::authz::{DEFAULT_API_KEY_HEADER, FORWARD_CREDENTIAL, REQUIRED, ROUTE, SCOPES, SHADOW};
use serde_json::{Value, json};

const ISSUER: &str = "https://issuer.test/";
const AUDIENCE: &str = "api";
const KID: &str = "k-1";
/// API keys the key file holds.
const KEYS: &[&str] = &["key-one", "key-two"];

struct World {
    dir: PathBuf,
    grpc: AuthzGrpc,
    cache: IdentityCache,
    signer: EncodingKey,
    /// Re-reads its JWKS file on every validation (refresh 0), for the JWKS mode.
    jwks_validator: JwtValidator,
    rt: tokio::runtime::Runtime,
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let (&mode, rest) = data.split_first().unwrap_or((&0, &[]));
    let text = String::from_utf8_lossy(rest);
    match mode % 5 {
        0 => {
            let _ = check(w, &mut Unstructured::new(rest));
        }
        1 => {
            let path = w.dir.join("fuzz-keys.yaml");
            std::fs::write(&path, rest).expect("temp file");
            if let Ok(store) = FileStore::load(&path) {
                let _ = store.len();
            }
        }
        2 => {
            if let Ok(c) = Config::parse(&text) {
                let _ = (c.cache(), c.identity_headers(), c.api_key_header());
            }
        }
        3 => {
            std::fs::write(w.dir.join("fuzz-jwks.json"), rest).expect("temp file");
            let token = sign(w, Some(KID), &good_claims());
            let _ = w.rt.block_on(w.jwks_validator.validate(&token));
        }
        _ => {
            if let Some(d) = Digest::from_hex(&text) {
                assert_eq!(Digest::from_hex(&d.hex()).map(|x| x.0), Some(d.0));
            }
        }
    }
});

fn check(w: &World, u: &mut Unstructured<'_>) -> Result<()> {
    w.cache.clear();
    let mut headers = HashMap::new();
    for _ in 0..u.int_in_range(0..=4)? {
        let name = match u.int_in_range(0..=4)? {
            0 | 1 => "authorization".to_string(),
            2 => DEFAULT_API_KEY_HEADER.to_string(),
            3 => u.choose(&["x-request-id", "Authorization", "X-API-KEY", "x-portcullis-user"])?.to_string(),
            _ => String::arbitrary(u)?,
        };
        let value = match name.as_str() {
            "authorization" => authorization(w, u)?,
            DEFAULT_API_KEY_HEADER if u.ratio(1, 2)? => {
                format!("{}{}", u.choose(&["", " ", "\t"])?, u.choose(KEYS)?)
            }
            _ => String::arbitrary(u)?,
        };
        headers.insert(name, value);
    }
    let mut context = HashMap::new();
    for key in [ROUTE, REQUIRED, SCOPES, SHADOW, FORWARD_CREDENTIAL] {
        if u.ratio(1, 2)? {
            let value = match u.int_in_range(0..=2)? {
                0 => "true".to_string(),
                1 => "false".to_string(),
                _ => String::arbitrary(u)?,
            };
            context.insert(key.to_string(), value);
        }
    }
    let flag = |k: &str| context.get(k).map(String::as_str);
    let lenient = flag(REQUIRED) == Some("false") || flag(SHADOW) == Some("true");
    let api_key = headers.get(DEFAULT_API_KEY_HEADER).map(|k| k.trim());
    let must_deny = !lenient
        && match api_key {
            Some(k) => !KEYS.contains(&k),
            None => !headers.contains_key("authorization"),
        };
    let req = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    headers: headers.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions: context.clone(),
            ..Default::default()
        }),
    };
    let resp = w.rt.block_on(w.grpc.check(&req));
    let code = resp.status.as_ref().map_or(0, |s| s.code);
    if must_deny {
        assert_ne!(code, 0, "admitted: {headers:?} {context:?}");
    }
    // What the gRPC server sends (lean decode; an allowed identity's answer encoded
    // once, then shared) is, decoded, this same answer: now from the cache, and again.
    let lean: CheckCall = Message::decode(req.encode_to_vec().as_slice()).expect("lean decode");
    for _ in 0..2 {
        let sent = w.rt.block_on(w.grpc.answer(&lean)).encode_to_vec();
        let got = CheckResponse::decode(sent.as_slice()).expect("the answer decodes");
        assert_eq!(got, resp, "{headers:?} {context:?}");
    }
    Ok(())
}

fn authorization(w: &World, u: &mut Unstructured<'_>) -> Result<String> {
    let scheme = *u.choose(&["Bearer", "bearer", "BEARER", "Basic", "", "Bearer\t"])?;
    let sep = *u.choose(&[" ", "  ", ""])?;
    let token = match u.int_in_range(0..=3)? {
        0 => {
            let claims = claims(u)?;
            let kid = *u.choose(&[Some(KID), None, Some("other")])?;
            sign(w, kid, &claims)
        }
        1 => u.choose(KEYS)?.to_string(),
        2 => {
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let part = |u: &mut Unstructured<'_>| -> Result<String> {
                Ok(b64.encode(<&[u8]>::arbitrary(u)?))
            };
            format!("eyJ{}.{}.{}", part(u)?, part(u)?, part(u)?)
        }
        _ => String::arbitrary(u)?,
    };
    Ok(format!("{scheme}{sep}{token}"))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn good_claims() -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "dave", "exp": now() + 300, "scope": "a b"})
}

/// Claims that are mostly valid, with fuzzed values and extra or missing claims.
fn claims(u: &mut Unstructured<'_>) -> Result<Value> {
    let Value::Object(mut m) = good_claims() else {
        unreachable!()
    };
    for _ in 0..u.int_in_range(0..=4)? {
        let key = *u.choose(&["iss", "aud", "sub", "exp", "nbf", "scope", "scp", "account", "jti", "x"])?;
        if u.ratio(1, 4)? {
            m.remove(key);
        } else {
            m.insert(key.to_string(), value(u, 2)?);
        }
    }
    Ok(Value::Object(m))
}

fn value(u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    Ok(match u.int_in_range(0..=7)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => json!(u64::arbitrary(u)?),
        3 => json!(i64::arbitrary(u)?),
        4 => json!(f64::arbitrary(u)?),
        5 => json!(now().saturating_add(u64::from(u16::arbitrary(u)?))),
        6 if depth > 0 => Value::Array(
            (0..u.int_in_range(0..=3)?)
                .map(|_| value(u, depth - 1))
                .collect::<Result<_>>()?,
        ),
        _ => Value::String(String::arbitrary(u)?),
    })
}

fn sign(w: &World, kid: Option<&str>, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&h, claims, &w.signer).expect("signing")
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("portcullis-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let rng = ring::rand::SystemRandom::new();
        let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("key");
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).expect("key");
        use ring::signature::KeyPair;
        let public = pair.public_key().as_ref(); // 0x04 || X || Y
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "kid": KID,
            "x": b64.encode(&public[1..33]), "y": b64.encode(&public[33..65]),
        }]});
        let jwks_path = dir.join("jwks.json");
        std::fs::write(&jwks_path, jwks.to_string()).expect("jwks");
        let keys: Vec<Value> = KEYS
            .iter()
            .enumerate()
            .map(|(i, k)| {
                json!({"id": format!("id-{i}"), "sha256": Digest::of(k.as_bytes()).hex(),
                       "user": format!("user-{i}"), "scopes": ["a"]})
            })
            .collect();
        let key_path = dir.join("keys.yaml");
        std::fs::write(&key_path, json!({ "keys": keys }).to_string()).expect("keys");
        let file: Arc<dyn KeyStore> = Arc::new(FileStore::load(&key_path).expect("key file"));
        let jwt_config = |path: PathBuf| JwtConfig::new(JwksSource::File(path), vec![ISSUER.into()], vec![AUDIENCE.into()]);
        let jwt: Arc<dyn KeyStore> = Arc::new(JwtValidator::new(jwt_config(jwks_path)).expect("validator"));
        let mut reread = jwt_config(dir.join("fuzz-jwks.json"));
        reread.refresh = Duration::ZERO;
        reread.min_refresh = Duration::ZERO;
        let cache = IdentityCache::new(CacheConfig::default());
        let metrics = Metrics::new(&prometheus::Registry::new()).expect("metrics");
        let authorizer = Authorizer::new(DEFAULT_API_KEY_HEADER, cache.clone(), Some(file), Some(jwt), metrics);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        World {
            grpc: AuthzGrpc::new(Arc::new(authorizer), IdentityHeaders::default()),
            cache,
            signer: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwks_validator: JwtValidator::new(reread).expect("validator"),
            rt,
            dir,
        }
    })
}
