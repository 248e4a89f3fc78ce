//! The gRPC face: `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` and
//! `grpc.health.v1.Health`, on a listener the caller bound.
use std::future::Future;
use std::sync::Arc;

use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use tonic::codec::{BufferSettings, Codec};
use tonic::codegen::{Body, BoxFuture, Context, Poll, Service, StdError, http};
use tonic::{Request, Response, Status};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};
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
        .add_service(RateLimitServer(RateLimitGrpc(limiter)))
        .serve_with_incoming_shutdown(
            portcullis_tls::mtls::incoming(listener, transport),
            shutdown,
        )
        .await
}

/// The gRPC method path Envoy calls.
const SHOULD_RATE_LIMIT: &str = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

/// Bytes each call's request and response buffers start with. tonic's default, 8 KiB,
/// is a "large" request to glibc's malloc, and each one first merges every small free
/// chunk (`malloc_consolidate`): with two per call, malloc took a fifth of the
/// service's CPU under load. A descriptor request and its answer are a few hundred
/// bytes; a larger one grows its buffer as before.
const CALL_BUFFER: usize = 512;

/// The rate-limit service as the generated `RateLimitServiceServer` serves it (same
/// name, path, message limits and statuses), with [`CALL_BUFFER`]-sized buffers.
#[derive(Clone)]
pub struct RateLimitServer(pub RateLimitGrpc);

impl tonic::server::NamedService for RateLimitServer {
    const NAME: &'static str = "envoy.service.ratelimit.v3.RateLimitService";
}

impl<B> Service<http::Request<B>> for RateLimitServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != SHOULD_RATE_LIMIT {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let method = ShouldRateLimit(self.0.clone());
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(SmallCodec);
            Ok(grpc.unary(method, req).await)
        })
    }
}

struct ShouldRateLimit(RateLimitGrpc);

impl tonic::server::UnaryService<RateLimitRequest> for ShouldRateLimit {
    type Response = RateLimitResponse;
    type Future = BoxFuture<Response<RateLimitResponse>, Status>;

    fn call(&mut self, request: Request<RateLimitRequest>) -> Self::Future {
        // An inherent method, not the generated trait's: its future is boxed here
        // once, not again by `async_trait`.
        let service = self.0.clone();
        Box::pin(async move { service.should_rate_limit(request).await })
    }
}

/// prost's codec with [`CALL_BUFFER`]-sized buffers.
struct SmallCodec;

impl Codec for SmallCodec {
    type Encode = RateLimitResponse;
    type Decode = RateLimitRequest;
    type Encoder = ProstEncoder<RateLimitResponse>;
    type Decoder = ProstDecoder<RateLimitRequest>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<RateLimitResponse, RateLimitRequest>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<RateLimitResponse, RateLimitRequest>::raw_decoder(settings())
    }
}

fn settings() -> BufferSettings {
    // The yield threshold as tonic's default (32 KiB): only the buffer size changes.
    BufferSettings::new(CALL_BUFFER, 32 * 1024)
}
