//! Traffic policy types shared by `Service` (upstream behaviour) and `Route` (request
//! behaviour). Every field is optional; absent means Portcullis' default, documented in
//! docs/traffic.md together with the Envoy field it becomes.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// How a destination is picked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancer {
    /// `weightedRandom` (default), `roundRobin`, `leastRequest`, `ringHash`, `maglev`.
    #[serde(default)]
    pub policy: LbPolicy,
    /// What consistent hashing (`ringHash`, `maglev`) keys on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_on: Option<HashOn>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LbPolicy {
    #[default]
    WeightedRandom,
    RoundRobin,
    LeastRequest,
    RingHash,
    Maglev,
}

/// Exactly one of `header`, `cookie`, `sourceIP`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HashOn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    #[serde(default, rename = "sourceIP", skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<bool>,
}

/// Limits on the connection pool to the Service: requests beyond them fail fast with
/// 503 instead of queueing (Envoy circuit breakers), plus connection lifetime.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionPool {
    /// Connections to all destinations together (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Requests waiting for a connection (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u32>,
    /// Requests in flight (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
    /// Retries in flight (default 3; see also `retryBudget`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Requests per connection before it is closed (default unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<u32>,
    /// Upstream idle timeout (default 300s). Below 1s is refused: bursty traffic would
    /// churn connections into TIME_WAIT and exhaust ephemeral ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    /// Connections are recycled after this long (default unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_duration: Option<Duration>,
    /// TCP keepalive probes on upstream connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_keepalive: Option<TcpKeepalive>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpKeepalive {
    /// Idle time before the first probe (default 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Duration>,
    /// Between probes (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Unanswered probes before the connection is dead (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<u32>,
}

/// Caps retries to a share of the requests in flight, so retries cannot multiply load
/// during an incident.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryBudget {
    /// Retries in flight as a percentage of requests in flight (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// Retries always allowed regardless of the percentage (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_concurrency: Option<u32>,
}

/// Active HTTP health checks of every destination.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    /// Path requested; 2xx is healthy.
    pub path: String,
    /// Between checks (default 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// For one check (default 2s; must be below `interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Failed checks before a destination is unhealthy (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
    /// Passed checks before it is healthy again (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<u32>,
    /// Random extra delay per interval, spreading checks from many Envoys (default 1s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<Duration>,
}

/// Passive health: destinations that fail are ejected for a while. On by default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutlierDetection {
    /// `false` turns it off (default on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Consecutive 5xx responses before ejection (default 5).
    #[serde(
        default,
        rename = "consecutive5xx",
        skip_serializing_if = "Option::is_none"
    )]
    pub consecutive_5xx: Option<u32>,
    /// Consecutive 502/503/504 and connection failures before ejection (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_failures: Option<u32>,
    /// Eject destinations whose success rate is far below the others'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<SuccessRate>,
    /// How often ejection is evaluated (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// First ejection lasts this long, then longer each time (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<Duration>,
    /// At most this share of destinations is ejected at once (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SuccessRate {
    /// Destinations needed before success rates are compared (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_hosts: Option<u32>,
    /// Requests per interval a destination needs to be judged (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_volume: Option<u32>,
    /// Ejected below mean − stdevFactor × stdev (default 1.9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdev_factor: Option<f64>,
}

/// Retries of failed requests, with exponential backoff and jitter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retry {
    /// Retries after the first try (0–5; default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Timeout of each try (default: none, the request timeout bounds all tries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<Duration>,
    /// Conditions: connect-failure, refused-stream, reset, 5xx, gateway-error,
    /// retriable-status-codes (default connect-failure, refused-stream).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<String>,
    /// Status codes retried (implies retriable-status-codes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status_codes: Vec<u32>,
    /// Exponential backoff with full jitter between tries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// Also retry POST, PATCH and CONNECT on conditions where the upstream may have
    /// acted on the request (default false: they are only retried when the request
    /// never reached it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub non_idempotent: Option<bool>,
}

impl Retry {
    /// The backoff's base and maximum with the defaults applied (base 25 ms, max ten
    /// times the base): what Envoy is given and what `explain` shows.
    pub fn backoff_bounds(&self) -> (std::time::Duration, std::time::Duration) {
        let b = self.backoff.as_ref();
        let base = b
            .and_then(|b| b.base)
            .map_or(crate::defaults::RETRY_BACKOFF_BASE, |d| d.0);
        let max = b
            .and_then(|b| b.max)
            .map_or(base.saturating_mul(10), |d| d.0);
        (base, max)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backoff {
    /// First backoff interval (default 25ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Duration>,
    /// Upper bound (default 10 × base).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Duration>,
}

/// Hedged requests: a try slower than `retry.perTryTimeout` fires a parallel try at
/// another destination; the first response wins, the others are cancelled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hedge {
    pub on_per_try_timeout: bool,
}

/// Retry conditions a Route may name, and what Envoy calls them.
pub const RETRY_ON: &[&str] = &[
    "connect-failure",
    "refused-stream",
    "reset",
    "reset-before-request",
    "5xx",
    "gateway-error",
    "retriable-status-codes",
];

/// Conditions under which the upstream never saw the request: safe for any method.
pub const SAFE_RETRY_ON: &[&str] = &["connect-failure", "refused-stream", "reset-before-request"];

/// Authentication for a Route, enforced by `portcullis authz` through Envoy's ext_authz.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Auth {
    /// Requests without valid credentials are refused with 401 (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    /// Scopes the identity must hold (all of them), else 403.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Evaluate and log the decision, but let every request through (roll-out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<bool>,
    /// Keep the credential (the API key header or `Authorization`) on the request to
    /// the backends (default false: once authz has turned it into an identity, the
    /// backends get the identity headers and never the key, so a log line or a
    /// compromised backend cannot leak it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_credential: Option<bool>,
}

impl Auth {
    pub fn required(&self) -> bool {
        self.required.unwrap_or(true)
    }
}

/// One rate limit of a Route: requests sharing the `by` values share the windows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// Unique within the Route; names the limit in metrics and headers.
    pub name: String,
    /// Dimensions: apiKey, user, clientIP, route, method, or header:<name>.
    pub by: Vec<String>,
    /// Windows, all enforced: e.g. a burst (10 per 1s) and a sustained (1000 per 1h).
    pub limits: Vec<Window>,
    /// Count and report, never refuse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<bool>,
    /// When the limit store is down: allow (default) or deny.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_store_failure: Option<StoreFailure>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Window {
    pub requests: u32,
    pub per: Duration,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum StoreFailure {
    #[default]
    Allow,
    Deny,
}

/// Rate-limit dimensions a Route may name (plus `header:<name>`).
pub use portcullis_contract::ratelimit::DIMENSIONS as RATE_LIMIT_DIMENSIONS;
