//! Limits from the control plane: one `RateLimitConfig` resource per Route limit,
//! served over ADS (see `proto/portcullis/ratelimit/v1/config.proto`). Envoy sends
//! one descriptor per limit: `("portcullis.limit", name)` then one entry per `by`
//! dimension; the name selects the limit and the whole descriptor keys its counters.
use std::collections::HashMap;
use std::sync::Arc;

use crate::limit::{Algorithm, FailurePolicy, Limit, Window};
use crate::pb;
use crate::table::{Entry, LimitTable, Limits, Matched};

/// The xDS type URL of [`pb::RateLimitConfig`].
pub const TYPE_URL: &str = pb::TYPE_URL;
/// The rate-limit domain Envoy's filter uses.
pub use portcullis_contract::ratelimit::DOMAIN;
/// Key of the descriptor entry naming the limit (an Envoy `generic_key`).
pub use portcullis_contract::ratelimit::LIMIT_KEY;
/// Longest window accepted: a counter outliving this is surely a mistake.
const MAX_WINDOW_MS: u64 = 366 * 24 * 3600 * 1000;

/// What unset fields of a config mean.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Defaults {
    pub algorithm: Algorithm,
    pub on_store_failure: FailurePolicy,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("RateLimitConfig {name}: {message}")]
pub struct ConfigError {
    pub name: String,
    pub message: String,
}

fn err(name: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        name: name.to_string(),
        message: message.into(),
    }
}

#[derive(Debug, Default)]
pub struct PortcullisLimits {
    by_name: HashMap<String, Arc<Limit>>,
}

impl PortcullisLimits {
    /// Validates every config; one invalid config rejects the whole set (so it can be
    /// NACKed and the previous set stays in force).
    pub fn from_configs(
        configs: &[pb::RateLimitConfig],
        defaults: Defaults,
    ) -> Result<Self, ConfigError> {
        let mut by_name = HashMap::new();
        for c in configs {
            let limit = to_limit(c, defaults)?;
            if by_name.insert(c.name.clone(), Arc::new(limit)).is_some() {
                return Err(err(&c.name, "defined twice"));
            }
        }
        Ok(PortcullisLimits { by_name })
    }

    pub fn resolve(&self, domain: &str, entries: &[Entry<'_>]) -> Option<Matched> {
        if domain != DOMAIN {
            return None;
        }
        let (LIMIT_KEY, name) = *entries.first()? else {
            return None;
        };
        let limit = self.by_name.get(name)?;
        Some(Matched {
            limit: limit.clone(),
            metric_name: limit.name.clone(),
            replaces: Vec::new(),
            replaceable_as: None,
        })
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

fn to_limit(c: &pb::RateLimitConfig, defaults: Defaults) -> Result<Limit, ConfigError> {
    let name = c.name.as_str();
    if name.is_empty() {
        return Err(err("(unnamed)", "name is empty"));
    }
    for (i, dim) in c.by.iter().enumerate() {
        if !portcullis_contract::ratelimit::is_dimension(dim) {
            return Err(err(
                name,
                format!(
                    "by[{i}]: {dim:?} is not apiKey, user, clientIP, header:<name>, route or method"
                ),
            ));
        }
    }
    if c.windows.is_empty() {
        return Err(err(name, "windows: at least one window is needed"));
    }
    let algorithm = match pb::Algorithm::try_from(c.algorithm) {
        Ok(pb::Algorithm::Sliding) => Algorithm::Sliding,
        Ok(pb::Algorithm::Fixed) => Algorithm::Fixed,
        Ok(pb::Algorithm::Unspecified) => defaults.algorithm,
        Err(_) => {
            return Err(err(
                name,
                format!("algorithm: unknown value {}", c.algorithm),
            ));
        }
    };
    let on_store_failure = match pb::FailurePolicy::try_from(c.on_store_failure) {
        Ok(pb::FailurePolicy::Allow) => FailurePolicy::Allow,
        Ok(pb::FailurePolicy::Deny) => FailurePolicy::Deny,
        Ok(pb::FailurePolicy::Unspecified) => defaults.on_store_failure,
        Err(_) => {
            return Err(err(
                name,
                format!("on_store_failure: unknown value {}", c.on_store_failure),
            ));
        }
    };
    let mut windows = Vec::with_capacity(c.windows.len());
    for (i, w) in c.windows.iter().enumerate() {
        let per_ms = w
            .per
            .as_ref()
            .and_then(|d| {
                // Saturating: a huge `seconds` must be refused below, not wrap into a
                // short window (found by fuzz/fuzz_targets/ratelimit.rs).
                (d.seconds >= 0 && d.nanos >= 0).then(|| {
                    (d.seconds as u64)
                        .saturating_mul(1000)
                        .saturating_add(d.nanos as u64 / 1_000_000)
                })
            })
            .unwrap_or(0);
        if per_ms == 0 {
            return Err(err(name, format!("windows[{i}].per must be at least 1ms")));
        }
        if per_ms > MAX_WINDOW_MS {
            return Err(err(
                name,
                format!("windows[{i}].per must be at most 366 days"),
            ));
        }
        windows.push(Window {
            requests: w.requests,
            per_ms,
            algorithm,
        });
    }
    Ok(Limit {
        name: name.to_string(),
        windows,
        unlimited: false,
        shadow: c.shadow,
        on_store_failure,
    })
}

/// Validate and apply a full set of configs: the table is swapped atomically, or left
/// untouched when any config is invalid (the error names it, for a NACK).
pub fn apply_rate_limit_configs(
    table: &LimitTable,
    configs: &[pb::RateLimitConfig],
    version: &str,
    defaults: Defaults,
) -> Result<(), ConfigError> {
    let limits = PortcullisLimits::from_configs(configs, defaults)?;
    table.swap(Limits::Portcullis(limits), version);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn mk_config(name: &str, windows: &[(u32, u64)]) -> pb::RateLimitConfig {
        pb::RateLimitConfig {
            name: name.into(),
            by: vec!["user".into()],
            windows: windows
                .iter()
                .map(|&(requests, secs)| pb::Window {
                    requests,
                    per: Some(prost_types::Duration {
                        seconds: secs as i64,
                        nanos: 0,
                    }),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn resolves_by_limit_name_in_the_portcullis_domain_only() {
        let l =
            PortcullisLimits::from_configs(&[mk_config("ns/r/a", &[(5, 1)])], Defaults::default())
                .unwrap();
        let m = l
            .resolve(DOMAIN, &[(LIMIT_KEY, "ns/r/a"), ("user", "u1")])
            .unwrap();
        assert_eq!(
            m.limit.windows[0],
            Window {
                requests: 5,
                per_ms: 1000,
                algorithm: Algorithm::Sliding
            }
        );
        assert!(l.resolve("other", &[(LIMIT_KEY, "ns/r/a")]).is_none());
        assert!(l.resolve(DOMAIN, &[(LIMIT_KEY, "ns/r/b")]).is_none());
        assert!(l.resolve(DOMAIN, &[("user", "u1")]).is_none());
    }

    #[test]
    fn invalid_configs_are_named() {
        let mut bad = mk_config("ns/r/a", &[(5, 0)]);
        let e = PortcullisLimits::from_configs(&[bad.clone()], Defaults::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "RateLimitConfig ns/r/a: windows[0].per must be at least 1ms"
        );
        bad = mk_config("ns/r/a", &[(5, 1)]);
        bad.by = vec!["cookie".into()];
        assert!(PortcullisLimits::from_configs(&[bad], Defaults::default()).is_err());
        let twice = [mk_config("x", &[(1, 1)]), mk_config("x", &[(1, 1)])];
        assert!(PortcullisLimits::from_configs(&twice, Defaults::default()).is_err());
    }

    #[test]
    fn windows_too_long_to_count_in_milliseconds_are_refused_not_wrapped() {
        // 18446744073709552 s × 1000 wraps a u64 to 384 ms; i64::MAX overflows it.
        for secs in [18_446_744_073_709_552, i64::MAX as u64] {
            let e = PortcullisLimits::from_configs(
                &[mk_config("ns/r/a", &[(5, secs)])],
                Defaults::default(),
            )
            .unwrap_err();
            assert_eq!(
                e.to_string(),
                "RateLimitConfig ns/r/a: windows[0].per must be at most 366 days"
            );
        }
    }

    #[test]
    fn a_bad_set_leaves_the_table_alone() {
        let table = LimitTable::default();
        apply_rate_limit_configs(
            &table,
            &[mk_config("a", &[(1, 1)])],
            "v1",
            Defaults::default(),
        )
        .unwrap();
        assert!(
            apply_rate_limit_configs(&table, &[mk_config("b", &[])], "v2", Defaults::default())
                .is_err()
        );
        assert_eq!(table.version().as_deref(), Some("v1"));
        assert_eq!(table.snapshot().len(), 1);
    }
}
