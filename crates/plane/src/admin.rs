//! The control plane's admin HTTP endpoint: the web console ([`crate::console`]), xDS
//! state, object status, `explain`, metrics, probes.
use axum::{
    Json, Router,
    extract::{Query, State},
    http::StatusCode,
    response::IntoResponse,
    routing::get,
};
use portcullis_api::explain;

pub use crate::admin_state::AdminState;

/// The admin endpoint: the console (`console`: its signal source and allowed host names)
/// and the JSON/metrics/probe endpoints.
pub fn router(state: AdminState, console: crate::console::Console) -> Router {
    Router::new()
        .merge(crate::console::router(state.clone(), console))
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
                portcullis_process::render_metrics(&s.registry)
            }),
        )
        .route("/debug/explain", get(explain_request))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(state)
}

/// `GET /debug/explain?method=GET&url=http://host/path&header=name:%20value…`: which
/// Route serves the request and why, as JSON (`portcullis explain --admin-addr`).
async fn explain_request(
    State(s): State<AdminState>,
    Query(params): Query<Vec<(String, String)>>,
) -> impl IntoResponse {
    let mut request = explain::Request::default();
    for (k, v) in params {
        match k.as_str() {
            "method" => request.method = v,
            "url" => request.target = v,
            "header" => match v.split_once(':') {
                Some((name, value)) => request
                    .headers
                    .push((name.trim().to_string(), value.trim().to_string())),
                None => {
                    return (
                        StatusCode::BAD_REQUEST,
                        format!("header {v:?} is not name: value"),
                    )
                        .into_response();
                }
            },
            other => {
                return (
                    StatusCode::BAD_REQUEST,
                    format!("unknown parameter {other:?}; use method, url and header"),
                )
                    .into_response();
            }
        }
    }
    if request.method.is_empty() {
        request.method = "GET".into();
    }
    if request.target.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            "url is required, e.g. url=/v1/items",
        )
            .into_response();
    }
    let model = s.model.read().clone();
    Json(explain::explain(&model, &request)).into_response()
}

async fn ready(State(s): State<AdminState>) -> impl IntoResponse {
    if s.ready.load(std::sync::atomic::Ordering::Acquire) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no snapshot yet")
    }
}
