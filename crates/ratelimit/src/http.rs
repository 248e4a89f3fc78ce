//! The operator's HTTP endpoint: `/metrics` (Prometheus), `/healthz` and `/healthcheck`.
use std::future::Future;

use axum::{Router, extract::State, routing::get};
use prometheus::Registry;

pub fn router(registry: Registry) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(r): State<Registry>| async move { portcullis_process::render_metrics(&r) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        // envoyproxy/ratelimit's health path, so existing probes keep working.
        .route("/healthcheck", get(|| async { "OK" }))
        .with_state(registry)
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    registry: Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(registry))
        .with_graceful_shutdown(shutdown)
        .await
}
