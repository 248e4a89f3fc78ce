//! Drives one ADS stream: reads requests, watches snapshots, writes
//! responses. The protocol decisions live in `sotw`/`delta`.

use std::net::SocketAddr;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, watch};
use tonic::Status;

use crate::cache::{Cache, StreamHandle};
use crate::delta::DeltaStream;
use crate::nodes::Protocol;
use crate::snapshot::Snapshot;
use crate::sotw::SotwStream;
use crate::subscription::Output;
use crate::wire::{DeltaResponse, SotwResponse};

/// Who opened a stream: the address, and over mTLS the node ids the client certificate
/// grants (`None`: plaintext, no binding).
#[derive(Clone, Debug, Default)]
pub(crate) struct StreamPeer {
    pub addr: Option<SocketAddr>,
    pub grants: Option<Vec<portcullis_tls::mtls::NodeGrant>>,
}

impl StreamPeer {
    /// Refuses a request whose node the certificate does not name. The node id is the
    /// request's, or the stream's for requests that leave it out (Envoy sends it on
    /// the first one only).
    fn denied(&self, asked: Option<&Node>, stream_node: &str) -> Option<Status> {
        let grants = self.grants.as_ref()?;
        let id = asked
            .map(|n| n.id.as_str())
            .filter(|id| !id.is_empty())
            .unwrap_or(stream_node);
        if grants.iter().any(|g| g.allows(id)) {
            return None;
        }
        let named: Vec<String> = grants
            .iter()
            .map(|g| match g {
                portcullis_tls::mtls::NodeGrant::Exact(id) => id.clone(),
                portcullis_tls::mtls::NodeGrant::Prefix(p) => format!("{p}*"),
            })
            .collect();
        Some(Status::permission_denied(format!(
            "the client certificate names node {}, not {id:?}; a client subscribes only as the \
             node its certificate names (URI SAN {}<node-id>)",
            if named.is_empty() {
                "none".to_string()
            } else {
                named.join(", ")
            },
            portcullis_contract::mtls::NODE_URI_PREFIX,
        )))
    }
}

/// Responses buffered per stream before the stream task waits on the client.
const OUTBOUND_BUFFER: usize = 16;

/// What the stream task hands the response body. Boxed: the channel allocates slots
/// in blocks of 32 whatever its bound, and a `Status` is ~200 bytes, so unboxed every
/// connected Envoy would hold ~6 KiB of empty slots.
pub(crate) type Outbound<R> = Box<Result<R, Status>>;

pub(crate) trait Logic: Send + 'static {
    type Request: Send + 'static;
    type Response: Send + 'static;
    const PROTOCOL: Protocol;
    fn new(snapshot: Arc<Snapshot>) -> Self;
    fn node(req: &Self::Request) -> Option<&Node>;
    /// Refuses a request past the stream's bounds ([`crate::limits`]).
    fn check(&self, req: &Self::Request) -> Result<(), Status>;
    fn on_request(&mut self, req: Self::Request) -> Output<Self::Response>;
    fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Output<Self::Response>;
    /// Give a response its own copy of the resources (the benchmark's baseline).
    fn unshare(resp: &mut Self::Response);
}

impl Logic for SotwStream {
    type Request = DiscoveryRequest;
    type Response = SotwResponse;
    const PROTOCOL: Protocol = Protocol::Sotw;
    fn new(snapshot: Arc<Snapshot>) -> Self {
        SotwStream::new(snapshot)
    }
    fn node(req: &DiscoveryRequest) -> Option<&Node> {
        req.node.as_ref()
    }
    fn check(&self, req: &DiscoveryRequest) -> Result<(), Status> {
        let (known, is_new) = self.type_count(&req.type_url);
        crate::limits::check_sotw(req, known, is_new)
    }
    fn on_request(&mut self, req: DiscoveryRequest) -> Output<SotwResponse> {
        SotwStream::on_request(self, req)
    }
    fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Output<SotwResponse> {
        SotwStream::on_snapshot(self, snapshot)
    }
    fn unshare(resp: &mut SotwResponse) {
        resp.unshare();
    }
}

impl Logic for DeltaStream {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaResponse;
    const PROTOCOL: Protocol = Protocol::Delta;
    fn new(snapshot: Arc<Snapshot>) -> Self {
        DeltaStream::new(snapshot)
    }
    fn node(req: &DeltaDiscoveryRequest) -> Option<&Node> {
        req.node.as_ref()
    }
    fn check(&self, req: &DeltaDiscoveryRequest) -> Result<(), Status> {
        let (known, is_new, subscribed) = self.type_count(&req.type_url);
        crate::limits::check_delta(req, known, is_new, subscribed)
    }
    fn on_request(&mut self, req: DeltaDiscoveryRequest) -> Output<DeltaResponse> {
        DeltaStream::on_request(self, req)
    }
    fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Output<DeltaResponse> {
        DeltaStream::on_snapshot(self, snapshot)
    }
    fn unshare(resp: &mut DeltaResponse) {
        resp.unshare();
    }
}

/// Start the stream task reading `inbound`; its responses (and a closing error status)
/// come out of the returned channel, for the response body.
pub(crate) fn spawn<L: Logic, S>(
    cache: Cache,
    inbound: S,
    peer: StreamPeer,
    shutdown: watch::Receiver<bool>,
) -> mpsc::Receiver<Outbound<L::Response>>
where
    S: Stream<Item = Result<L::Request, Status>> + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel(OUTBOUND_BUFFER);
    tokio::spawn(run::<L, S>(cache, inbound, tx, peer, shutdown));
    rx
}

/// One thing a stream reacts to.
pub(crate) enum Input<R> {
    Request(R),
    Snapshot(Arc<Snapshot>),
}

/// What the stream task does with one input: bounds, the protocol decision, then the
/// node's entry in the status table. `Err`: the request is past a bound and the stream
/// is closed with that status. Shared with [`crate::session`], which drives it without
/// a transport.
pub(crate) fn step<L: Logic>(
    logic: &mut L,
    handle: &mut StreamHandle,
    input: Input<L::Request>,
    peer: &StreamPeer,
) -> Result<Vec<L::Response>, Status> {
    let out = match input {
        Input::Snapshot(snapshot) => logic.on_snapshot(snapshot),
        Input::Request(req) => {
            handle.seen();
            let node_ok = L::node(&req).is_none_or(|n| {
                n.id.len() <= crate::limits::MAX_NODE_ID_LEN
                    && (handle.node_id.is_empty() || n.id.is_empty() || n.id == handle.node_id)
            });
            let verdict = if !node_ok {
                Err(Status::invalid_argument(
                    "node id too long, or changed on an open stream; open a new stream per node",
                ))
            } else if let Some(status) = peer.denied(L::node(&req), &handle.node_id) {
                Err(status)
            } else {
                logic.check(&req)
            };
            if let Err(status) = verdict {
                let peer = peer.addr;
                tracing::warn!(stream = handle.stream_id, node = %handle.node_id, ?peer, %status, "ADS request refused; closing the stream");
                return Err(status);
            }
            if let Some(node) = L::node(&req) {
                if handle.node_id.is_empty() && !node.id.is_empty() {
                    tracing::info!(
                        stream = handle.stream_id,
                        node = node.id,
                        cluster = node.cluster,
                        peer = ?peer.addr,
                        protocol = L::PROTOCOL.as_str(),
                        "Envoy connected"
                    );
                }
                handle.set_node(&node.id, &node.cluster);
            }
            logic.on_request(req)
        }
    };
    handle.apply(&out.events);
    Ok(out.responses)
}

/// Resolves once shutdown is signalled; never if the signal can't come.
async fn shutdown_signalled(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn run<L: Logic, S>(
    cache: Cache,
    mut inbound: S,
    tx: mpsc::Sender<Outbound<L::Response>>,
    peer: StreamPeer,
    mut shutdown: watch::Receiver<bool>,
) where
    S: Stream<Item = Result<L::Request, Status>> + Unpin,
{
    // Dropping the handle (however this function ends) removes the stream
    // from the status table.
    let mut handle = cache.open_stream(L::PROTOCOL, peer.addr);
    let mut snapshots = cache.subscribe();
    let mut logic = L::new(snapshots.borrow_and_update().clone());
    let protocol = L::PROTOCOL.as_str();
    tracing::debug!(
        stream = handle.stream_id,
        peer = ?peer.addr,
        mtls = peer.grants.is_some(),
        protocol,
        "ADS stream opened"
    );
    loop {
        let input = tokio::select! {
            biased;
            () = shutdown_signalled(&mut shutdown) => break,
            () = tx.closed() => break,
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break;
                }
                Input::Snapshot(snapshots.borrow_and_update().clone())
            }
            msg = inbound.next() => match msg {
                None => break,
                Some(Err(status)) => {
                    // An unreadable request (oversized, compressed, malformed): the
                    // client is told why, as for a request past a bound.
                    tracing::debug!(stream = handle.stream_id, node = %handle.node_id, %status, "ADS stream error");
                    let _ = tx.send(Box::new(Err(status))).await;
                    break;
                }
                Some(Ok(req)) => Input::Request(req),
            },
        };
        let responses = match step(&mut logic, &mut handle, input, &peer) {
            Ok(responses) => responses,
            Err(status) => {
                let _ = tx.send(Box::new(Err(status))).await;
                break;
            }
        };
        for mut resp in responses {
            if cache.copies_per_stream() {
                L::unshare(&mut resp);
            }
            tokio::select! {
                biased;
                () = shutdown_signalled(&mut shutdown) => return,
                sent = tx.send(Box::new(Ok(resp))) => if sent.is_err() {
                    return;
                },
            }
        }
    }
    tracing::info!(stream = handle.stream_id, node = %handle.node_id, protocol, "ADS stream closed");
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
