//! Envoy's OpenTelemetry tracer: spans for every sampled request, exported over OTLP/gRPC
//! to the collector in `Options::otlp_collector`. Envoy propagates W3C `traceparent` to
//! upstreams and to its ext_authz and rate-limit calls, which continue the trace.
use envoy_types::pb::envoy::{
    config::trace::v3::{OpenTelemetryConfig, tracing::Http, tracing::http::ConfigType},
    extensions::filters::network::http_connection_manager::v3::http_connection_manager::Tracing,
    r#type::v3::Percent,
};

use crate::{Options, proto};

/// Cluster of the OTLP collector Envoy exports spans to.
pub const OTEL_CLUSTER: &str = "_portcullis/otel";
/// `service.name` of Envoy's spans.
pub const SERVICE_NAME: &str = "portcullis-gateway";

pub fn connection_manager_tracing(options: &Options) -> Option<Tracing> {
    options.otlp_collector.as_ref()?;
    Some(Tracing {
        random_sampling: Some(Percent {
            value: f64::from(options.trace_sampling_percent.min(100)),
        }),
        provider: Some(Http {
            name: "envoy.tracers.opentelemetry".into(),
            config_type: Some(ConfigType::TypedConfig(proto::any(&OpenTelemetryConfig {
                grpc_service: Some(crate::filters::grpc(OTEL_CLUSTER, 1000)),
                service_name: SERVICE_NAME.into(),
                ..Default::default()
            }))),
        }),
        // A span for the upstream call too, so the backend's time shows apart from
        // Envoy's own filters (ext_authz, rate limit).
        spawn_upstream_span: proto::yes(),
        ..Default::default()
    })
}
