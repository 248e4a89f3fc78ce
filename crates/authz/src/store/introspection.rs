//! OAuth2 token introspection (RFC 7662) against one or more regional endpoints, each
//! behind its own circuit breaker, hedged (a slow region is overtaken by the next one
//! after `hedge_delay`), retried with backoff and jitter, every call bounded by
//! `timeout`.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{KeyStore, Lookup, StoreError};
use crate::breaker::{Breaker, BreakerConfig};
use crate::hedge::{backoff, hedged};
use crate::identity::{Digest, Identity};
use crate::metrics::Metrics;

/// The largest introspection answer read (RFC 7662 answers are a few hundred bytes).
const MAX_ANSWER_BYTES: usize = 64 << 10;

#[derive(Debug, Clone)]
pub struct IntrospectionConfig {
    /// Introspection URLs in order of preference (nearest region first).
    pub endpoints: Vec<String>,
    /// Client credentials for HTTP Basic authentication to the endpoint.
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub timeout: Duration,
    pub hedge_delay: Duration,
    /// Further attempts after a round in which every endpoint failed.
    pub retries: u32,
    pub retry_backoff: Duration,
    pub breaker: BreakerConfig,
    /// The response field holding the account (not standardised by RFC 7662).
    pub account_field: String,
}

impl Default for IntrospectionConfig {
    fn default() -> Self {
        IntrospectionConfig {
            endpoints: Vec::new(),
            client_id: None,
            client_secret: None,
            timeout: Duration::from_millis(200),
            hedge_delay: Duration::from_millis(50),
            retries: 1,
            retry_backoff: Duration::from_millis(25),
            breaker: BreakerConfig::default(),
            account_field: "account".into(),
        }
    }
}

struct Endpoint {
    url: String,
    breaker: Breaker,
}

pub struct IntrospectionStore {
    config: IntrospectionConfig,
    endpoints: Vec<Arc<Endpoint>>,
    http: reqwest::Client,
    metrics: Metrics,
}

/// RFC 7662 §2.2; `active` is the only required member.
#[derive(Debug, Deserialize)]
struct Answer {
    active: bool,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}

impl IntrospectionStore {
    pub fn new(config: IntrospectionConfig, metrics: Metrics) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !config.endpoints.is_empty(),
            "keyStore.introspection.endpoints: list at least one introspection URL"
        );
        let endpoints = config
            .endpoints
            .iter()
            .map(|url| {
                metrics.breaker_state(url, crate::breaker::BreakerState::Closed);
                Arc::new(Endpoint {
                    url: url.clone(),
                    breaker: Breaker::new(config.breaker),
                })
            })
            .collect();
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .build()?;
        Ok(IntrospectionStore {
            config,
            endpoints,
            http,
            metrics,
        })
    }

    async fn ask(&self, i: usize, token: &str) -> Result<Option<Identity>, StoreError> {
        let ep = &self.endpoints[i];
        if !ep.breaker.try_acquire() {
            return Err(StoreError::BreakerOpen {
                endpoint: ep.url.clone(),
            });
        }
        // Dropped before an outcome (a faster hedge won): hand back a probe slot.
        let mut guard = Abandoned(Some(&ep.breaker));
        let started = tokio::time::Instant::now();
        let result = tokio::time::timeout(self.config.timeout, self.post(ep, token))
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Timeout {
                    endpoint: ep.url.clone(),
                    after: self.config.timeout,
                })
            });
        guard.0 = None;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics
            .backend_seconds(&ep.url, outcome, started.elapsed());
        match &result {
            Ok(_) => ep.breaker.on_success(),
            Err(e) => {
                tracing::warn!(error = %e, "introspection failed");
                ep.breaker.on_failure();
            }
        }
        self.metrics.breaker_state(&ep.url, ep.breaker.state());
        result
    }

    async fn post(&self, ep: &Endpoint, token: &str) -> Result<Option<Identity>, StoreError> {
        let mut req = self
            .http
            .post(&ep.url)
            .form(&[("token", token), ("token_type_hint", "access_token")]);
        if let Some(id) = &self.config.client_id {
            req = req.basic_auth(id, self.config.client_secret.as_deref());
        }
        let resp = req
            .send()
            .await
            .map_err(|e| StoreError::backend(&ep.url, e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(StoreError::backend(&ep.url, format!("HTTP {status}")));
        }
        let body = crate::limits::read_capped(resp, &ep.url, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| StoreError::backend(&ep.url, e))?;
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|e| StoreError::backend(&ep.url, format!("bad introspection JSON: {e}")))?;
        Ok(self.identity(answer, token))
    }

    fn identity(&self, a: Answer, token: &str) -> Option<Identity> {
        if !a.active {
            return None;
        }
        let user = a.sub.or(a.username).or(a.client_id.clone())?;
        let account = a
            .rest
            .get(&self.config.account_field)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        let mut claims = crate::limits::bounded_claims(
            a.rest
                .iter()
                .filter(|(k, _)| **k != self.config.account_field),
        );
        if let Some(c) = a.client_id {
            claims.insert("client_id".into(), c);
        }
        Some(Identity {
            user,
            account,
            scopes: a
                .scope
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            key_id: Digest::of(token.as_bytes()).short_id(),
            claims,
            expires_at: a.exp.and_then(crate::identity::expiry_at),
            ..Default::default()
        })
    }
}

impl IntrospectionStore {
    /// Every breaker open: retrying now cannot help and only adds latency.
    fn all_open(&self) -> bool {
        self.endpoints
            .iter()
            .all(|e| e.breaker.state() == crate::breaker::BreakerState::Open)
    }
}

struct Abandoned<'a>(Option<&'a Breaker>);

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.0 {
            b.on_abandoned();
        }
    }
}

impl KeyStore for IntrospectionStore {
    fn lookup<'a>(&'a self, secret: &'a str, _digest: Digest) -> Lookup<'a> {
        Box::pin(async move {
            let mut attempt = 0;
            loop {
                let result = hedged(self.endpoints.len(), self.config.hedge_delay, |i| {
                    self.ask(i, secret)
                })
                .await;
                match result {
                    Ok(v) => return Ok(v),
                    Err(e) if attempt >= self.config.retries || self.all_open() => return Err(e),
                    Err(_) => {
                        tokio::time::sleep(backoff(
                            self.config.retry_backoff,
                            self.config.retry_backoff * 8,
                            attempt,
                        ))
                        .await;
                        attempt += 1;
                    }
                }
            }
        })
    }

    fn kind(&self) -> &'static str {
        "introspection"
    }
}
