//! Prometheus metrics of the xDS server.

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub(crate) struct Metrics {
    pub(crate) connected_streams: IntGaugeVec,
    pub(crate) responses: IntCounterVec,
    pub(crate) acks: IntCounterVec,
    pub(crate) nacks: IntCounterVec,
    pub(crate) snapshot_resources: IntGaugeVec,
    pub(crate) snapshot_updates: IntCounter,
}

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
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 6] = [
            Box::new(m.connected_streams.clone()),
            Box::new(m.responses.clone()),
            Box::new(m.acks.clone()),
            Box::new(m.nacks.clone()),
            Box::new(m.snapshot_resources.clone()),
            Box::new(m.snapshot_updates.clone()),
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
