//! The gRPC face: `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` and
//! `grpc.health.v1.Health`, on a listener the caller bound.
use std::future::Future;
use std::sync::Arc;

use envoy_types::pb::envoy::service::ratelimit::v3::{
    RateLimitRequest, RateLimitResponse, rate_limit_service_server,
};
use portcullis_process::unary::UnaryServer;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::limiter::Limiter;

/// The tonic service over a [`Limiter`].
#[derive(Clone)]
pub struct RateLimitGrpc(pub Arc<Limiter>);

impl RateLimitGrpc {
    /// One ShouldRateLimit call, as [`RateLimitServer`] serves it.
    pub async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        // Never an error: store failures are decided by each limit's failure policy,
        // so Envoy's own `failure_mode_deny` only covers this service being unreachable.
        // A child of Envoy's rate-limit call span (`traceparent` in the metadata).
        let md = request.metadata();
        let span = portcullis_process::call_span(
            || tracing::info_span!("ratelimit.should_rate_limit", otel.kind = "server"),
            |k| md.get(k).and_then(|v| v.to_str().ok()),
        );
        let response = self
            .0
            .should_rate_limit(request.get_ref())
            .instrument(span)
            .await;
        Ok(Response::new(response))
    }
}

/// Serve the rate-limit and health services (plaintext) until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    limiter: Arc<Limiter>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    serve_with(
        listener,
        &portcullis_tls::mtls::Transport::Plaintext,
        limiter,
        shutdown,
    )
    .await
}

/// [`serve`] over `transport`.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    transport: &portcullis_tls::mtls::Transport,
    limiter: Arc<Limiter>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<RateLimitServer>().await;
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(UnaryServer(RateLimitGrpc(limiter)))
        .serve_with_incoming_shutdown(
            portcullis_tls::mtls::incoming(listener, transport),
            shutdown,
        )
        .await
}

impl portcullis_process::unary::UnaryMethod for RateLimitGrpc {
    const SERVICE: &'static str = rate_limit_service_server::SERVICE_NAME;
    const METHOD: &'static str = "ShouldRateLimit";
    type Request = RateLimitRequest;
    type Response = RateLimitResponse;

    // An inherent method, not the generated trait's: its future is boxed once by the
    // server, not again by `async_trait`.
    async fn call(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        self.should_rate_limit(request).await
    }
}

/// The rate-limit service as the generated `RateLimitServiceServer` serves it, with
/// small per-call buffers ([`portcullis_process::unary`]).
pub type RateLimitServer = UnaryServer<RateLimitGrpc>;
