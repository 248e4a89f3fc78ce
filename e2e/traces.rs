//! Distributed tracing: Envoy's OpenTelemetry tracer (configured by the control plane)
//! and `portcullis authz` both export to an OTLP receiver started here; one trace must
//! hold Envoy's spans and the authz span, the latter a child of Envoy's ext_authz call.
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use parking_lot::Mutex;

use crate::auth::{Authz, keys_yaml, manifests};
use crate::harness::*;

/// (service.name, span name, trace id, span id, parent span id, http.url)
type Seen = Arc<Mutex<Vec<(String, String, Vec<u8>, Vec<u8>, Vec<u8>, String)>>>;

fn string_value(v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> Option<String> {
    match &v?.value {
        Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => {
            Some(s.clone())
        }
        _ => None,
    }
}

struct Receiver(Seen);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for rs in &request.get_ref().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| string_value(a.value.as_ref()))
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    self.0.lock().push((
                        service.clone(),
                        s.name.clone(),
                        s.trace_id.clone(),
                        s.span_id.clone(),
                        s.parent_span_id.clone(),
                        s.attributes
                            .iter()
                            .find(|a| a.key == "http.url")
                            .and_then(|a| string_value(a.value.as_ref()))
                            .unwrap_or_default(),
                    ));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP receiver on a free port, recording into the returned list.
async fn receiver() -> (Seen, std::net::SocketAddr) {
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Receiver(seen.clone())))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (seen, collector)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_holds_envoy_and_authz_spans() {
    let (seen, collector) = receiver().await;
    // This process is the authz service's: its spans go to the receiver too.
    let _tracing = portcullis_process::init_tracing(
        "info",
        false,
        Some(&format!("http://{collector}")),
        "portcullis-authz",
    )
    .expect("tracing installs");

    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.yaml");
    write_atomic(
        &keys,
        &keys_yaml(&[("alice-ci", "alice-key", "alice", "'orders:read'")]),
    );
    let authz = Authz::start(&["--keys-file", keys.to_str().unwrap()]).await;
    write_atomic(&dir.path().join("all.yaml"), &manifests(echo("echo").await));
    let options = portcullis_translate::Options {
        listen_address: "127.0.0.1".into(),
        listen_port: 0,
        authz: Some(authz.grpc.to_string()),
        otlp_collector: Some(collector.to_string()),
        trace_sampling_percent: 100,
        ..Default::default()
    };
    let plane = Plane::start_with(dir.path(), None, options).await;
    let gw = Gateway::start(plane.xds, "tracing", false).await;
    plane.wait_synced(None, STARTUP).await;

    let r = gw
        .request("GET", "x", "/orders/1", &[("x-api-key", "alice-key")])
        .await;
    assert_eq!(r.status, 200);
    // The backend got the trace context too.
    assert!(
        r.body["headers"]["traceparent"].as_str().is_some(),
        "{:?}",
        r.body
    );

    // Both exporters batch (Envoy every 5 s by default): wait for the authz span and an
    // Envoy span of its trace to arrive, then check how they relate.
    let deadline = Instant::now() + STARTUP;
    let (authz_span, envoy_spans) = loop {
        let spans = seen.lock().clone();
        if let Some(a) = spans
            .iter()
            .find(|s| s.0 == "portcullis-authz" && s.1 == "authz.check")
        {
            let envoy: Vec<_> = spans
                .iter()
                .filter(|s| s.0 == "portcullis-gateway" && s.2 == a.2)
                .cloned()
                .collect();
            if envoy.iter().any(|e| e.3 == a.4) {
                break (a.clone(), envoy);
            }
        }
        assert!(Instant::now() < deadline, "spans never arrived: {spans:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(authz_span.2.len(), 16, "a W3C trace id");
    let parent = envoy_spans.iter().find(|e| e.3 == authz_span.4).unwrap();
    assert!(
        envoy_spans.len() >= 2,
        "Envoy's request span and its ext_authz call span: {envoy_spans:?}"
    );
    assert!(
        !parent.4.is_empty(),
        "the ext_authz call span has Envoy's request span as parent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_samples_at_its_own_rate() {
    let (seen, collector) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = service_yaml("echo", echo("echo").await)
        + &route_yaml(
            "traced",
            "{match: {paths: [{prefix: /traced}]}, backends: [{service: echo}], tracing: {samplingPercent: 100}}",
        )
        + &route_yaml(
            "quiet",
            "{match: {paths: [{prefix: /quiet}]}, backends: [{service: echo}]}",
        );
    write_atomic(&dir.path().join("all.yaml"), &manifests);
    // Gateway-wide: trace nothing. Only the Route's override can start a trace.
    let options = portcullis_translate::Options {
        listen_address: "127.0.0.1".into(),
        listen_port: 0,
        otlp_collector: Some(collector.to_string()),
        trace_sampling_percent: 0,
        ..Default::default()
    };
    let plane = Plane::start_with(dir.path(), None, options).await;
    let gw = Gateway::start(plane.xds, "route-sampling", false).await;
    plane.wait_synced(None, STARTUP).await;
    // The unsampled requests go first: their spans, had they any, would be exported
    // no later than the sampled one's.
    for i in 0..5 {
        assert_eq!(gw.get("x.test", &format!("/quiet/{i}")).await.status, 200);
    }
    assert_eq!(gw.get("x.test", "/traced/1").await.status, 200);
    let deadline = Instant::now() + STARTUP;
    loop {
        let spans = seen.lock().clone();
        if spans
            .iter()
            .any(|s| s.0 == "portcullis-gateway" && s.5.contains("/traced/1"))
        {
            let quiet: Vec<_> = spans.iter().filter(|s| s.5.contains("/quiet")).collect();
            assert!(quiet.is_empty(), "the quiet Route was traced: {quiet:?}");
            break;
        }
        assert!(Instant::now() < deadline, "no span for /traced: {spans:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
