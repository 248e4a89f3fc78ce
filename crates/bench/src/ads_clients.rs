//! Lightweight ADS clients for the control-plane memory benchmarks. Each opens its own
//! connection and SotW stream like an Envoy, subscribes CDS, EDS (every cluster by name),
//! LDS and RDS, ACKs each response, and then holds the stream open until told to stop,
//! so the server carries every stream at once. Responses are read without decoding the
//! resources (only version, type and nonce), so thousands of clients fit in one process.
//! Each is a tonic client, or (`Client::Frames`) one that writes HTTP/2 frames itself
//! (`ads_frames`), cheap enough that a storm's time is the server's.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use envoy_types::pb::envoy::{
    config::core::v3::Node,
    service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest},
};
use portcullis_xds::type_url;

use crate::ads_frames::{self, Held};
use crate::ads_wire::Requests;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::http;
use tonic_prost::ProstCodec;

pub(crate) const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
pub(crate) const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// The fields of a `DeltaDiscoveryResponse` an ACK needs.
#[derive(Clone, PartialEq, prost::Message)]
struct LightDelta {
    #[prost(string, tag = "4")]
    type_url: String,
    #[prost(string, tag = "5")]
    nonce: String,
}

/// The fields of a `DiscoveryResponse` an ACK needs; the resources are skipped.
#[derive(Clone, PartialEq, prost::Message)]
struct Light {
    #[prost(string, tag = "1")]
    version_info: String,
    #[prost(string, tag = "4")]
    type_url: String,
    #[prost(string, tag = "5")]
    nonce: String,
}

/// Why clients had to reconnect: each error's text, with how often it came.
type Reasons = Arc<Mutex<BTreeMap<String, u32>>>;

/// Which ADS client [`Clients::start`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// tonic's: HTTP/2 by h2, each response decoded whole (its resources skipped).
    Tonic,
    /// [`ads_frames`]: frames written and read by hand, resources skipped unbuffered.
    Frames,
}

/// Clients holding their streams; dropping this (or [`Clients::stop`]) closes them.
pub struct Clients {
    stop: watch::Sender<bool>,
    ready: mpsc::Receiver<anyhow::Result<u32>>,
    tasks: Vec<JoinHandle<()>>,
    pending: usize,
    reasons: Reasons,
}

impl Clients {
    pub fn new() -> Clients {
        let (stop, _) = watch::channel(false);
        let (_, ready) = mpsc::channel(1);
        Clients {
            stop,
            ready,
            tasks: Vec::new(),
            pending: 0,
            reasons: Reasons::default(),
        }
    }

    /// Start clients `ids` against `addr`; they connect all at once, over SotW or
    /// (`delta`) incremental xDS.
    pub fn start(
        &mut self,
        addr: &str,
        ids: std::ops::Range<usize>,
        clusters: Arc<Vec<String>>,
        delta: bool,
        client: Client,
    ) -> anyhow::Result<()> {
        let (tx, rx) = mpsc::channel(ids.len().max(1));
        self.pending = ids.len();
        self.ready = rx;
        let sock: std::net::SocketAddr = addr.parse()?;
        let per_type: Vec<_> = TYPES.iter().map(|t| (*t, names(t, &clusters))).collect();
        let requests = Arc::new(Requests::new(delta, &per_type));
        let path = if delta { DELTA_PATH } else { SOTW_PATH };
        for i in ids {
            let (addr, clusters, tx) = (addr.to_owned(), clusters.clone(), tx.clone());
            let (stop, why) = (self.stop.subscribe(), self.reasons.clone());
            let requests = requests.clone();
            self.tasks.push(tokio::spawn(async move {
                match (client, delta) {
                    (Client::Frames, _) => {
                        let open = || {
                            let node = node(i).unwrap_or_default();
                            ads_frames::subscribe(sock, path, node, &TYPES, requests.clone())
                        };
                        retrying(i, open, tx, stop, why).await;
                    }
                    (Client::Tonic, true) => {
                        retrying(i, || subscribe_delta(&addr, i, &clusters), tx, stop, why).await
                    }
                    (Client::Tonic, false) => {
                        retrying(i, || subscribe(&addr, i, &clusters), tx, stop, why).await
                    }
                }
            }));
        }
        Ok(())
    }

    /// Start `count` connections to `addr` that hold no stream: each makes one call the
    /// server refuses (so the server has taken the connection on), then stays idle. What
    /// they cost the server is the HTTP/2 transport's own, the floor under an ADS client.
    pub fn start_idle(&mut self, addr: &str, count: usize) {
        let (tx, rx) = mpsc::channel(count.max(1));
        self.pending = count;
        self.ready = rx;
        for i in 0..count {
            let (addr, tx) = (addr.to_owned(), tx.clone());
            let (stop, why) = (self.stop.subscribe(), self.reasons.clone());
            self.tasks.push(tokio::spawn(async move {
                retrying(i, || idle(&addr), tx, stop, why).await;
            }));
        }
    }

    /// Wait until every client of the last [`Clients::start`] has ACKed all four types
    /// (of [`Clients::start_idle`]: has made its call);
    /// returns how many reconnects (with backoff) that took.
    pub async fn all_acked(&mut self) -> anyhow::Result<u32> {
        let mut retried = 0;
        for _ in 0..self.pending {
            match self.ready.recv().await {
                Some(r) => retried += r?,
                None => anyhow::bail!("a client task ended"),
            }
        }
        Ok(retried)
    }

    /// Why clients reconnected since the last call, most frequent first.
    pub fn take_reasons(&self) -> Vec<(String, u32)> {
        let taken = std::mem::take(&mut *self.reasons.lock().expect("not poisoned"));
        let mut list: Vec<_> = taken.into_iter().collect();
        list.sort_by_key(|r| std::cmp::Reverse(r.1));
        list
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

impl Default for Clients {
    fn default() -> Self {
        Clients::new()
    }
}

/// Like an Envoy, client `i` whose connection fails retries with backoff and jitter;
/// once `open` succeeds it holds what it opened until `stop`.
async fn retrying<T, F: Future<Output = anyhow::Result<T>>>(
    i: usize,
    open: impl Fn() -> F,
    ready: mpsc::Sender<anyhow::Result<u32>>,
    mut stop: watch::Receiver<bool>,
    reasons: Reasons,
) {
    let mut retries = 0;
    loop {
        match open().await {
            Ok(held) => {
                let _ = ready.send(Ok(retries)).await;
                // Holding a stream keeps both directions of the RPC open.
                let _ = stop.wait_for(|s| *s).await;
                drop(held);
                return;
            }
            Err(e) if retries < 8 => {
                retries += 1;
                let why: String = format!("{e:#}").chars().take(160).collect();
                *reasons
                    .lock()
                    .expect("not poisoned")
                    .entry(why)
                    .or_default() += 1;
                let backoff = 50u64 << retries.min(6);
                let jitter = (i as u64 * 7919 + u64::from(retries) * 104_729) % backoff;
                tokio::time::sleep(Duration::from_millis(jitter)).await;
                if retries == 8 {
                    let _ = ready.send(Err(e)).await;
                    return;
                }
            }
            Err(e) => {
                let _ = ready.send(Err(e)).await;
                return;
            }
        }
    }
}

type Grpc = tonic::client::Grpc<tonic::transport::Channel>;

/// A new connection to `addr`, ready for calls.
async fn connect(addr: &str) -> anyhow::Result<Grpc> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(30))
        .connect()
        .await?;
    let mut grpc = Grpc::new(channel).max_decoding_message_size(portcullis_xds::MAX_MESSAGE_SIZE);
    grpc.ready().await?;
    Ok(grpc)
}

/// The types every client subscribes, in the order it asks for them.
pub const TYPES: [&str; 4] = [
    type_url::CLUSTER,
    type_url::CLUSTER_LOAD_ASSIGNMENT,
    type_url::LISTENER,
    type_url::ROUTE_CONFIGURATION,
];

/// The names a client subscribes for type `t` (none: all of them).
pub(crate) fn names(t: &str, clusters: &[String]) -> Vec<String> {
    match t {
        type_url::CLUSTER_LOAD_ASSIGNMENT => clusters.to_vec(),
        type_url::ROUTE_CONFIGURATION => vec!["portcullis".into()],
        _ => Vec::new(),
    }
}

/// Client `i`'s node, sent on its first request.
fn node(i: usize) -> Option<Node> {
    Some(Node {
        id: format!("storm-{i}"),
        cluster: "bench".into(),
        ..Default::default()
    })
}

/// A connection that has made one (refused) call and holds no stream.
async fn idle(addr: &str) -> anyhow::Result<Grpc> {
    let mut grpc = connect(addr).await?;
    let refused = grpc
        .unary(
            tonic::Request::new(DiscoveryRequest::default()),
            http::uri::PathAndQuery::from_static("/bench.Idle/Nothing"),
            ProstCodec::<DiscoveryRequest, Light>::default(),
        )
        .await;
    match refused {
        Err(status) if status.code() == tonic::Code::Unimplemented => Ok(grpc),
        other => anyhow::bail!("an unknown method was answered {other:?}"),
    }
}

/// Subscribe the four types over SotW and ACK every response, as Envoy does.
async fn subscribe(addr: &str, i: usize, clusters: &[String]) -> anyhow::Result<Held> {
    let first = TYPES.iter().enumerate().map(|(k, t)| DiscoveryRequest {
        node: if k == 0 { node(i) } else { None },
        type_url: (*t).into(),
        resource_names: names(t, clusters),
        ..Default::default()
    });
    let clusters = clusters.to_vec();
    open(addr, SOTW_PATH, first, move |resp: Light| {
        DiscoveryRequest {
            resource_names: names(&resp.type_url, &clusters),
            type_url: resp.type_url,
            version_info: resp.version_info,
            response_nonce: resp.nonce,
            ..Default::default()
        }
    })
    .await
}

/// [`subscribe`] over incremental xDS: the same four types and names, each response
/// ACKed by its nonce.
async fn subscribe_delta(addr: &str, i: usize, clusters: &[String]) -> anyhow::Result<Held> {
    let first = TYPES
        .iter()
        .enumerate()
        .map(|(k, t)| DeltaDiscoveryRequest {
            node: if k == 0 { node(i) } else { None },
            type_url: (*t).into(),
            resource_names_subscribe: names(t, clusters),
            ..Default::default()
        });
    open(addr, DELTA_PATH, first, |resp: LightDelta| {
        DeltaDiscoveryRequest {
            type_url: resp.type_url,
            response_nonce: resp.nonce,
            ..Default::default()
        }
    })
    .await
}

/// What the clients need of a response: the type it answers.
trait Answer {
    fn type_url(&self) -> &str;
}

impl Answer for Light {
    fn type_url(&self) -> &str {
        &self.type_url
    }
}

impl Answer for LightDelta {
    fn type_url(&self) -> &str {
        &self.type_url
    }
}

/// Opens a stream on a new connection with the `first` requests and sends `ack` of each
/// response. Returns once every type in [`TYPES`] was answered; a task then goes on
/// ACKing later responses until the returned handle is dropped.
async fn open<Req, Resp>(
    addr: &str,
    path: &'static str,
    first: impl Iterator<Item = Req>,
    ack: impl Fn(Resp) -> Req + Send + 'static,
) -> anyhow::Result<Held>
where
    Req: prost::Message + Send + 'static,
    Resp: prost::Message + Default + Answer + Send + 'static,
{
    let mut grpc = connect(addr).await?;
    let (tx, rx) = mpsc::channel(8);
    for req in first {
        tx.send(req).await?;
    }
    let mut stream = grpc
        .streaming(
            tonic::Request::new(ReceiverStream::new(rx)),
            http::uri::PathAndQuery::from_static(path),
            ProstCodec::<Req, Resp>::default(),
        )
        .await?
        .into_inner();
    let mut answered = std::collections::BTreeSet::new();
    while answered.len() < TYPES.len() {
        let Some(resp) = stream.message().await? else {
            anyhow::bail!("stream closed")
        };
        answered.insert(resp.type_url().to_owned());
        tx.send(ack(resp)).await?;
    }
    Ok(Held::new(tokio::spawn(async move {
        while let Ok(Some(resp)) = stream.message().await {
            if tx.send(ack(resp)).await.is_err() {
                return;
            }
        }
    })))
}
