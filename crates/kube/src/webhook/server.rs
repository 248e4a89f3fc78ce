//! HTTPS for the webhook: accept TCP, finish TLS, serve the axum router over HTTP/1.1
//! (the API server calls webhooks over HTTP/1.1 or 2; 1.1 is enough for one POST).
use std::{future::Future, sync::Arc};

use axum::{Json, Router, extract::State, routing::post};
use hyper_util::{rt::TokioIo, service::TowerToHyperService};
use kube::core::{DynamicObject, admission::AdmissionReview};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::index::SharedIndex;

/// Path the ValidatingWebhookConfiguration calls.
pub const VALIDATE_PATH: &str = "/validate";

pub fn router(index: Arc<SharedIndex>) -> Router {
    Router::new()
        .route(VALIDATE_PATH, post(validate))
        .with_state(index)
}

async fn validate(
    State(index): State<Arc<SharedIndex>>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    Json(super::admission::review(&index.read(), review))
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
            // The same limits as every other HTTP server (portcullis_telemetry::http):
            // a handshake or request head that dribbles in is cut off.
            let timeout = portcullis_telemetry::http::HEADER_READ_TIMEOUT;
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
