//! Shared pieces of the authz integration tests: the service on its real gRPC server,
//! Check requests as Envoy sends them, and a controllable introspection endpoint.
#![allow(dead_code)] // each test file uses a different subset

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use clap::Parser;
use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse, attribute_context,
    authorization_client::AuthorizationClient,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub struct Service {
    pub grpc: SocketAddr,
    pub metrics: SocketAddr,
    pub client: AuthorizationClient<Channel>,
    _stop: oneshot::Sender<()>,
}

/// `portcullis authz` with these flags, on kernel-chosen ports, ready.
pub async fn start(flags: &[&str]) -> Service {
    let args = portcullis_authz::Args::parse_from(["authz"].iter().chain(flags).copied());
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (g, m) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        portcullis_authz::run(args, grpc, http, async move {
            let _ = stopped.await;
        })
        .await
        .expect("authz runs");
    });
    let client = AuthorizationClient::connect(format!("http://{g}"))
        .await
        .expect("authz gRPC reachable");
    Service {
        grpc: g,
        metrics: m,
        client,
        _stop: stop,
    }
}

/// A Check as Envoy sends it: lower-case headers, the route's context extensions.
pub fn check_request(headers: &[(&str, &str)], ext: &[(&str, &str)]) -> CheckRequest {
    let map = |kv: &[(&str, &str)]| -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                http: Some(attribute_context::HttpRequest {
                    method: "GET".into(),
                    path: "/".into(),
                    headers: map(headers),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions: map(ext),
            ..Default::default()
        }),
    }
}

pub fn http_status(r: &CheckResponse) -> u16 {
    use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
    match &r.http_response {
        Some(HttpResponse::OkResponse(_)) => 200,
        Some(HttpResponse::DeniedResponse(d)) => d.status.as_ref().map_or(0, |s| s.code as u16),
        _ => 0,
    }
}

/// One sample of `/metrics`, by its full name with labels as rendered.
pub async fn metric(svc: &Service, series: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", svc.metrics))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// An RFC 7662 endpoint on a real HTTP server: `active` for the tokens in `valid`,
/// after `delay_ms`; `fail` makes it answer 500. Counts every call.
pub struct Idp {
    pub url: String,
    pub calls: Arc<AtomicUsize>,
    pub delay_ms: Arc<AtomicU64>,
    pub fail: Arc<std::sync::atomic::AtomicBool>,
}

pub async fn idp(delay: Duration, valid: &[&str]) -> Idp {
    use axum::{Form, Json, Router, extract::State, http::StatusCode, routing::post};
    #[derive(Clone)]
    struct St {
        calls: Arc<AtomicUsize>,
        delay_ms: Arc<AtomicU64>,
        fail: Arc<std::sync::atomic::AtomicBool>,
        valid: Arc<Vec<String>>,
    }
    async fn answer(
        State(s): State<St>,
        Form(form): Form<HashMap<String, String>>,
    ) -> Result<Json<serde_json::Value>, StatusCode> {
        s.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(s.delay_ms.load(Ordering::SeqCst))).await;
        if s.fail.load(Ordering::SeqCst) {
            return Err(StatusCode::INTERNAL_SERVER_ERROR);
        }
        let token = form.get("token").cloned().unwrap_or_default();
        Ok(Json(if s.valid.contains(&token) {
            serde_json::json!({"active": true, "sub": format!("user-{token}"), "scope": "a b", "account": "acme"})
        } else {
            serde_json::json!({"active": false})
        }))
    }
    let st = St {
        calls: Arc::new(AtomicUsize::new(0)),
        delay_ms: Arc::new(AtomicU64::new(delay.as_millis() as u64)),
        fail: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        valid: Arc::new(valid.iter().map(|s| s.to_string()).collect()),
    };
    let idp = Idp {
        url: String::new(),
        calls: st.calls.clone(),
        delay_ms: st.delay_ms.clone(),
        fail: st.fail.clone(),
    };
    let app = Router::new()
        .route("/introspect", post(answer))
        .with_state(st);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/introspect", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Idp { url, ..idp }
}

pub fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}
