//! HTTPS for the webhook: accept TCP, finish TLS, serve the axum router over HTTP/1.1
//! (the API server calls webhooks over HTTP/1.1 or 2; 1.1 is enough for one POST).
use std::{future::Future, sync::Arc};

use axum::{Json, Router, extract::State, routing::post};
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use kube::core::{DynamicObject, admission::AdmissionReview};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::{
    index::SharedIndex,
    metrics::{KubeMetrics, kind_label},
};

/// Path the ValidatingWebhookConfiguration calls.
pub const VALIDATE_PATH: &str = "/validate";

pub fn router(index: Arc<SharedIndex>, metrics: KubeMetrics) -> Router {
    Router::new()
        .route(VALIDATE_PATH, post(validate))
        .with_state((index, metrics))
}

async fn validate(
    State((index, metrics)): State<(Arc<SharedIndex>, KubeMetrics)>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let (kind, operation) = match &review.request {
        Some(r) => (kind_label(&r.kind.kind), operation_label(&r.operation)),
        None => ("other", "other"),
    };
    let timer = metrics.webhook_review_seconds.start_timer();
    let answer = super::admission::review(&index.read(), review);
    timer.observe_duration();
    let verdict = match &answer.response {
        None => "invalid",
        Some(r) if !r.allowed => {
            // `AdmissionResponse::invalid`: the review itself could not be read.
            if r.uid.is_empty() {
                "invalid"
            } else {
                "denied"
            }
        }
        Some(r) if r.warnings.as_ref().is_some_and(|w| !w.is_empty()) => "warned",
        Some(_) => "allowed",
    };
    metrics
        .webhook_reviews
        .with_label_values(&[kind, operation, verdict])
        .inc();
    Json(answer)
}

fn operation_label(op: &kube::core::admission::Operation) -> &'static str {
    use kube::core::admission::Operation;
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// Serves `router` over TLS until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook accept failed");
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        // One task per connection: a slow TLS handshake must not block the others.
        tokio::spawn(async move {
            // The same limits as every other HTTP server (portcullis_process::http):
            // a handshake or request head that dribbles in is cut off.
            let timeout = portcullis_process::http::HEADER_READ_TIMEOUT;
            let stream = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "webhook TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "webhook TLS handshake timed out");
                    return;
                }
            };
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(timeout)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "webhook connection ended with an error");
            }
        });
    }
}
