//! The tonic service and the convenience server.

use std::future::Future;
use std::time::Duration;

use portcullis_tls::mtls::Transport;
use tokio::sync::watch;
use tonic::codegen::{Body, BoxFuture, Context, Poll, Service, StdError, http};
use tonic::{Request, Status, Streaming};
use tonic_prost::ProstCodec;

use crate::body::FramedBody;
use crate::cache::Cache;
use crate::delta::DeltaStream;
use crate::inbound::Inbound;
use crate::sotw::SotwStream;
use crate::stream::{self, Responses, StreamPeer};
use crate::wire::Framed;

fn stream_peer<T>(request: &Request<T>) -> StreamPeer {
    let peer = portcullis_tls::mtls::Peer::of(request);
    StreamPeer {
        addr: peer.addr,
        grants: peer.leaf().map(portcullis_tls::mtls::node_grants),
    }
}

/// Large RDS responses (10k routes) exceed tonic's 4 MiB default.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;
/// Detects dead Envoys (and keeps idle connections through middleboxes).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// ADS implementation over a [`Cache`].
#[derive(Clone)]
pub struct AdsService {
    cache: Cache,
    shutdown: watch::Receiver<bool>,
}

impl AdsService {
    /// Service whose streams only end when clients go away.
    pub fn new(cache: Cache) -> Self {
        // The sender is dropped at once: streams treat that as "never".
        let (_, shutdown) = watch::channel(false);
        AdsService { cache, shutdown }
    }

    /// Service whose open streams end once `shutdown` becomes `true`, so a
    /// graceful server shutdown is not held up by long-lived ADS streams.
    pub fn with_shutdown(cache: Cache, shutdown: watch::Receiver<bool>) -> Self {
        AdsService { cache, shutdown }
    }

    /// The gRPC service, with message limits set.
    pub fn into_server(self) -> AdsServer {
        AdsServer { ads: self }
    }
}

const SERVICE_NAME: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// The ADS gRPC service. Written out rather than generated: the generated server encodes
/// `DiscoveryResponse`, which owns a copy of every resource; this one writes
/// `wire::SotwResponse`/`wire::DeltaResponse`, which share the snapshot's encodings.
#[derive(Clone)]
pub struct AdsServer {
    ads: AdsService,
}

impl tonic::server::NamedService for AdsServer {
    const NAME: &'static str = SERVICE_NAME;
}

/// One ADS stream: read the requests ([`Inbound`]), and write the [`Responses`] they and
/// the snapshots call for as a [`FramedBody`] (the snapshot's bytes, not a per-stream
/// encoding).
async fn call_method<L, B>(
    ads: AdsService,
    req: http::Request<B>,
) -> http::Response<tonic::body::Body>
where
    L: stream::Logic,
    L::Request: prost::Message + Default,
    L::Response: Framed,
    Streaming<L::Request>: Send,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    // Like the generated server with no compression enabled: a compressed request is
    // refused, naming the encodings accepted.
    if let Some(enc) = req.headers().get("grpc-encoding")
        && enc.as_bytes() != b"identity"
    {
        return Status::unimplemented(format!(
            "Content is compressed with `{}` which isn't supported; send it uncompressed",
            String::from_utf8_lossy(enc.as_bytes())
        ))
        .into_http();
    }
    if ads.cache.copies_per_stream() {
        return baseline::<L, B>(ads, req).await;
    }
    let (parts, body) = req.into_parts();
    let inbound = Inbound::<B, L::Request>::new(body, crate::limits::MAX_REQUEST_SIZE);
    let request = Request::from_http(http::Request::from_parts(parts, inbound));
    let peer = stream_peer(&request);
    let responses =
        Responses::<L, _>::new(&ads.cache, request.into_inner(), peer, ads.shutdown.clone());
    let mut response = http::Response::new(tonic::body::Body::new(FramedBody::new(
        responses,
        MAX_MESSAGE_SIZE,
    )));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        tonic::metadata::GRPC_CONTENT_TYPE,
    );
    response
}

/// The benchmark's baseline ([`Cache::set_copy_per_stream`]): tonic's encoder, as the
/// generated server wrote responses before (each stream's encode buffer keeps the
/// capacity of the largest response it has written).
async fn baseline<L, B>(ads: AdsService, req: http::Request<B>) -> http::Response<tonic::body::Body>
where
    L: stream::Logic,
    L::Request: prost::Message + Default,
    L::Response: Framed,
    Streaming<L::Request>: Send,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    let codec = ProstCodec::<L::Response, L::Request>::default();
    let mut grpc = tonic::server::Grpc::new(codec).apply_max_message_size_config(
        Some(crate::limits::MAX_REQUEST_SIZE),
        Some(MAX_MESSAGE_SIZE),
    );
    grpc.streaming(Method::<L>(ads, std::marker::PhantomData), req)
        .await
}

struct Method<L>(AdsService, std::marker::PhantomData<L>);

impl<L> tonic::server::StreamingService<L::Request> for Method<L>
where
    L: stream::Logic,
    L::Request: prost::Message + Default,
    Streaming<L::Request>: Send,
{
    type Response = L::Response;
    type ResponseStream = Responses<L, Streaming<L::Request>>;
    type Future = std::future::Ready<Result<tonic::Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: Request<Streaming<L::Request>>) -> Self::Future {
        let peer = stream_peer(&request);
        std::future::ready(Ok(tonic::Response::new(Responses::new(
            &self.0.cache,
            request.into_inner(),
            peer,
            self.0.shutdown.clone(),
        ))))
    }
}

impl<B> Service<http::Request<B>> for AdsServer
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
        let ads = self.ads.clone();
        match req.uri().path() {
            SOTW_PATH => Box::pin(async move { Ok(call_method::<SotwStream, B>(ads, req).await) }),
            DELTA_PATH => {
                Box::pin(async move { Ok(call_method::<DeltaStream, B>(ads, req).await) })
            }
            _ => Box::pin(async move {
                let mut response = http::Response::new(tonic::body::Body::default());
                let headers = response.headers_mut();
                headers.insert(
                    Status::GRPC_STATUS,
                    (tonic::Code::Unimplemented as i32).into(),
                );
                headers.insert(
                    http::header::CONTENT_TYPE,
                    tonic::metadata::GRPC_CONTENT_TYPE,
                );
                Ok(response)
            }),
        }
    }
}

/// The ADS gRPC service over `cache`, ready for `Server::add_service`.
pub fn service(cache: Cache) -> AdsServer {
    AdsService::new(cache).into_server()
}

/// Serve ADS (plaintext) on an already-bound listener until `shutdown` resolves. Open
/// streams are ended on shutdown so it completes promptly.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cache: Cache,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, &Transport::Plaintext, cache, shutdown).await
}

/// [`serve`] over `transport`. Over mTLS a stream may only subscribe as a node its
/// client certificate names (see [`portcullis_tls::mtls::node_grants`]).
///
/// The transport is `portcullis_http2`, not tonic's (hyper's) server: each connected
/// Envoy then costs a few KiB instead of h2's ~37 KiB of buffers (docs/architecture.md).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    transport: &Transport,
    cache: Cache,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let signal = async move {
        shutdown.await;
        tracing::info!("xDS server shutting down");
        let _ = stop_tx.send(true);
    };
    let limits = portcullis_http2::Limits {
        keepalive_interval: KEEPALIVE_INTERVAL,
        keepalive_timeout: KEEPALIVE_TIMEOUT,
        ..portcullis_http2::Limits::default()
    };
    portcullis_http2::serve(
        portcullis_tls::mtls::incoming(listener, transport),
        AdsService::with_shutdown(cache, stop_rx).into_server(),
        limits,
        tonic::transport::server::Connected::connect_info,
        signal,
    )
    .await;
    Ok(())
}
