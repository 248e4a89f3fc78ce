//! Prometheus metrics, all prefixed `portcullis_ratelimit_`.
use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Decision outcomes (the `outcome` label).
pub mod outcome {
    pub const OK: &str = "ok";
    pub const OVER_LIMIT: &str = "over_limit";
    pub const SHADOW_OVER_LIMIT: &str = "shadow_over_limit";
    pub const STORE_FAILURE_ALLOWED: &str = "store_failure_allowed";
    pub const STORE_FAILURE_DENIED: &str = "store_failure_denied";
}

#[derive(Clone)]
pub struct Metrics {
    /// Per matched descriptor: `limit`, `outcome`.
    pub decisions: IntCounterVec,
    /// One observation per store call, by `store`.
    pub store_latency: HistogramVec,
    /// Store calls that failed, by `kind` (`timeout`, `redis`, `not_connected`, ...).
    pub store_errors: IntCounterVec,
    /// Decisions answered by the local over-limit cache, by `limit`.
    pub local_cache_hits: IntCounterVec,
    /// 1 for the applied configuration's `version` (and `source`).
    pub config_version: IntGaugeVec,
    pub config_limits: IntGauge,
    /// Configurations refused (NACKed or failed to load), by `source`.
    pub config_rejected: IntCounterVec,
}

impl Metrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = Metrics {
            decisions: IntCounterVec::new(
                Opts::new(
                    "portcullis_ratelimit_decisions_total",
                    "Rate-limit decisions per limit and outcome",
                ),
                &["limit", "outcome"],
            )?,
            store_latency: HistogramVec::new(
                HistogramOpts::new(
                    "portcullis_ratelimit_store_latency_seconds",
                    "Counter store call latency",
                )
                .buckets(vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1,
                ]),
                &["store"],
            )?,
            store_errors: IntCounterVec::new(
                Opts::new(
                    "portcullis_ratelimit_store_errors_total",
                    "Counter store calls that failed or timed out",
                ),
                &["kind"],
            )?,
            local_cache_hits: IntCounterVec::new(
                Opts::new(
                    "portcullis_ratelimit_local_cache_hits_total",
                    "Over-limit answers given from the local cache without a store call",
                ),
                &["limit"],
            )?,
            config_version: IntGaugeVec::new(
                Opts::new(
                    "portcullis_ratelimit_config_version_info",
                    "The applied configuration version",
                ),
                &["source", "version"],
            )?,
            config_limits: IntGauge::new(
                "portcullis_ratelimit_config_limits",
                "Limits in the applied configuration",
            )?,
            config_rejected: IntCounterVec::new(
                Opts::new(
                    "portcullis_ratelimit_config_rejected_total",
                    "Configurations refused",
                ),
                &["source"],
            )?,
        };
        registry.register(Box::new(m.decisions.clone()))?;
        registry.register(Box::new(m.store_latency.clone()))?;
        registry.register(Box::new(m.store_errors.clone()))?;
        registry.register(Box::new(m.local_cache_hits.clone()))?;
        registry.register(Box::new(m.config_version.clone()))?;
        registry.register(Box::new(m.config_limits.clone()))?;
        registry.register(Box::new(m.config_rejected.clone()))?;
        Ok(m)
    }

    /// A fresh set on a private registry (tests, or callers without one).
    pub fn unregistered() -> Self {
        Metrics::new(&Registry::new()).expect("metric names are valid")
    }

    pub fn decision(&self, limit: &str, outcome: &str) {
        self.decisions.with_label_values(&[limit, outcome]).inc();
    }

    pub fn config_applied(&self, source: &str, version: &str, limits: usize) {
        self.config_version.reset();
        self.config_version
            .with_label_values(&[source, version])
            .set(1);
        self.config_limits.set(limits as i64);
    }
}
