//! The policy a request gets from the entry that serves it, with Portcullis' defaults
//! filled in (the values the translator writes into Envoy's configuration).
use serde::{Deserialize, Serialize};

use crate::{
    Model, RouteEntry, defaults as d,
    policy::{RateLimit, StoreFailure},
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    /// `namespace/name` of the Route.
    pub route: String,
    pub path_index: usize,
    /// `exact /x` or `prefix /x`.
    pub path: String,
    pub methods: Vec<String>,
    pub headers: Vec<String>,
    pub backends: Vec<Backend>,
    pub auth: Option<Auth>,
    pub rate_limits: Vec<Limit>,
    pub timeout: String,
    pub idle_timeout: String,
    pub retry: Retry,
    pub hedge: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    /// `namespace/name` of the Service.
    pub service: String,
    pub weight: u32,
    /// Share of the Route's traffic, in percent (rounded).
    pub share: u32,
    pub destinations: Vec<Destination>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub name: String,
    /// `host:port`, or `serviceRef name:port`.
    pub address: String,
    pub weight: u32,
    pub region: Option<String>,
    pub failover: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auth {
    pub required: bool,
    pub scopes: Vec<String>,
    pub shadow: bool,
    pub forward_credential: bool,
}

impl Auth {
    /// "required, scopes a b, shadow (never refuses)": how the text output and the
    /// console name a Route's authentication.
    pub fn summary(&self) -> String {
        let mut s = String::from(if self.required {
            "required"
        } else {
            "optional"
        });
        if !self.scopes.is_empty() {
            s.push_str(", scopes ");
            s.push_str(&self.scopes.join(" "));
        }
        if self.shadow {
            s.push_str(", shadow (never refuses)");
        }
        s
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    pub name: String,
    pub by: Vec<String>,
    /// `100 per 1m`, one per window.
    pub windows: Vec<String>,
    /// Limits needing an identity run after authentication, the rest before it.
    pub after_authentication: bool,
    /// When the limit store fails: `allow`, `deny` or the service's default. With
    /// `deny`, Envoy also refuses (503) when the rate-limit service is unreachable.
    pub on_failure: String,
    pub shadow: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    pub attempts: u32,
    pub per_try_timeout: Option<String>,
    pub on: Vec<String>,
    pub backoff: String,
}

/// `exact /x` or `prefix /x`.
pub fn path_text(e: &RouteEntry) -> String {
    match e.path_parts() {
        (true, p) => format!("exact {p}"),
        (false, p) => format!("prefix {p}"),
    }
}

/// The policy of `e`, defaults included.
pub fn served(model: &Model, e: &RouteEntry) -> Served {
    let spec = &e.route.spec;
    let total: u64 = e.backends.iter().map(|(_, w)| u64::from(*w)).sum();
    let backends = e
        .backends
        .iter()
        .map(|(key, weight)| Backend {
            service: format!("{}/{}", key.namespace, key.name),
            weight: *weight,
            share: (u64::from(*weight) * 100).checked_div(total).unwrap_or(0) as u32,
            destinations: model
                .services
                .get(key)
                .map(|s| {
                    s.spec
                        .destinations
                        .iter()
                        .map(|d| Destination {
                            name: d.name.clone(),
                            address: d.address.clone().unwrap_or_else(|| {
                                d.service_ref.as_ref().map_or_else(String::new, |r| {
                                    format!("serviceRef {}:{}", r.name, r.port)
                                })
                            }),
                            weight: d.weight(),
                            region: d.region.clone(),
                            failover: d.failover.unwrap_or(false),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    let retry = spec.retry.clone().unwrap_or_default();
    let (base, max) = retry.backoff_bounds();
    Served {
        route: format!("{}/{}", e.key.namespace, e.key.name),
        path_index: e.path_index,
        path: path_text(e),
        methods: e.methods.clone(),
        headers: e.headers.iter().map(header_text).collect(),
        backends,
        auth: spec.auth.as_ref().map(|a| Auth {
            required: a.required(),
            scopes: a.scopes.clone(),
            shadow: a.shadow.unwrap_or(false),
            forward_credential: a.forward_credential.unwrap_or(false),
        }),
        rate_limits: spec.rate_limits.iter().map(limit).collect(),
        timeout: e.timeout.to_string(),
        idle_timeout: spec
            .idle_timeout
            .unwrap_or(crate::Duration(d::ROUTE_IDLE_TIMEOUT))
            .to_string(),
        retry: Retry {
            attempts: retry.attempts.unwrap_or(d::RETRY_ATTEMPTS),
            per_try_timeout: retry.per_try_timeout.map(|t| t.to_string()),
            on: if retry.on.is_empty() {
                d::RETRY_ON.iter().map(|c| c.to_string()).collect()
            } else {
                retry.on.clone()
            },
            backoff: format!(
                "{} to {}, full jitter",
                crate::Duration(base),
                crate::Duration(max)
            ),
        },
        hedge: spec.hedge.as_ref().is_some_and(|h| h.on_per_try_timeout),
    }
}

fn header_text(h: &crate::HeaderMatch) -> String {
    match (&h.exact, &h.prefix, &h.regex) {
        (Some(v), _, _) => format!("{} = {v}", h.name),
        (_, Some(v), _) => format!("{} starts with {v}", h.name),
        (_, _, Some(v)) => format!("{} ~ {v}", h.name),
        _ => format!("{} present", h.name),
    }
}

fn limit(l: &RateLimit) -> Limit {
    Limit {
        name: l.name.clone(),
        by: l.by.clone(),
        windows: l
            .limits
            .iter()
            .map(|w| format!("{} per {}", w.requests, w.per))
            .collect(),
        after_authentication: l
            .by
            .iter()
            .any(|d| portcullis_contract::ratelimit::IDENTITY_DIMENSIONS.contains(&d.as_str())),
        on_failure: match l.on_store_failure {
            Some(StoreFailure::Deny) => "deny",
            Some(StoreFailure::Allow) => "allow",
            None => "the rate-limit service's default",
        }
        .into(),
        shadow: l.shadow.unwrap_or(false),
    }
}
