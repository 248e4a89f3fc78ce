//! Drives one ADS stream: reads requests, watches snapshots, writes
//! responses. The protocol decisions live in `sotw`/`delta`.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
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

pub(crate) trait Logic: Send + Unpin + 'static {
    type Request: Send + 'static;
    type Response: Send + Unpin + 'static;
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

/// One thing a stream reacts to.
pub(crate) enum Input<R> {
    Request(R),
    Snapshot(Arc<Snapshot>),
}

/// What a stream does with one input: bounds, the protocol decision, then the
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

/// One ADS stream's responses, produced as the response body asks for them: each poll
/// reads shutdown, snapshot changes and requests (in that order), runs [`step`] on them,
/// and yields what to send. It has no task or channel of its own, so a connected Envoy
/// costs its protocol state and nothing more; while HTTP/2 flow control holds a response
/// back, nothing is read or queued behind it, and snapshots that arrive meanwhile are
/// taken as the latest one only. Ends after a closing error status, on shutdown, or when
/// the client ends its requests.
pub(crate) struct Responses<L: Logic, S> {
    logic: L,
    handle: StreamHandle,
    peer: StreamPeer,
    inbound: S,
    snapshots: WatchStream<Arc<Snapshot>>,
    /// `None` once the shutdown sender is gone: then shutdown never comes.
    shutdown: Option<WatchStream<bool>>,
    /// Responses of the last step not yet taken (the step's own vector, let go once
    /// empty so an idle stream holds none).
    queued: std::vec::IntoIter<L::Response>,
    /// The benchmark's baseline ([`Cache::set_copy_per_stream`]).
    copies: bool,
    done: bool,
}

impl<L: Logic, S> Responses<L, S> {
    pub(crate) fn new(
        cache: &Cache,
        inbound: S,
        peer: StreamPeer,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        // Dropping the handle (however the stream ends) removes it from the status table.
        let handle = cache.open_stream(L::PROTOCOL, peer.addr);
        let mut snapshots = cache.subscribe();
        let logic = L::new(snapshots.borrow_and_update().clone());
        tracing::debug!(
            stream = handle.stream_id,
            peer = ?peer.addr,
            mtls = peer.grants.is_some(),
            protocol = L::PROTOCOL.as_str(),
            "ADS stream opened"
        );
        let done = *shutdown.borrow();
        Responses {
            logic,
            handle,
            peer,
            inbound,
            snapshots: WatchStream::from_changes(snapshots),
            shutdown: Some(WatchStream::from_changes(shutdown)),
            queued: Vec::new().into_iter(),
            copies: cache.copies_per_stream(),
            done,
        }
    }

    /// Whether shutdown has been signalled; registers for the signal otherwise.
    fn shutting_down(&mut self, cx: &mut Context<'_>) -> bool {
        while let Some(signal) = &mut self.shutdown {
            match signal.poll_next_unpin(cx) {
                Poll::Ready(Some(true)) => return true,
                Poll::Ready(Some(false)) => {}
                Poll::Ready(None) => self.shutdown = None,
                Poll::Pending => return false,
            }
        }
        false
    }

    /// Runs one input through [`step`]; `Err` closes the stream with that status.
    fn take(&mut self, input: Input<L::Request>) -> Result<(), Status> {
        // Inputs are only taken once the queue is empty, so nothing is dropped here.
        debug_assert!(self.queued.len() == 0);
        self.queued = step(&mut self.logic, &mut self.handle, input, &self.peer)?.into_iter();
        Ok(())
    }
}

impl<L: Logic, S> Stream for Responses<L, S>
where
    S: Stream<Item = Result<L::Request, Status>> + Unpin,
{
    type Item = Result<L::Response, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = Pin::into_inner(self);
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if this.shutting_down(cx) {
                this.done = true;
                continue;
            }
            if let Some(mut resp) = this.queued.next() {
                if this.copies {
                    L::unshare(&mut resp);
                }
                if this.queued.len() == 0 {
                    this.queued = Vec::new().into_iter();
                }
                return Poll::Ready(Some(Ok(resp)));
            }
            let input = match this.snapshots.poll_next_unpin(cx) {
                Poll::Ready(Some(snapshot)) => Input::Snapshot(snapshot),
                // The cache is gone: nothing more will be served.
                Poll::Ready(None) => {
                    this.done = true;
                    continue;
                }
                Poll::Pending => match ready!(this.inbound.poll_next_unpin(cx)) {
                    None => {
                        this.done = true;
                        continue;
                    }
                    Some(Err(status)) => {
                        // An unreadable request (oversized, compressed, malformed): the
                        // client is told why, as for a request past a bound.
                        tracing::debug!(stream = this.handle.stream_id, node = %this.handle.node_id, %status, "ADS stream error");
                        this.done = true;
                        return Poll::Ready(Some(Err(status)));
                    }
                    Some(Ok(req)) => Input::Request(req),
                },
            };
            if let Err(status) = this.take(input) {
                this.done = true;
                return Poll::Ready(Some(Err(status)));
            }
        }
    }
}

impl<L: Logic, S> Drop for Responses<L, S> {
    fn drop(&mut self) {
        tracing::info!(stream = self.handle.stream_id, node = %self.handle.node_id, protocol = L::PROTOCOL.as_str(), "ADS stream closed");
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
