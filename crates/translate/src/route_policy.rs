//! Route traffic policy → route action fields: retries with backoff, hedging, and the
//! hash key for consistent-hashing Services.
//!
//! Non-idempotent methods are not retried on conditions where the upstream may already
//! have acted on the request (a 5xx, a reset mid-response): a Route whose methods mix
//! both becomes two Envoy routes, the idempotent methods first with the full policy,
//! then the rest with only the conditions under which the request never reached the
//! upstream. `retry.nonIdempotent: true` opts out.
use envoy_types::pb::envoy::{
    config::route::v3::{
        HedgePolicy, RetryPolicy,
        retry_policy::{
            RetryBackOff, RetryHostPredicate, RetryPriority, retry_host_predicate, retry_priority,
        },
        route_action::{HashPolicy, hash_policy},
    },
    extensions::retry::{
        host::previous_hosts::v3::PreviousHostsPredicate,
        priority::previous_priorities::v3::PreviousPrioritiesConfig,
    },
};
use portcullis_api::{
    Model, RouteEntry,
    policy::{LbPolicy, Retry, SAFE_RETRY_ON},
};

use crate::{defaults as d, proto};

/// Methods whose repetition has no further effect (RFC 9110 §9.2.2).
pub const IDEMPOTENT: &[&str] = &["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"];

/// One Envoy route to emit for a Route entry.
pub struct Variant {
    /// Replaces the entry's method matcher (the idempotent half of a split Route).
    pub methods: Option<Vec<String>>,
    pub retry: RetryPolicy,
    pub hedge: Option<HedgePolicy>,
}

pub fn variants(entry: &RouteEntry, model: &Model) -> Vec<Variant> {
    let spec = &entry.route.spec;
    let retry = spec.retry.clone().unwrap_or_default();
    let hedge = spec
        .hedge
        .as_ref()
        .filter(|h| h.on_per_try_timeout)
        .map(|_| HedgePolicy {
            hedge_on_per_try_timeout: true,
            ..Default::default()
        });
    let failover = entry
        .backends
        .iter()
        .filter_map(|(k, _)| model.services.get(k))
        .any(|s| {
            s.spec
                .destinations
                .iter()
                .any(|d| d.failover.unwrap_or(false))
        });
    let full = retry_policy(
        &retry,
        conditions(&retry),
        hedge.is_some() && failover,
        true,
    );
    let unsafe_conditions = conditions(&retry)
        .iter()
        .any(|c| !SAFE_RETRY_ON.contains(&c.as_str()));
    if !unsafe_conditions || retry.non_idempotent == Some(true) {
        return vec![Variant {
            methods: None,
            retry: full,
            hedge,
        }];
    }
    let safe: Vec<String> = conditions(&retry)
        .into_iter()
        .map(|c| {
            if c == "reset" {
                "reset-before-request".to_string()
            } else {
                c
            }
        })
        .filter(|c| SAFE_RETRY_ON.contains(&c.as_str()))
        .collect();
    let safe_policy = retry_policy(&retry, dedup(safe), false, false);
    let requested: Vec<String> = if entry.methods.is_empty() {
        IDEMPOTENT.iter().map(|m| m.to_string()).collect()
    } else {
        entry
            .methods
            .iter()
            .filter(|m| IDEMPOTENT.contains(&m.as_str()))
            .cloned()
            .collect()
    };
    let has_other = entry.methods.is_empty()
        || entry
            .methods
            .iter()
            .any(|m| !IDEMPOTENT.contains(&m.as_str()));
    match (requested.is_empty(), has_other) {
        (true, _) => vec![Variant {
            methods: None,
            retry: safe_policy,
            hedge: None,
        }],
        (false, false) => vec![Variant {
            methods: None,
            retry: full,
            hedge,
        }],
        (false, true) => vec![
            Variant {
                methods: Some(requested),
                retry: full,
                hedge,
            },
            Variant {
                methods: None,
                retry: safe_policy,
                hedge: None,
            },
        ],
    }
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    v.retain(|c| seen.insert(c.clone()));
    v
}

fn conditions(retry: &Retry) -> Vec<String> {
    let mut on: Vec<String> = if retry.on.is_empty() {
        d::RETRY_ON.iter().map(|c| c.to_string()).collect()
    } else {
        retry.on.clone()
    };
    if !retry.status_codes.is_empty() && !on.iter().any(|c| c == "retriable-status-codes") {
        on.push("retriable-status-codes".into());
    }
    dedup(on)
}

fn retry_policy(
    retry: &Retry,
    on: Vec<String>,
    prefer_other_priority: bool,
    per_try: bool,
) -> RetryPolicy {
    let (base, max) = retry.backoff_bounds();
    RetryPolicy {
        retry_on: on.join(","),
        num_retries: proto::u32v(retry.attempts.unwrap_or(d::RETRY_ATTEMPTS)),
        per_try_timeout: if per_try {
            retry.per_try_timeout.and_then(|t| proto::duration(t.0))
        } else {
            None
        },
        retriable_status_codes: retry.status_codes.clone(),
        retry_back_off: Some(RetryBackOff {
            base_interval: proto::duration(base),
            max_interval: proto::duration(max),
        }),
        // A retry (or hedge) to the host that just failed is rarely useful.
        retry_host_predicate: vec![RetryHostPredicate {
            name: "envoy.retry_host_predicates.previous_hosts".into(),
            config_type: Some(retry_host_predicate::ConfigType::TypedConfig(proto::any(
                &PreviousHostsPredicate::default(),
            ))),
        }],
        host_selection_retry_max_attempts: 3,
        retry_priority: prefer_other_priority.then(|| RetryPriority {
            name: "envoy.retry_priorities.previous_priorities".into(),
            config_type: Some(retry_priority::ConfigType::TypedConfig(proto::any(
                &PreviousPrioritiesConfig {
                    update_frequency: 1,
                },
            ))),
        }),
        ..Default::default()
    }
}

/// Hash keys of the consistent-hashing Services a Route sends to.
pub fn hash_policies(entry: &RouteEntry, model: &Model) -> Vec<HashPolicy> {
    let mut out = Vec::new();
    for (key, _) in &entry.backends {
        let Some(lb) = model
            .services
            .get(key)
            .and_then(|s| s.spec.load_balancer.clone())
        else {
            continue;
        };
        if !matches!(lb.policy, LbPolicy::RingHash | LbPolicy::Maglev) {
            continue;
        }
        let Some(on) = lb.hash_on else { continue };
        let specifier = if let Some(h) = on.header {
            hash_policy::PolicySpecifier::Header(hash_policy::Header {
                header_name: h,
                ..Default::default()
            })
        } else if let Some(c) = on.cookie {
            hash_policy::PolicySpecifier::Cookie(hash_policy::Cookie {
                name: c,
                ..Default::default()
            })
        } else {
            hash_policy::PolicySpecifier::ConnectionProperties(hash_policy::ConnectionProperties {
                source_ip: true,
            })
        };
        let policy = HashPolicy {
            policy_specifier: Some(specifier),
            ..Default::default()
        };
        if !out.contains(&policy) {
            out.push(policy);
        }
    }
    out
}
