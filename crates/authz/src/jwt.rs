//! Local JWT validation against a JWKS (a file or a URL), with issuer, audience, expiry
//! and not-before checks. Keys are cached; the set is refreshed periodically and, at
//! most once per `min_refresh`, when a token names a key id the cache does not hold
//! (key rotation). Symmetric (`HS*`) keys are refused: a JWKS is public.
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::RwLock;
use serde_json::Value;
use tokio::time::Instant;

use crate::identity::{Digest, Identity};
use crate::store::{KeyStore, Lookup, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub jwks: JwksSource,
    /// Accepted `iss` values (at least one).
    pub issuers: Vec<String>,
    /// Accepted `aud` values (at least one).
    pub audiences: Vec<String>,
    pub refresh: Duration,
    pub min_refresh: Duration,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    pub user_claim: String,
    pub account_claim: String,
}

impl JwtConfig {
    pub fn new(jwks: JwksSource, issuers: Vec<String>, audiences: Vec<String>) -> Self {
        JwtConfig {
            jwks,
            issuers,
            audiences,
            refresh: Duration::from_secs(300),
            min_refresh: Duration::from_secs(10),
            leeway: Duration::from_secs(30),
            user_claim: "sub".into(),
            account_claim: "account".into(),
        }
    }
}

struct Key {
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

struct Keys {
    by_id: HashMap<String, Arc<Key>>,
    /// Keys without a `kid`, tried in turn for tokens without one.
    anonymous: Vec<Arc<Key>>,
    fetched: Instant,
}

pub struct JwtValidator {
    config: JwtConfig,
    keys: RwLock<Option<Arc<Keys>>>,
    /// Serialises refreshes so a burst of unknown-kid tokens makes one fetch.
    refreshing: tokio::sync::Mutex<()>,
    http: reqwest::Client,
}

/// Which algorithms a key may verify: its declared `alg`, or what its type allows.
fn algorithms(jwk: &Jwk) -> Result<Vec<Algorithm>, String> {
    if let Some(ka) = jwk.common.key_algorithm {
        let alg = Algorithm::from_str(&ka.to_string()).map_err(|e| format!("alg {ka}: {e}"))?;
        return match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                Err(format!("alg {ka}: symmetric keys do not belong in a JWKS"))
            }
            a => Ok(vec![a]),
        };
    }
    Ok(match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            ref c => return Err(format!("curve {c:?} is not supported")),
        },
        AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric (oct) keys do not belong in a JWKS".into());
        }
    })
}

fn parse_jwks(text: &str) -> Result<Keys, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = Keys {
        by_id: HashMap::new(),
        anonymous: Vec::new(),
        fetched: Instant::now(),
    };
    for (i, jwk) in set.keys.iter().enumerate() {
        let kid = jwk.common.key_id.clone();
        let name = kid.clone().unwrap_or_else(|| format!("keys[{i}]"));
        let algorithms = match algorithms(jwk) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(key = %name, "JWKS key skipped: {e}");
                continue;
            }
        };
        let key = match DecodingKey::from_jwk(jwk) {
            Ok(k) => Arc::new(Key { key: k, algorithms }),
            Err(e) => {
                tracing::warn!(key = %name, "JWKS key skipped: {e}");
                continue;
            }
        };
        match kid {
            Some(kid) => {
                keys.by_id.insert(kid, key);
            }
            None => keys.anonymous.push(key),
        }
    }
    if keys.by_id.is_empty() && keys.anonymous.is_empty() {
        return Err("the JWKS holds no usable key".into());
    }
    Ok(keys)
}

impl JwtValidator {
    pub fn new(config: JwtConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !config.issuers.is_empty(),
            "jwt.issuers: list the accepted token issuers (`iss`); tokens from any issuer would otherwise pass"
        );
        anyhow::ensure!(
            !config.audiences.is_empty(),
            "jwt.audiences: list the accepted audiences (`aud`), e.g. your API's URL"
        );
        Ok(JwtValidator {
            config,
            keys: RwLock::new(None),
            refreshing: tokio::sync::Mutex::new(()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
        })
    }

    async fn fetch(&self) -> Result<Keys, String> {
        let text = match &self.config.jwks {
            JwksSource::File(p) => tokio::fs::read_to_string(p)
                .await
                .map_err(|e| format!("{}: {e}", p.display()))?,
            JwksSource::Url(u) => {
                let resp = self
                    .http
                    .get(u)
                    .send()
                    .await
                    .map_err(|e| format!("{u}: {e}"))?;
                if !resp.status().is_success() {
                    return Err(format!("{u}: HTTP {}", resp.status()));
                }
                resp.text().await.map_err(|e| format!("{u}: {e}"))?
            }
        };
        parse_jwks(&text)
    }

    /// Loads the key set if it is missing, older than `refresh`, or (with `kid`
    /// unknown) older than `min_refresh`. A failed refresh keeps the old set.
    async fn keys(&self, unknown_kid: bool) -> Result<Arc<Keys>, StoreError> {
        let due = |k: &Option<Arc<Keys>>| match k {
            None => true,
            Some(k) => {
                let age = k.fetched.elapsed();
                age >= self.config.refresh || (unknown_kid && age >= self.config.min_refresh)
            }
        };
        let current = self.keys.read().clone();
        if !due(&current) {
            return Ok(current.expect("not due means present"));
        }
        let _one = self.refreshing.lock().await;
        let current = self.keys.read().clone();
        if !due(&current) {
            return Ok(current.expect("not due means present"));
        }
        match self.fetch().await {
            Ok(keys) => {
                let keys = Arc::new(keys);
                *self.keys.write() = Some(keys.clone());
                Ok(keys)
            }
            Err(e) => {
                tracing::warn!(error = %e, "JWKS refresh failed");
                current.ok_or_else(|| StoreError::backend("jwks", e))
            }
        }
    }

    /// `Ok(None)`: the token is invalid (signature, issuer, audience, expiry, kid).
    pub async fn validate(&self, token: &str) -> Result<Option<Identity>, StoreError> {
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return Ok(None);
        };
        let mut keys = self.keys(false).await?;
        let candidates: Vec<Arc<Key>> = match &header.kid {
            Some(kid) => {
                if !keys.by_id.contains_key(kid) {
                    keys = self.keys(true).await?;
                }
                keys.by_id.get(kid).cloned().into_iter().collect()
            }
            None => keys.anonymous.clone(),
        };
        for key in candidates {
            if !key.algorithms.contains(&header.alg) {
                continue;
            }
            let mut v = Validation::new(header.alg);
            v.algorithms = key.algorithms.clone();
            v.set_issuer(&self.config.issuers);
            v.set_audience(&self.config.audiences);
            v.set_required_spec_claims(&["exp", "iss", "aud"]);
            v.leeway = self.config.leeway.as_secs();
            v.validate_nbf = true;
            match jsonwebtoken::decode::<BTreeMap<String, Value>>(token, &key.key, &v) {
                Ok(data) => return Ok(self.identity(data.claims, token)),
                Err(e) => tracing::debug!(error = %e, "JWT rejected"),
            }
        }
        Ok(None)
    }

    fn identity(&self, claims: BTreeMap<String, Value>, token: &str) -> Option<Identity> {
        let text = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_string);
        let user = text(&self.config.user_claim)?;
        let scopes = match claims.get("scope").or_else(|| claims.get("scp")) {
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        Some(Identity {
            account: text(&self.config.account_claim).unwrap_or_default(),
            key_id: text("jti").unwrap_or_else(|| Digest::of(token.as_bytes()).short_id()),
            expires_at: claims
                .get("exp")
                .and_then(Value::as_u64)
                .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s)),
            claims: claims
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect(),
            scopes,
            user,
        })
    }
}

impl KeyStore for JwtValidator {
    fn lookup<'a>(&'a self, secret: &'a str, _digest: Digest) -> Lookup<'a> {
        Box::pin(self.validate(secret))
    }

    fn kind(&self) -> &'static str {
        "jwt"
    }
}
