//! envoyproxy/ratelimit's per-rule statistics as Prometheus series, so dashboards
//! built on its Prometheus mode keep working.
//!
//! envoyproxy emits `ratelimit.service.rate_limit.<domain>.<key>.<stat>` and its
//! built-in statsd→Prometheus mapper turns them into
//! `ratelimit_service_rate_limit_<stat>{domain, key1, key2}`. The series here have the
//! same names, labels and meaning: `key1` is the first component of the key, `key2`
//! the rest (empty for one-level keys, dot-joined beyond two levels, which envoyproxy's
//! mapper leaves unmapped).
//!
//! Cardinality is bounded: `detailed_metric`, `value_to_metric` and Envoy's limit
//! overrides put request values into keys, so at most `max_keys` distinct label sets
//! are created; later keys are reported as `key1="_other"`, and
//! `portcullis_ratelimit_stats_keys_dropped_total` counts them.
use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::RwLock;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use crate::matched::StatKey;

/// Label value standing for keys beyond the budget.
pub const OTHER: &str = "_other";
/// Default bound on distinct stat keys (and on `limit` label values).
pub const DEFAULT_MAX_KEYS: usize = 10_000;

/// Admits at most `max` distinct label values; the rest map to [`OTHER`].
pub struct LabelBudget {
    seen: RwLock<HashSet<String>>,
    max: usize,
    dropped: IntCounter,
}

impl LabelBudget {
    pub fn new(max: usize, dropped: IntCounter) -> Self {
        LabelBudget {
            seen: RwLock::new(HashSet::new()),
            max,
            dropped,
        }
    }

    /// `value` if it has a place, else [`OTHER`].
    pub fn admit<'a>(&self, value: &'a str) -> &'a str {
        if self.seen.read().contains(value) {
            return value;
        }
        let mut seen = self.seen.write();
        if seen.contains(value) {
            return value;
        }
        if seen.len() < self.max {
            seen.insert(value.to_string());
            return value;
        }
        self.dropped.inc();
        OTHER
    }
}

/// How many of a decision's hits fell where (envoyproxy `base_limiter.go` semantics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub total_hits: u64,
    pub over_limit: u64,
    pub near_limit: u64,
    pub within_limit: u64,
    pub shadow_mode: u64,
    pub over_limit_with_local_cache: u64,
}

impl Tally {
    /// A decision from the store: usage `before` the request, `hits` added, against
    /// `limit`; near is `floor(limit · near_ratio)`.
    pub fn decided(before: u64, hits: u64, limit: u64, near_ratio: f64, shadow: bool) -> Tally {
        let after = before + hits;
        let near = (limit as f64 * near_ratio).floor() as u64;
        let mut t = Tally {
            total_hits: hits,
            ..Tally::default()
        };
        if after > limit {
            // Only the hits past the limit are over; those between the near threshold
            // and the limit are near.
            if before >= limit {
                t.over_limit = hits;
            } else {
                t.over_limit = after - limit;
                t.near_limit = limit - near.max(before);
            }
            if shadow {
                t.shadow_mode = t.over_limit;
            }
        } else {
            t.within_limit = hits;
            if after > near {
                t.near_limit = if before >= near { hits } else { after - near };
            }
        }
        t
    }

    /// Answered from the local over-limit cache.
    pub fn from_local_cache(hits: u64) -> Tally {
        Tally {
            total_hits: hits,
            over_limit: hits,
            over_limit_with_local_cache: hits,
            ..Tally::default()
        }
    }

    /// Counted but not decided (the store failed).
    pub fn undecided(hits: u64) -> Tally {
        Tally {
            total_hits: hits,
            ..Tally::default()
        }
    }
}

#[derive(Clone)]
pub struct RuleStats {
    total_hits: IntCounterVec,
    over_limit: IntCounterVec,
    near_limit: IntCounterVec,
    within_limit: IntCounterVec,
    shadow_mode: IntCounterVec,
    over_limit_with_local_cache: IntCounterVec,
    budget: Arc<LabelBudget>,
}

impl RuleStats {
    pub fn new(registry: &Registry, max_keys: usize) -> prometheus::Result<Self> {
        let vec = |stat: &str, help: &str| -> prometheus::Result<IntCounterVec> {
            let v = IntCounterVec::new(
                Opts::new(format!("ratelimit_service_rate_limit_{stat}"), help),
                &["domain", "key1", "key2"],
            )?;
            registry.register(Box::new(v.clone()))?;
            Ok(v)
        };
        let dropped = IntCounter::new(
            "portcullis_ratelimit_stats_keys_dropped_total",
            "Decisions reported under key1=\"_other\" because the stat key budget was spent",
        )?;
        registry.register(Box::new(dropped.clone()))?;
        Ok(RuleStats {
            total_hits: vec("total_hits", "Hits of a rule (envoyproxy total_hits)")?,
            over_limit: vec(
                "over_limit",
                "Hits over a rule's limit (envoyproxy over_limit)",
            )?,
            near_limit: vec(
                "near_limit",
                "Hits between the near-limit ratio and the limit (envoyproxy near_limit)",
            )?,
            within_limit: vec(
                "within_limit",
                "Hits within a rule's limit (envoyproxy within_limit)",
            )?,
            shadow_mode: vec(
                "shadow_mode",
                "Over-limit hits a shadow_mode rule let through (envoyproxy shadow_mode)",
            )?,
            over_limit_with_local_cache: vec(
                "over_limit_with_local_cache",
                "Over-limit hits answered by the local cache (envoyproxy over_limit_with_local_cache)",
            )?,
            budget: Arc::new(LabelBudget::new(max_keys, dropped)),
        })
    }

    pub fn record(&self, key: &StatKey, t: Tally) {
        let labels: [&str; 3] = if self.budget.admit(&key.full) == OTHER {
            [&key.domain, OTHER, ""]
        } else {
            [&key.domain, &key.key1, &key.key2]
        };
        for (vec, n) in [
            (&self.total_hits, t.total_hits),
            (&self.over_limit, t.over_limit),
            (&self.near_limit, t.near_limit),
            (&self.within_limit, t.within_limit),
            (&self.shadow_mode, t.shadow_mode),
            (
                &self.over_limit_with_local_cache,
                t.over_limit_with_local_cache,
            ),
        ] {
            // Series appear with their first hit, as statsd counters do.
            if n > 0 {
                vec.with_label_values(&labels).inc_by(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_split_hits_as_envoyproxy_does() {
        // limit 10, near at 8.
        assert_eq!(
            Tally::decided(3, 1, 10, 0.8, false),
            Tally {
                total_hits: 1,
                within_limit: 1,
                ..Tally::default()
            }
        );
        let t = Tally::decided(8, 1, 10, 0.8, false);
        assert_eq!((t.within_limit, t.near_limit), (1, 1));
        let t = Tally::decided(6, 5, 10, 0.8, false);
        assert_eq!((t.over_limit, t.near_limit, t.within_limit), (1, 2, 0));
        let t = Tally::decided(12, 3, 10, 0.8, true);
        assert_eq!((t.over_limit, t.near_limit, t.shadow_mode), (3, 0, 3));
        assert_eq!(Tally::from_local_cache(2).over_limit_with_local_cache, 2);
    }

    #[test]
    fn the_label_budget_bounds_distinct_values() {
        let dropped = IntCounter::new("d", "d").unwrap();
        let b = LabelBudget::new(2, dropped.clone());
        assert_eq!(b.admit("a"), "a");
        assert_eq!(b.admit("b"), "b");
        assert_eq!(b.admit("c"), OTHER);
        assert_eq!(b.admit("a"), "a", "known values keep their label");
        assert_eq!(dropped.get(), 1);
    }
}
