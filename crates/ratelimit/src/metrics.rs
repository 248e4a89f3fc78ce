//! Prometheus metrics: Portcullis' own (`portcullis_ratelimit_*`) and envoyproxy's
//! per-rule and service statistics under its Prometheus names (see `stats`).
use std::sync::Arc;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::stats::{self, LabelBudget, RuleStats};

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
    /// Store calls that failed, by `kind` (`timeout`, `redis`, `not_connected`, `overloaded`, ...).
    pub store_errors: IntCounterVec,
    /// Decisions answered by the local over-limit cache, by `limit`.
    pub local_cache_hits: IntCounterVec,
    /// 1 for the applied configuration's `version` (and `source`).
    pub config_version: IntGaugeVec,
    pub config_limits: IntGauge,
    /// Configurations refused (NACKed or failed to load), by `source`.
    pub config_rejected: IntCounterVec,
    /// Memory-store counters evicted to stay within `--memory-max-keys`.
    pub memory_evictions: IntCounter,
    /// Counters held by the memory store (updated by its sweeper).
    pub memory_keys: IntGauge,
    /// envoyproxy's per-rule statistics.
    pub rules: RuleStats,
    /// envoyproxy `ratelimit.service.config_load_success` / `config_load_error`.
    pub config_load_success: IntCounter,
    pub config_load_error: IntCounter,
    /// envoyproxy `ratelimit.service.global_shadow_mode`.
    pub global_shadow_mode: IntCounter,
    limit_labels: Arc<LabelBudget>,
}

impl Metrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        Self::with_max_keys(registry, stats::DEFAULT_MAX_KEYS)
    }

    /// With at most `max_keys` distinct `limit` label values and stat keys.
    pub fn with_max_keys(registry: &Registry, max_keys: usize) -> prometheus::Result<Self> {
        let labels_dropped = IntCounter::new(
            "portcullis_ratelimit_limit_labels_dropped_total",
            "Decisions reported under limit=\"_other\" because the label budget was spent",
        )?;
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
            memory_evictions: IntCounter::new(
                "portcullis_ratelimit_memory_evictions_total",
                "Memory-store counters evicted to stay within --memory-max-keys",
            )?,
            memory_keys: IntGauge::new(
                "portcullis_ratelimit_memory_keys",
                "Counters held by the memory store",
            )?,
            rules: RuleStats::new(registry, max_keys)?,
            config_load_success: IntCounter::new(
                "ratelimit_service_config_load_success",
                "Configurations loaded (envoyproxy config_load_success)",
            )?,
            config_load_error: IntCounter::new(
                "ratelimit_service_config_load_error",
                "Configurations refused (envoyproxy config_load_error)",
            )?,
            global_shadow_mode: IntCounter::new(
                "ratelimit_service_global_shadow_mode",
                "Refusals the global SHADOW_MODE turned into OK (envoyproxy global_shadow_mode)",
            )?,
            limit_labels: Arc::new(LabelBudget::new(max_keys, labels_dropped.clone())),
        };
        registry.register(Box::new(m.decisions.clone()))?;
        registry.register(Box::new(m.store_latency.clone()))?;
        registry.register(Box::new(m.store_errors.clone()))?;
        registry.register(Box::new(m.local_cache_hits.clone()))?;
        registry.register(Box::new(m.config_version.clone()))?;
        registry.register(Box::new(m.config_limits.clone()))?;
        registry.register(Box::new(m.config_rejected.clone()))?;
        registry.register(Box::new(m.memory_evictions.clone()))?;
        registry.register(Box::new(m.memory_keys.clone()))?;
        registry.register(Box::new(m.config_load_success.clone()))?;
        registry.register(Box::new(m.config_load_error.clone()))?;
        registry.register(Box::new(m.global_shadow_mode.clone()))?;
        registry.register(Box::new(labels_dropped))?;
        Ok(m)
    }

    /// A fresh set on a private registry (tests, or callers without one).
    pub fn unregistered() -> Self {
        Metrics::new(&Registry::new()).expect("metric names are valid")
    }

    /// The `limit` label for `name`, within the label budget.
    pub fn limit_label<'a>(&self, name: &'a str) -> &'a str {
        self.limit_labels.admit(name)
    }

    pub fn decision(&self, limit: &str, outcome: &str) {
        self.decisions
            .with_label_values(&[self.limit_label(limit), outcome])
            .inc();
    }

    pub fn config_applied(&self, source: &str, version: &str, limits: usize) {
        self.config_version.reset();
        self.config_version
            .with_label_values(&[source, version])
            .set(1);
        self.config_limits.set(limits as i64);
        self.config_load_success.inc();
    }

    pub fn config_refused(&self, source: &str) {
        self.config_rejected.with_label_values(&[source]).inc();
        self.config_load_error.inc();
    }
}
