//! The `Route` resource: which requests go to which Services.
//!
//! Auth, rate limits, retries and hedging slot in as optional sibling fields of
//! `backends`; the match is deliberately small (exact and prefix paths, methods,
//! headers) because every extra matcher makes the routing table harder to reason about.
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    Duration,
    policy::{Auth, Hedge, RateLimit, Retry},
    status::ObjectStatus,
};

/// Requests matching `match` on `hosts` go to `backends`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "portcullis.dev",
    version = "v1alpha1",
    kind = "Route",
    plural = "routes",
    shortname = "pcroute",
    shortname = "prt",
    category = "portcullis",
    doc = "A Route sends the requests that match it (hosts, methods, paths, headers) to weighted Services, with its authentication, rate limits, retries and timeouts. See docs/api.md.",
    namespaced,
    status = "ObjectStatus",
    printcolumn = r#"{"name":"Hosts","type":"string","jsonPath":".spec.hosts"}"#,
    printcolumn = r#"{"name":"Paths","type":"string","jsonPath":".spec.match.paths"}"#,
    printcolumn = r#"{"name":"Service","type":"string","jsonPath":".spec.backends[*].service"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Programmed","type":"string","jsonPath":".status.conditions[?(@.type==\"Programmed\")].status"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteSpec {
    /// Host names this Route serves (`api.example.com`, `*.example.com`). Empty means
    /// every host, at lower precedence than Routes that name hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// What requests match.
    #[serde(rename = "match")]
    pub match_: RouteMatch,
    /// Services that receive the matched requests, split by weight.
    pub backends: Vec<Backend>,
    /// Whole-request timeout; overrides the Services' timeout (at most 60s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// A request with no bytes in either direction for this long is reset (default 300s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    /// Retries (default: 1 retry when the request never reached the upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// Hedged tries on per-try timeout (needs `retry.perTryTimeout` and attempts ≥ 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge: Option<Hedge>,
    /// Authentication (default none: the Route is public).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// Quotas, each over its own dimensions (default none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<RateLimit>,
    /// Tracing for this Route (default: the gateway's sampling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<RouteTracing>,
}

/// Per-Route tracing. A client's sampled `traceparent` is honoured either way.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteTracing {
    /// Percent of this Route's requests Envoy starts a trace for, 0–100 (fractions
    /// allowed, e.g. 0.5), instead of the gateway-wide `--trace-sampling`: 100 for a
    /// Route being debugged, 0 for a noisy health check.
    pub sampling_percent: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteMatch {
    /// HTTP methods (`GET`, `POST`, …). Empty means any method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Paths, each `{exact: /v1/x}` or `{prefix: /v1/}`. At least one.
    #[serde(default)]
    pub paths: Vec<PathMatch>,
    /// Request headers that must also match (all of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
}

/// One path matcher: exactly one of `exact` and `prefix`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

impl PathMatch {
    pub fn exact(p: &str) -> Self {
        Self {
            exact: Some(p.into()),
            prefix: None,
        }
    }

    pub fn prefix(p: &str) -> Self {
        Self {
            exact: None,
            prefix: Some(p.into()),
        }
    }
}

/// One header matcher: `name` plus at most one of `exact`, `prefix`, `regex`; none of
/// them means the header must be present.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderMatch {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// RE2 syntax, matched against the whole value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backend {
    /// Name of a `Service` in the Route's namespace.
    pub service: String,
    /// Relative share of traffic (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

impl Backend {
    pub fn weight(&self) -> u32 {
        self.weight.unwrap_or(1)
    }
}
