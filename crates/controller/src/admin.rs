//! The control plane's admin HTTP endpoint: xDS state, object status, metrics, probes.
use std::sync::Arc;

use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use parking_lot::RwLock;
use portcullis_xds::Cache;
use prometheus::Registry;

use crate::file_source::Board;

#[derive(Clone)]
pub struct AdminState {
    pub cache: Cache,
    pub registry: Registry,
    pub board: Arc<RwLock<Board>>,
    /// Set once a snapshot is being served (from the state file or the source).
    pub ready: Arc<std::sync::atomic::AtomicBool>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route(
            "/debug/xds",
            get(|State(s): State<AdminState>| async move { Json(s.cache.debug()) }),
        )
        .route(
            "/debug/objects",
            get(|State(s): State<AdminState>| async move { Json(s.board.read().clone()) }),
        )
        .route(
            "/metrics",
            get(|State(s): State<AdminState>| async move {
                portcullis_telemetry::render_metrics(&s.registry)
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(state)
}

async fn ready(State(s): State<AdminState>) -> impl IntoResponse {
    if s.ready.load(std::sync::atomic::Ordering::Acquire) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no snapshot yet")
    }
}
