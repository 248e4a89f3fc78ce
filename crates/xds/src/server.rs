//! The tonic service and the convenience server.

use std::future::Future;
use std::time::Duration;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use portcullis_tls::mtls::Transport;
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::cache::Cache;
use crate::delta::DeltaStream;
use crate::sotw::SotwStream;
use crate::stream::{self, StreamPeer};

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

    /// Wrap in the generated tonic server with message limits set.
    pub fn into_server(self) -> AggregatedDiscoveryServiceServer<AdsService> {
        AggregatedDiscoveryServiceServer::new(self)
            .max_decoding_message_size(crate::limits::MAX_REQUEST_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsService {
    type StreamAggregatedResourcesStream = ReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let peer = stream_peer(&request);
        Ok(Response::new(stream::spawn::<SotwStream>(
            self.cache.clone(),
            request.into_inner(),
            peer,
            self.shutdown.clone(),
        )))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let peer = stream_peer(&request);
        Ok(Response::new(stream::spawn::<DeltaStream>(
            self.cache.clone(),
            request.into_inner(),
            peer,
            self.shutdown.clone(),
        )))
    }
}

/// The ADS gRPC service over `cache`, ready for `Server::add_service`.
pub fn service(cache: Cache) -> AggregatedDiscoveryServiceServer<AdsService> {
    AdsService::new(cache).into_server()
}

/// Serve ADS (plaintext) on an already-bound listener until `shutdown` resolves. Open
/// streams are ended on shutdown so it completes promptly.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cache: Cache,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    serve_with(listener, &Transport::Plaintext, cache, shutdown).await
}

/// [`serve`] over `transport`. Over mTLS a stream may only subscribe as a node its
/// client certificate names (see [`portcullis_tls::mtls::node_grants`]).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    transport: &Transport,
    cache: Cache,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let signal = async move {
        shutdown.await;
        tracing::info!("xDS server shutting down");
        let _ = stop_tx.send(true);
    };
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .add_service(AdsService::with_shutdown(cache, stop_rx).into_server())
        .serve_with_incoming_shutdown(portcullis_tls::mtls::incoming(listener, transport), signal)
        .await
}
