//! Logging and metrics set-up shared by every Portcullis process.
//!
//! Logs go to stderr through `tracing` (plain text for people, JSON for collectors);
//! metrics live in one `prometheus::Registry` per process, served at `/metrics` with
//! the process metrics and `portcullis_build_info` of [`process`] appended. The filter
//! services' gRPC methods are served by [`unary`].
#![forbid(unsafe_code)]

pub mod http;
pub mod port;
pub mod process;
pub mod unary;

use prometheus::{Encoder, Registry, TextEncoder};

/// The allocator of every binary (and test) that links this crate, so of every
/// Portcullis process. glibc's malloc keeps freed memory in per-thread arenas: after a
/// storm of 4,000 Envoys connecting at once (each sending a ~50 KiB EDS request), ~10 KiB
/// per Envoy of freed buffers stayed resident between live ones. jemalloc returns it
/// (`make bench-xds`, RSS per extra ADS client; docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber. `RUST_LOG` overrides `default_filter`. Safe to call
/// more than once (later calls are ignored), which tests rely on.
pub fn init_logging(default_filter: &str, json: bool) {
    drop(install(default_filter, json, None));
}

/// Span export of a process; [`Tracing::shutdown`] flushes what is still buffered.
pub struct Tracing {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Tracing {
    pub async fn shutdown(mut self) {
        if let Some(p) = self.provider.take() {
            // The batch processor flushes on its own thread and blocks until done.
            let _ = tokio::task::spawn_blocking(move || p.shutdown()).await;
        }
    }
}

/// Logging as [`init_logging`], plus, with `otlp_endpoint` (e.g. `http://collector:4317`),
/// every `tracing` span exported over OTLP/gRPC as `service`. Call it inside a Tokio
/// runtime: the exporter's gRPC client needs one.
pub fn init_tracing(
    default_filter: &str,
    json: bool,
    otlp_endpoint: Option<&str>,
    service: &str,
) -> anyhow::Result<Tracing> {
    process::set_component(service.strip_prefix("portcullis-").unwrap_or(service));
    let provider = match otlp_endpoint {
        None => None,
        Some(endpoint) => {
            use opentelemetry_otlp::WithExportConfig;
            use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor};
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?;
            let batch = BatchSpanProcessor::builder(exporter)
                .with_batch_config(
                    BatchConfigBuilder::default()
                        .with_scheduled_delay(std::time::Duration::from_secs(1))
                        .build(),
                )
                .build();
            Some(
                opentelemetry_sdk::trace::SdkTracerProvider::builder()
                    .with_span_processor(batch)
                    .with_resource(
                        opentelemetry_sdk::Resource::builder()
                            .with_service_name(service.to_string())
                            .build(),
                    )
                    .build(),
            )
        }
    };
    install(default_filter, json, provider.as_ref())
        .map_err(|e| anyhow::anyhow!("installing the tracing subscriber: {e}"))?;
    if provider.is_some() {
        EXPORTING.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(Tracing { provider })
}

fn install(
    default_filter: &str,
    json: bool,
    provider: Option<&opentelemetry_sdk::trace::SdkTracerProvider>,
) -> Result<(), tracing_subscriber::util::TryInitError> {
    use opentelemetry::trace::TracerProvider;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let fmt = if json {
        fmt::layer().json().with_writer(std::io::stderr).boxed()
    } else {
        fmt::layer().with_writer(std::io::stderr).boxed()
    };
    let otel = provider.map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("portcullis")));
    tracing_subscriber::registry()
        .with(otel)
        .with(filter)
        .with(fmt)
        .try_init()
}

/// Set once a span exporter is installed ([`init_tracing`] with an endpoint).
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process exports spans (`--otlp-endpoint`).
pub fn spans_exported() -> bool {
    EXPORTING.load(std::sync::atomic::Ordering::Relaxed)
}

/// The span of one served call: `make()`, a child of the peer's trace context (see
/// [`continue_trace`]), when spans are exported; otherwise a disabled span. Per-call
/// spans carry no field a log line needs, and building one through the log
/// subscriber cost ~6% of a cache-hit Check's CPU (docs/benchmarks.md).
pub fn call_span<'a>(
    make: impl FnOnce() -> tracing::Span,
    get: impl Fn(&str) -> Option<&'a str>,
) -> tracing::Span {
    if !spans_exported() {
        return tracing::Span::none();
    }
    let span = make();
    continue_trace(&span, get);
    span
}

/// Makes `span` a child of the W3C trace context a peer sent (`traceparent`,
/// `tracestate`), looked up with `get`; without one the span starts a trace.
pub fn continue_trace<'a>(span: &tracing::Span, get: impl Fn(&str) -> Option<&'a str>) {
    use opentelemetry::propagation::{Extractor, TextMapPropagator};
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    struct Headers(Vec<(&'static str, String)>);
    impl Extractor for Headers {
        fn get(&self, key: &str) -> Option<&str> {
            self.0
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.as_str())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.iter().map(|(k, _)| *k).collect()
        }
    }
    let headers = Headers(
        ["traceparent", "tracestate"]
            .into_iter()
            .filter_map(|k| get(k).map(|v| (k, v.to_string())))
            .collect(),
    );
    if headers.0.is_empty() {
        return;
    }
    let cx = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&headers);
    let _ = span.set_parent(cx);
}

/// Prometheus text exposition of everything in `registry`, plus this process's CPU,
/// memory, file descriptors, start time and build ([`process::families`]).
pub fn render_metrics(registry: &Registry) -> String {
    let mut families = registry.gather();
    families.extend(process::families());
    let mut buf = Vec::new();
    // Encoding into a Vec only fails on metric-family inconsistencies, which the
    // prometheus crate already refuses at registration.
    if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
        tracing::warn!(error = %e, "encoding metrics");
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// The operator's HTTP endpoint of a service: `/metrics` and `/healthz`.
pub fn metrics_router(registry: Registry) -> axum::Router {
    use axum::{extract::State, routing::get};
    axum::Router::new()
        .route(
            "/metrics",
            get(|State(r): State<Registry>| async move { render_metrics(&r) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .with_state(registry)
}

/// Serves [`metrics_router`] until `shutdown` resolves.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    registry: Registry,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    http::serve(listener, metrics_router(registry), shutdown).await
}

/// One shutdown signal shared by the several servers of a process: every
/// [`Shutdown::signal`] resolves once the future given to [`Shutdown::new`] has.
#[derive(Clone)]
pub struct Shutdown(tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    pub fn new(shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Shutdown {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(true);
        });
        Shutdown(rx)
    }

    pub fn signal(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}

/// Binds `addr`, naming the flag it came from in the error.
pub async fn bind(
    addr: std::net::SocketAddr,
    flag: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    listen(addr)
        .map_err(|e| anyhow::anyhow!("{flag} {addr}: cannot listen ({e}); pick a free port"))
}

/// Connections the kernel may hold for a listener before it accepts them (capped by
/// `net.core.somaxconn`, 4,096 on current kernels).
pub const BACKLOG: u32 = 4096;

/// Binds `addr` with a listen backlog of [`BACKLOG`]. tokio's default is 1,024: when a
/// fleet's Envoys all reconnect at once (a control-plane restart), the queue overflowed
/// and clients were reset and retried with backoff (`make bench-xds`, 4,000 connections
/// at once).
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std's and tokio's bind do on Unix: a restart can take the port back at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listeners_get_the_long_backlog() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), "--test-addr")
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        // `ss` shows a listening socket's backlog as its Send-Q.
        let out = std::process::Command::new("ss")
            .args(["-ltnH", &format!("sport = :{port}")])
            .output()
            .expect("ss (iproute2) runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let backlog: u32 = text
            .split_whitespace()
            .nth(2)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no backlog in {text:?}"));
        let cap = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(BACKLOG);
        assert_eq!(backlog, BACKLOG.min(cap));
        assert!(backlog > 1024 || cap <= 1024, "longer than tokio's default");
    }

    #[test]
    fn a_call_span_is_built_only_when_spans_are_exported() {
        // Logs alone (no exporter): the span is never made, whatever the peer sent.
        init_logging("trace", false);
        assert!(!spans_exported());
        let span = call_span(
            || panic!("a span was built with nothing to export it"),
            |_| Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert!(span.is_disabled());
    }
}
