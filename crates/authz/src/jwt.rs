//! Local JWT validation against a JWKS (a file or a URL; see jwks.rs for how it is
//! loaded, refreshed and backed off), with issuer, audience, expiry and not-before
//! checks. Symmetric (`HS*`) keys are refused: a JWKS is public.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Validation;
use serde_json::Value;

use crate::identity::{Digest, Identity};
pub use crate::jwks::JwksSource;
use crate::jwks::{Jwks, Key};
use crate::store::{KeyStore, Lookup, StoreError};

#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub jwks: JwksSource,
    /// Accepted `iss` values (at least one).
    pub issuers: Vec<String>,
    /// Accepted `aud` values (at least one).
    pub audiences: Vec<String>,
    pub refresh: Duration,
    /// How soon a token naming an unknown key may trigger another fetch.
    pub min_refresh: Duration,
    /// Bound on one JWKS fetch.
    pub fetch_timeout: Duration,
    /// Wait after the first failed fetch; doubles per failure in a row, up to
    /// `max_backoff` (jittered).
    pub retry_backoff: Duration,
    pub max_backoff: Duration,
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
            fetch_timeout: Duration::from_secs(5),
            retry_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            leeway: Duration::from_secs(30),
            user_claim: "sub".into(),
            account_claim: "account".into(),
        }
    }
}

pub struct JwtValidator {
    config: JwtConfig,
    jwks: Jwks,
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
            jwks: Jwks::new(
                config.jwks.clone(),
                config.refresh,
                config.min_refresh,
                config.fetch_timeout,
                config.retry_backoff,
                config.max_backoff,
            )?,
            config,
        })
    }

    /// `Ok(None)`: the token is invalid (signature, issuer, audience, expiry, kid).
    pub async fn validate(&self, token: &str) -> Result<Option<Identity>, StoreError> {
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return Ok(None);
        };
        let mut keys = self.jwks.keys(false).await?;
        let candidates: Vec<Arc<Key>> = match &header.kid {
            Some(kid) => {
                if !keys.by_id.contains_key(kid) {
                    keys = self.jwks.keys(true).await?;
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
                .and_then(crate::identity::expiry_at),
            claims: crate::limits::bounded_claims(&claims),
            scopes,
            user,
            ..Default::default()
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
