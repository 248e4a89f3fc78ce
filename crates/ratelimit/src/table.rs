//! The limit table: which limits a request falls under, and the handle through which
//! new configurations are swapped in atomically.
//!
//! Readers take an `Arc` snapshot per request, so a swap never blocks a decision and a
//! request is decided against one consistent table. Counters are keyed by the
//! descriptor's identity and the window length, not by table version, so limits that
//! are unchanged by a swap keep their counts.
use std::sync::Arc;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use parking_lot::RwLock;
use tokio::sync::watch;

use crate::file_limits::FileLimits;
use crate::limit::{Defaults, Limit, Window, proto_unit_ms};
use crate::matched::{Entry, Hit, StatKey};
use crate::pb;
use crate::portcullis_config::{ConfigError, PortcullisLimits};

/// A complete set of limits from one source.
#[derive(Debug, Default)]
pub enum Limits {
    #[default]
    Empty,
    /// From the control plane (domain `portcullis`).
    Portcullis(PortcullisLimits),
    /// From envoyproxy/ratelimit or Limitador files (any domains they declare).
    Files(FileLimits),
}

impl Limits {
    /// Every limit that applies to a request in `domain`, in descriptor order.
    pub fn resolve(&self, domain: &str, descriptors: &[RateLimitDescriptor]) -> Vec<Hit> {
        let mut hits = Vec::with_capacity(descriptors.len());
        let Some(defaults) = self.defaults_if_known(domain) else {
            return hits;
        };
        for (i, d) in descriptors.iter().enumerate() {
            let entries: Vec<Entry<'_>> = d
                .entries
                .iter()
                .map(|e| (e.key.as_str(), e.value.as_str()))
                .collect();
            let hit = match d
                .limit
                .as_ref()
                .and_then(|o| overridden(domain, i, &entries, o, defaults))
            {
                Some(h) => Some(h),
                None => match self {
                    Limits::Empty => None,
                    Limits::Portcullis(p) => p.resolve(domain, i, &entries),
                    Limits::Files(f) => f.envoy.resolve(domain, i, &entries),
                },
            };
            hits.extend(hit);
        }
        if let Limits::Files(f) = self {
            f.limitador.resolve(domain, descriptors, &mut hits);
        }
        hits
    }

    /// The source's defaults, if it knows `domain`.
    fn defaults_if_known(&self, domain: &str) -> Option<Defaults> {
        match self {
            Limits::Empty => None,
            Limits::Portcullis(p) => {
                (domain == crate::portcullis_config::DOMAIN).then(|| p.defaults())
            }
            Limits::Files(f) => f.knows(domain).then_some(f.defaults),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Limits::Empty => 0,
            Limits::Portcullis(p) => p.len(),
            Limits::Files(f) => f.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The limit Envoy sent with a descriptor (`RateLimitDescriptor.limit`), which takes
/// the place of configured rules, as envoyproxy does when the domain is known: no
/// shadow mode, no name; a unit this service does not know leaves the rules in force.
fn overridden(
    domain: &str,
    index: usize,
    entries: &[Entry<'_>],
    o: &envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::RateLimitOverride,
    defaults: Defaults,
) -> Option<Hit> {
    let per_ms = proto_unit_ms(o.unit)?;
    let components: Vec<String> = entries
        .iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.to_string()
            } else {
                format!("{k}_{v}")
            }
        })
        .collect();
    Some(Hit {
        descriptor: index,
        limit: Arc::new(Limit {
            name: String::new(),
            windows: vec![Window {
                requests: o.requests_per_unit,
                per_ms,
                algorithm: defaults.algorithm,
            }],
            unlimited: false,
            shadow: false,
            quota: false,
            on_store_failure: defaults.on_store_failure,
        }),
        stat: Arc::new(StatKey::new(domain, &components)),
        replaces: Arc::from([]),
        replaceable_as: None,
        counter: None,
    })
}

/// The live table.
pub struct LimitTable {
    /// The limits and a generation number that changes with every swap (the local
    /// over-limit cache forgets entries from older generations).
    current: RwLock<(u64, Arc<Limits>)>,
    version: watch::Sender<Option<String>>,
}

impl Default for LimitTable {
    fn default() -> Self {
        LimitTable {
            current: RwLock::new((0, Arc::new(Limits::Empty))),
            version: watch::channel(None).0,
        }
    }
}

impl LimitTable {
    pub fn new(limits: Limits, version: impl Into<String>) -> Self {
        let t = LimitTable::default();
        t.swap(limits, version);
        t
    }

    pub fn snapshot(&self) -> Arc<Limits> {
        self.current.read().1.clone()
    }

    /// The limits with their generation.
    pub fn generation_snapshot(&self) -> (u64, Arc<Limits>) {
        self.current.read().clone()
    }

    /// Replace every limit at once.
    pub fn swap(&self, limits: Limits, version: impl Into<String>) {
        let mut cur = self.current.write();
        *cur = (cur.0 + 1, Arc::new(limits));
        drop(cur);
        self.version.send_replace(Some(version.into()));
    }

    /// The version of the applied configuration; `None` until the first one.
    pub fn version_rx(&self) -> watch::Receiver<Option<String>> {
        self.version.subscribe()
    }

    pub fn version(&self) -> Option<String> {
        self.version.borrow().clone()
    }
}

/// Validate and apply a full set of control-plane configs: the table is swapped
/// atomically, or left untouched when any config is invalid (the error names it, for
/// a NACK).
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
    use crate::portcullis_config::{DOMAIN, LIMIT_KEY};

    fn mk_config(name: &str, windows: &[(u32, i64)]) -> pb::RateLimitConfig {
        pb::RateLimitConfig {
            name: name.into(),
            by: vec!["user".into()],
            windows: windows
                .iter()
                .map(|&(requests, seconds)| pb::Window {
                    requests,
                    per: Some(prost_types::Duration { seconds, nanos: 0 }),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn envoy_limit_overrides_replace_rules_in_known_domains_only() {
        use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::{
            Entry as PbEntry, RateLimitOverride,
        };
        use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
        let table = LimitTable::default();
        apply_rate_limit_configs(
            &table,
            &[mk_config("a", &[(5, 1)])],
            "v1",
            Defaults::default(),
        )
        .unwrap();
        let limits = table.snapshot();
        let d = |unit: Unit| RateLimitDescriptor {
            entries: vec![
                PbEntry {
                    key: LIMIT_KEY.into(),
                    value: "a".into(),
                },
                PbEntry {
                    key: "user".into(),
                    value: "u1".into(),
                },
            ],
            limit: Some(RateLimitOverride {
                requests_per_unit: 42,
                unit: unit as i32,
            }),
            ..Default::default()
        };
        let hits = limits.resolve(DOMAIN, &[d(Unit::Hour)]);
        assert_eq!(hits[0].limit.windows[0].requests, 42);
        assert_eq!(hits[0].limit.windows[0].per_ms, 3_600_000);
        assert_eq!(hits[0].stat.full, format!("{DOMAIN}.{LIMIT_KEY}_a.user_u1"));
        // An unknown unit leaves the configured rule in force.
        assert_eq!(
            limits.resolve(DOMAIN, &[d(Unit::Unknown)])[0].limit.windows[0].requests,
            5
        );
        // An unknown domain gets nothing, override or not.
        assert!(limits.resolve("elsewhere", &[d(Unit::Hour)]).is_empty());
    }
}
