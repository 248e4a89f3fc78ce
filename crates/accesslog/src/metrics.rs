//! `portcullis_accesslog_*`: what was received, written and dropped, and why.
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    pub received: IntCounter,
    pub written: IntCounter,
    /// By reason: `queue_full`, `sink_error`.
    pub dropped: IntCounterVec,
    pub sink_errors: IntCounter,
    pub queue_depth: IntGauge,
    pub streams: IntGauge,
}

impl Metrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Metrics> {
        let m = Metrics {
            received: IntCounter::new(
                "portcullis_accesslog_records_received_total",
                "Access log records received from Envoy",
            )?,
            written: IntCounter::new(
                "portcullis_accesslog_records_written_total",
                "Access log records the sink accepted",
            )?,
            dropped: IntCounterVec::new(
                Opts::new(
                    "portcullis_accesslog_records_dropped_total",
                    "Access log records dropped rather than slow Envoy down, by reason",
                ),
                &["reason"],
            )?,
            sink_errors: IntCounter::new(
                "portcullis_accesslog_sink_errors_total",
                "Failed writes to the access log sink",
            )?,
            queue_depth: IntGauge::new(
                "portcullis_accesslog_queue_depth",
                "Records waiting for the sink",
            )?,
            streams: IntGauge::new(
                "portcullis_accesslog_streams",
                "Open access log streams from Envoys",
            )?,
        };
        registry.register(Box::new(m.received.clone()))?;
        registry.register(Box::new(m.written.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.sink_errors.clone()))?;
        registry.register(Box::new(m.queue_depth.clone()))?;
        registry.register(Box::new(m.streams.clone()))?;
        // Present at 0 from the start, so rate() and alerts see them before the first drop.
        for reason in ["queue_full", "sink_error"] {
            m.dropped.with_label_values(&[reason]);
        }
        Ok(m)
    }
}
