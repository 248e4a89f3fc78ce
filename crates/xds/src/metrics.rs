//! Prometheus metrics of the xDS server.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub(crate) struct Metrics {
    pub(crate) connected_streams: IntGaugeVec,
    pub(crate) responses: IntCounterVec,
    pub(crate) acks: IntCounterVec,
    pub(crate) nacks: IntCounterVec,
    pub(crate) snapshot_resources: IntGaugeVec,
    pub(crate) snapshot_updates: IntCounter,
    pub(crate) push_seconds: HistogramVec,
    pub(crate) nacked_streams: IntGauge,
}

/// Every type Envoy or the rate-limit service subscribes to, so counters by type exist
/// at 0 before the first event (rate() and alerts need the series).
const TYPES: &[&str] = &[
    crate::type_url::LISTENER,
    crate::type_url::ROUTE_CONFIGURATION,
    crate::type_url::CLUSTER,
    crate::type_url::CLUSTER_LOAD_ASSIGNMENT,
];

/// Short label for a type URL ("...envoy.config.cluster.v3.Cluster" ->
/// "Cluster") to keep label values readable.
pub(crate) fn short_type(type_url: &str) -> &str {
    type_url.rsplit(['.', '/']).next().unwrap_or(type_url)
}

impl Metrics {
    pub(crate) fn new(registry: &Registry) -> Metrics {
        let m = Metrics {
            connected_streams: IntGaugeVec::new(
                Opts::new(
                    "portcullis_xds_connected_streams",
                    "Open ADS streams by protocol (sotw|delta).",
                ),
                &["protocol"],
            )
            .expect("valid metric"),
            responses: IntCounterVec::new(
                Opts::new(
                    "portcullis_xds_responses_total",
                    "Discovery responses sent, by resource type.",
                ),
                &["type_url"],
            )
            .expect("valid metric"),
            acks: IntCounterVec::new(
                Opts::new("portcullis_xds_acks_total", "ACKs received, by type."),
                &["type_url"],
            )
            .expect("valid metric"),
            nacks: IntCounterVec::new(
                Opts::new(
                    "portcullis_xds_nacks_total",
                    "NACKs (rejected configuration) received, by type.",
                ),
                &["type_url"],
            )
            .expect("valid metric"),
            snapshot_resources: IntGaugeVec::new(
                Opts::new(
                    "portcullis_xds_snapshot_resources",
                    "Resources in the current snapshot, by type.",
                ),
                &["type_url"],
            )
            .expect("valid metric"),
            snapshot_updates: IntCounter::new(
                "portcullis_xds_snapshot_updates_total",
                "Snapshots installed with a new version.",
            )
            .expect("valid metric"),
            push_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "portcullis_xds_push_seconds",
                    "From a snapshot being installed (or the stream opening, if later) to the node ACKing that snapshot's version, by type.",
                )
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
                &["type_url"],
            )
            .expect("valid metric"),
            nacked_streams: IntGauge::new(
                "portcullis_xds_nacked_streams",
                "Streams whose node currently rejects the latest version of some type (runs older config).",
            )
            .expect("valid metric"),
        };
        for t in TYPES {
            let t = short_type(t);
            m.responses.with_label_values(&[t]);
            m.acks.with_label_values(&[t]);
            m.nacks.with_label_values(&[t]);
        }
        let collectors: [Box<dyn prometheus::core::Collector>; 8] = [
            Box::new(m.connected_streams.clone()),
            Box::new(m.responses.clone()),
            Box::new(m.acks.clone()),
            Box::new(m.nacks.clone()),
            Box::new(m.snapshot_resources.clone()),
            Box::new(m.snapshot_updates.clone()),
            Box::new(m.push_seconds.clone()),
            Box::new(m.nacked_streams.clone()),
        ];
        for c in collectors {
            // A duplicate registration (e.g. two caches on one registry) must
            // not take the control plane down; the metrics still count.
            if let Err(error) = registry.register(c) {
                tracing::warn!(%error, "could not register xDS metric");
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::short_type;

    #[test]
    fn short_names() {
        assert_eq!(short_type(crate::type_url::CLUSTER), "Cluster");
        assert_eq!(
            short_type("type.googleapis.com/portcullis.ratelimit.v1.Config"),
            "Config"
        );
        assert_eq!(short_type("plain"), "plain");
    }
}
