//! The demo backend: answers every request with its own name, the method, path and
//! request headers as JSON, so routing can be seen (and asserted) from the client side.
use std::{collections::BTreeMap, future::Future};

use axum::{
    Json, Router,
    extract::{Request, State},
};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    name: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new().fallback(echo).with_state(name);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn echo(State(name): State<String>, req: Request) -> Json<Value> {
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    Json(json!({
        "name": name,
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query().unwrap_or(""),
        "headers": headers,
    }))
}
