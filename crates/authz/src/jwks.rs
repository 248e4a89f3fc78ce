//! The JWKS a [`crate::JwtValidator`] checks signatures with: loaded from a file or a
//! URL, refreshed every `refresh` in the background (validations keep using the
//! loaded set meanwhile) and, at most once per `min_refresh`, when a token names a
//! key id the set does not hold (key rotation).
//!
//! A failed fetch keeps the loaded set and backs off: no fetch starts again before an
//! exponentially growing, jittered and capped wait, so an endpoint that is down costs
//! one fetch per wait rather than one per validation, and validations never queue
//! behind a fetch unless they have nothing else to check against (no set yet, or a
//! token naming an unknown key while a fetch is already under way). Documents are
//! read up to [`MAX_JWKS_BYTES`].
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::{Mutex, RwLock};
use tokio::time::Instant;

use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(std::path::PathBuf),
    Url(String),
}

/// The largest JWKS document read; a larger one is a failed fetch.
pub const MAX_JWKS_BYTES: usize = 1 << 20;

pub(crate) struct Key {
    pub(crate) key: DecodingKey,
    pub(crate) algorithms: Vec<Algorithm>,
}

pub(crate) struct Keys {
    pub(crate) by_id: HashMap<String, Arc<Key>>,
    /// Keys without a `kid`, tried in turn for tokens without one.
    pub(crate) anonymous: Vec<Arc<Key>>,
    fetched: Instant,
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

pub(crate) fn parse_jwks(text: &str) -> Result<Keys, String> {
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

type Fetch = Shared<BoxFuture<'static, Result<Arc<Keys>, String>>>;

/// The fetch under way, and the backoff after failed ones.
#[derive(Default)]
struct Refresh {
    running: Option<Fetch>,
    failures: u32,
    retry_at: Option<Instant>,
}

struct Inner {
    source: JwksSource,
    refresh: Duration,
    min_refresh: Duration,
    backoff: Duration,
    max_backoff: Duration,
    http: reqwest::Client,
    keys: RwLock<Option<Arc<Keys>>>,
    state: Mutex<Refresh>,
}

#[derive(Clone)]
pub(crate) struct Jwks {
    inner: Arc<Inner>,
}

impl Jwks {
    /// Timings as in [`crate::JwtConfig`].
    pub(crate) fn new(
        source: JwksSource,
        refresh: Duration,
        min_refresh: Duration,
        fetch_timeout: Duration,
        backoff: Duration,
        max_backoff: Duration,
    ) -> anyhow::Result<Jwks> {
        Ok(Jwks {
            inner: Arc::new(Inner {
                source,
                refresh,
                min_refresh,
                backoff,
                max_backoff: max_backoff.max(backoff),
                http: reqwest::Client::builder().timeout(fetch_timeout).build()?,
                keys: RwLock::new(None),
                state: Mutex::new(Refresh::default()),
            }),
        })
    }

    /// The key set to validate with. `unknown_kid`: the caller's token names a key the
    /// set it has does not hold, so a younger set (older than `min_refresh`) is wanted.
    pub(crate) async fn keys(&self, unknown_kid: bool) -> Result<Arc<Keys>, StoreError> {
        let inner = &self.inner;
        let current = inner.keys.read().clone();
        let due = match &current {
            None => true,
            Some(k) => {
                let age = k.fetched.elapsed();
                age >= inner.refresh || (unknown_kid && age >= inner.min_refresh)
            }
        };
        let fetch = if due { self.start_or_join() } else { None };
        match (fetch, current) {
            (None, Some(keys)) => Ok(keys),
            // A periodic refresh runs on its own; this validation needs no new key.
            (Some(_), Some(keys)) if !unknown_kid => Ok(keys),
            (Some(fetch), Some(keys)) => Ok(fetch.await.unwrap_or(keys)),
            (Some(fetch), None) => fetch.await.map_err(|e| StoreError::backend("jwks", e)),
            (None, None) => Err(StoreError::backend(
                "jwks",
                "no key set loaded yet and the last fetch failed; retrying after a backoff",
            )),
        }
    }

    /// The fetch under way, or a new one unless failed fetches are backing off.
    fn start_or_join(&self) -> Option<Fetch> {
        // Held until `running` is set: the fetch settles under this lock, so it cannot
        // finish before it is recorded (and then never be cleared).
        let mut state = self.inner.state.lock();
        if let Some(f) = &state.running {
            return Some(f.clone());
        }
        if state.retry_at.is_some_and(|t| Instant::now() < t) {
            return None;
        }
        let inner = self.inner.clone();
        // Spawned: it finishes and installs the keys even if no one waits for it.
        let task = tokio::spawn(async move {
            let result = inner.fetch().await.map(Arc::new);
            inner.settle(&result);
            result
        });
        let fetch = async move {
            task.await
                .unwrap_or_else(|e| Err(format!("JWKS fetch task: {e}")))
        }
        .boxed()
        .shared();
        state.running = Some(fetch.clone());
        Some(fetch)
    }
}

impl Inner {
    fn settle(&self, result: &Result<Arc<Keys>, String>) {
        let mut state = self.state.lock();
        state.running = None;
        match result {
            Ok(keys) => {
                *self.keys.write() = Some(keys.clone());
                state.failures = 0;
                state.retry_at = None;
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                let wait = retry_wait(self.backoff, self.max_backoff, state.failures);
                state.retry_at = Some(Instant::now() + wait);
                tracing::warn!(error = %e, retry_in = ?wait, failures = state.failures, "JWKS fetch failed; keeping the loaded keys");
            }
        }
    }

    async fn fetch(&self) -> Result<Keys, String> {
        let text = match &self.source {
            JwksSource::File(p) => {
                let too_big = tokio::fs::metadata(p)
                    .await
                    .is_ok_and(|m| m.len() > MAX_JWKS_BYTES as u64);
                if too_big {
                    return Err(format!(
                        "{}: larger than {MAX_JWKS_BYTES} bytes",
                        p.display()
                    ));
                }
                tokio::fs::read_to_string(p)
                    .await
                    .map_err(|e| format!("{}: {e}", p.display()))?
            }
            JwksSource::Url(u) => self.get(u).await?,
        };
        parse_jwks(&text)
    }

    async fn get(&self, url: &str) -> Result<String, String> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{url}: HTTP {}", resp.status()));
        }
        let body = crate::limits::read_capped(resp, url, MAX_JWKS_BYTES).await?;
        String::from_utf8(body).map_err(|_| format!("{url}: the JWKS is not UTF-8"))
    }
}

/// After the `failures`-th failed fetch in a row: `base * 2^(failures-1)`, capped at
/// `max`, jittered into its upper half. Not full jitter: the point is a floor between
/// fetches, which a wait drawn from [0, cap] would not give.
fn retry_wait(base: Duration, max: Duration, failures: u32) -> Duration {
    let cap = base
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(max);
    cap / 2 + (cap / 2).mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_waits_grow_jittered_up_to_the_cap() {
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(60));
        for failures in 1..40 {
            let cap = (base * 2u32.pow((failures - 1).min(16))).min(max);
            let w = retry_wait(base, max, failures);
            assert!(
                w >= cap / 2 && w <= cap,
                "{failures}: {w:?} outside [{:?}, {cap:?}]",
                cap / 2
            );
        }
        let distinct: std::collections::HashSet<_> =
            (0..20).map(|_| retry_wait(base, max, 3)).collect();
        assert!(distinct.len() > 1, "jittered");
    }

    fn error(text: &str) -> String {
        parse_jwks(text).err().expect("refused")
    }

    #[test]
    fn keyless_documents_are_refused() {
        assert!(error(r#"{"keys": []}"#).contains("no usable key"));
        assert!(error("[]").contains("not a JWKS"));
        let oct = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"s"}]}"#;
        assert!(error(oct).contains("no usable key"));
    }
}
