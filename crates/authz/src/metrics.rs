//! Prometheus metrics of `portcullis authz`.
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use std::sync::Arc;

use parking_lot::Mutex;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;

use crate::breaker::BreakerState;

/// Reads the identity cache's size (a closure, so this module needs nothing of the
/// cache, which the stores that report here sit behind).
type EntryCount = Box<dyn Fn() -> u64 + Send + Sync>;

/// The cache's size, read when scraped: moka counts lazily, and settling its
/// bookkeeping once per scrape is cheaper than once per Check.
#[derive(Clone)]
struct CacheEntries {
    gauge: IntGauge,
    count: Arc<Mutex<Option<EntryCount>>>,
}

impl Collector for CacheEntries {
    fn desc(&self) -> Vec<&Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if let Some(count) = self.count.lock().as_ref() {
            self.gauge.set(count() as i64);
        }
        self.gauge.collect()
    }
}

#[derive(Clone)]
pub struct Metrics {
    decisions: IntCounterVec,
    cache: IntCounterVec,
    backend: HistogramVec,
    breaker: IntGaugeVec,
    check: HistogramVec,
    key_reloads: IntCounterVec,
    cache_entries: CacheEntries,
    /// Every child of the per-Check series, resolved once: looking one up by its
    /// label values hashes them on every call.
    resolved: Resolved,
}

#[derive(Clone)]
struct Resolved {
    /// Per result: `decisions{shadow="false"}`, `decisions{shadow="true"}`, `check`.
    decisions: Vec<(&'static str, [IntCounter; 2], Histogram)>,
    cache: Vec<(&'static str, IntCounter)>,
}

impl Metrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Metrics> {
        let decisions = IntCounterVec::new(
            Opts::new(
                "portcullis_authz_decisions_total",
                "Check decisions by result (allowed, anonymous, unauthenticated, forbidden, unavailable) and whether the route is in shadow mode",
            ),
            &["result", "shadow"],
        )?;
        let cache = IntCounterVec::new(
            Opts::new(
                "portcullis_authz_cache_total",
                "Identity cache outcomes: hit, negative_hit, miss (a backend lookup), coalesced (waited on another request's lookup), stale (served past TTL while the backend is down), shed (refused: too many lookups in flight)",
            ),
            &["outcome"],
        )?;
        let backend = HistogramVec::new(
            HistogramOpts::new(
                "portcullis_authz_backend_seconds",
                "Key store call latency by endpoint and outcome",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
            &["endpoint", "outcome"],
        )?;
        let breaker = IntGaugeVec::new(
            Opts::new(
                "portcullis_authz_breaker_state",
                "Circuit breaker per key-store endpoint: 0 closed, 1 half-open, 2 open",
            ),
            &["endpoint"],
        )?;
        let check = HistogramVec::new(
            HistogramOpts::new("portcullis_authz_check_seconds", "Check handling time").buckets(
                vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                ],
            ),
            &["result"],
        )?;
        let key_reloads = IntCounterVec::new(
            Opts::new(
                "portcullis_authz_key_file_reloads_total",
                "Key file reloads by outcome (ok, invalid)",
            ),
            &["outcome"],
        )?;
        let cache_entries = CacheEntries {
            gauge: IntGauge::new(
                "portcullis_authz_cache_entries",
                "Identities (and negative answers) held in the identity cache",
            )?,
            count: Arc::default(),
        };
        // Present at 0 from the start, so rate() and alerts see them before the first event.
        let resolved = Resolved {
            decisions: [
                "allowed",
                "anonymous",
                "unauthenticated",
                "forbidden",
                "unavailable",
            ]
            .into_iter()
            .map(|r| {
                let d = |shadow| decisions.with_label_values(&[r, shadow]);
                (r, [d("false"), d("true")], check.with_label_values(&[r]))
            })
            .collect(),
            cache: ["hit", "negative_hit", "miss", "coalesced", "stale", "shed"]
                .into_iter()
                .map(|o| (o, cache.with_label_values(&[o])))
                .collect(),
        };
        registry.register(Box::new(cache_entries.clone()))?;
        registry.register(Box::new(decisions.clone()))?;
        registry.register(Box::new(cache.clone()))?;
        registry.register(Box::new(backend.clone()))?;
        registry.register(Box::new(breaker.clone()))?;
        registry.register(Box::new(check.clone()))?;
        registry.register(Box::new(key_reloads.clone()))?;
        Ok(Metrics {
            decisions,
            cache,
            backend,
            breaker,
            check,
            key_reloads,
            cache_entries,
            resolved,
        })
    }

    pub fn decision(&self, result: &str, shadow: bool, took: Duration) {
        if let Some((_, counters, seconds)) =
            self.resolved.decisions.iter().find(|(r, ..)| *r == result)
        {
            counters[usize::from(shadow)].inc();
            return seconds.observe(took.as_secs_f64());
        }
        self.decisions
            .with_label_values(&[result, if shadow { "true" } else { "false" }])
            .inc();
        self.check
            .with_label_values(&[result])
            .observe(took.as_secs_f64());
    }

    /// Reports what `count` returns (the identity cache's size) as
    /// `portcullis_authz_cache_entries`.
    pub fn watch_cache_entries(&self, count: impl Fn() -> u64 + Send + Sync + 'static) {
        *self.cache_entries.count.lock() = Some(Box::new(count));
    }

    pub fn cache(&self, outcome: &str) {
        if let Some((_, counter)) = self.resolved.cache.iter().find(|(o, _)| *o == outcome) {
            return counter.inc();
        }
        self.cache.with_label_values(&[outcome]).inc();
    }

    pub fn cache_count(&self, outcome: &str) -> u64 {
        self.cache.with_label_values(&[outcome]).get()
    }

    pub fn backend_seconds(&self, endpoint: &str, outcome: &str, took: Duration) {
        self.backend
            .with_label_values(&[endpoint, outcome])
            .observe(took.as_secs_f64());
    }

    pub fn breaker_state(&self, endpoint: &str, state: BreakerState) {
        self.breaker
            .with_label_values(&[endpoint])
            .set(state.gauge());
    }

    pub fn key_reload(&self, ok: bool) {
        self.key_reloads
            .with_label_values(&[if ok { "ok" } else { "invalid" }])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(r: &Registry, family: &str, labels: &[(&str, &str)]) -> u64 {
        let text = portcullis_process::render_metrics(r);
        let want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        text.lines()
            .filter(|l| l.starts_with(&format!("{family}{{")))
            .find(|l| want.iter().all(|w| l.contains(w.as_str())))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(u64::MAX)
    }

    #[test]
    fn the_pre_resolved_children_count_under_their_own_labels() {
        let r = Registry::new();
        let m = Metrics::new(&r).unwrap();
        let d = Duration::from_micros(50);
        m.decision("allowed", false, d);
        m.decision("allowed", true, d);
        m.decision("allowed", true, d);
        m.decision("forbidden", false, d);
        m.cache("hit");
        m.cache("miss");
        m.cache("miss");
        let decisions = "portcullis_authz_decisions_total";
        assert_eq!(
            count(&r, decisions, &[("result", "allowed"), ("shadow", "false")]),
            1
        );
        assert_eq!(
            count(&r, decisions, &[("result", "allowed"), ("shadow", "true")]),
            2
        );
        assert_eq!(
            count(
                &r,
                decisions,
                &[("result", "forbidden"), ("shadow", "false")]
            ),
            1
        );
        let cache = "portcullis_authz_cache_total";
        assert_eq!(count(&r, cache, &[("outcome", "hit")]), 1);
        assert_eq!(count(&r, cache, &[("outcome", "miss")]), 2);
        assert_eq!(m.cache_count("hit"), 1);
        let seconds = "portcullis_authz_check_seconds_count";
        assert_eq!(count(&r, seconds, &[("result", "allowed")]), 3);
        assert_eq!(count(&r, seconds, &[("result", "forbidden")]), 1);
    }
}
