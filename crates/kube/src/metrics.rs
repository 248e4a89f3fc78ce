//! Metrics of Kubernetes mode, on the admin `/metrics` with the xDS and snapshot ones:
//! who holds the status-writer Lease, how status writes fare, and what the admission
//! webhook decides. Label values come from short fixed lists, never from what a
//! client sent, so a caller of the webhook cannot grow the series.
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct KubeMetrics {
    /// 1 while this replica holds the status-writer Lease.
    pub leader: IntGauge,
    /// `role`: `leader` (this replica took the Lease) or `follower` (it lost it).
    pub lease_transitions: IntCounterVec,
    /// Lease rounds that failed on an API error (the replica stops writing status).
    pub lease_errors: IntCounter,
    /// `kind` Route|Service, `result` ok|not_found|error|dropped (dropped: this
    /// replica was not the leader when the update came up).
    pub status_writes: IntCounterVec,
    pub status_write_seconds: Histogram,
    /// Status updates queued, or written and not yet seen back through the watch.
    pub status_pending: IntGauge,
    /// `kind` Route|Service|other, `operation` CREATE|UPDATE|DELETE|CONNECT|other,
    /// `verdict` allowed|warned|denied|invalid.
    pub webhook_reviews: IntCounterVec,
    pub webhook_review_seconds: Histogram,
}

impl KubeMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let leader = IntGauge::new(
            "portcullis_lease_leader",
            "1 while this replica holds the status-writer Lease, else 0.",
        )?;
        let lease_transitions = IntCounterVec::new(
            Opts::new(
                "portcullis_lease_transitions_total",
                "Times this replica became the status writer (role=leader) or stopped being it (role=follower).",
            ),
            &["role"],
        )?;
        let lease_errors = IntCounter::new(
            "portcullis_lease_errors_total",
            "Lease rounds that failed on a Kubernetes API error.",
        )?;
        let status_writes = IntCounterVec::new(
            Opts::new(
                "portcullis_status_writes_total",
                "Status patches by object kind and result (ok, not_found, error, dropped).",
            ),
            &["kind", "result"],
        )?;
        let status_write_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "portcullis_status_write_seconds",
                "Time of one status patch against the API server.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let status_pending = IntGauge::new(
            "portcullis_status_queue_pending",
            "Status updates queued, or written and not yet seen back through the watch.",
        )?;
        let webhook_reviews = IntCounterVec::new(
            Opts::new(
                "portcullis_webhook_reviews_total",
                "AdmissionReviews answered, by object kind, operation and verdict (allowed, warned, denied, invalid).",
            ),
            &["kind", "operation", "verdict"],
        )?;
        let webhook_review_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "portcullis_webhook_review_seconds",
                "Time to decide one AdmissionReview (validation against every object the controller sees).",
            )
            .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
        )?;
        registry.register(Box::new(leader.clone()))?;
        registry.register(Box::new(lease_transitions.clone()))?;
        registry.register(Box::new(lease_errors.clone()))?;
        registry.register(Box::new(status_writes.clone()))?;
        registry.register(Box::new(status_write_seconds.clone()))?;
        registry.register(Box::new(status_pending.clone()))?;
        registry.register(Box::new(webhook_reviews.clone()))?;
        registry.register(Box::new(webhook_review_seconds.clone()))?;
        Ok(Self {
            leader,
            lease_transitions,
            lease_errors,
            status_writes,
            status_write_seconds,
            status_pending,
            webhook_reviews,
            webhook_review_seconds,
        })
    }

    /// Metrics on a registry of their own, for tests.
    #[cfg(test)]
    pub fn unregistered() -> Self {
        Self::new(&Registry::new()).expect("metric names are valid")
    }
}

/// `kind` as a label: one of the kinds the webhook is registered for, or `other`.
pub fn kind_label(kind: &str) -> &'static str {
    match kind {
        "Route" => "Route",
        "Service" => "Service",
        _ => "other",
    }
}
