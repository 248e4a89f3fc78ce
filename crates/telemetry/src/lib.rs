//! Logging and metrics set-up shared by every Portcullis process.
//!
//! Logs go to stderr through `tracing` (plain text for people, JSON for collectors);
//! metrics live in one `prometheus::Registry` per process, served at `/metrics`.
#![forbid(unsafe_code)]

use prometheus::{Encoder, Registry, TextEncoder};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber. `RUST_LOG` overrides `default_filter`. Safe to call
/// more than once (later calls are ignored), which tests rely on.
pub fn init_logging(default_filter: &str, json: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init()
    } else {
        registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init()
    };
    drop(result);
}

/// Prometheus text exposition of everything in `registry`.
pub fn render_metrics(registry: &Registry) -> String {
    let mut buf = Vec::new();
    // Encoding into a Vec only fails on metric-family inconsistencies, which the
    // prometheus crate already refuses at registration.
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut buf) {
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
    axum::serve(listener, metrics_router(registry))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Accepted connections of `listener` with `TCP_NODELAY` set. gRPC servers fed their
/// own listener (`serve_with_incoming`) skip tonic's socket options; without this a
/// response split over two writes waits on the peer's delayed ACK (~40 ms).
pub fn incoming_nodelay(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|s| {
        let s = s?;
        s.set_nodelay(true)?;
        Ok(s)
    })
}
