//! Test harness: a real server on 127.0.0.1:0 and tonic clients.
#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Any;
use portcullis_xds::{Cache, Resource, Snapshot};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

/// Upper bound for anything that is expected to happen.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long "nothing arrives" is observed.
pub const SILENCE: Duration = Duration::from_millis(300);

pub fn res(type_url: &str, name: &str, value: &str) -> Resource {
    Resource::new(
        name,
        Any {
            type_url: type_url.into(),
            value: value.as_bytes().to_vec(),
        },
    )
}

pub fn snap(rs: &[Resource]) -> Snapshot {
    Snapshot::new(rs.iter().cloned())
}

pub fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        cluster: "test-cluster".into(),
        ..Default::default()
    }
}

pub struct Harness {
    pub cache: Cache,
    pub registry: prometheus::Registry,
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), std::io::Error>>>,
}

impl Harness {
    pub async fn start(snapshot: Snapshot) -> Harness {
        let registry = prometheus::Registry::new();
        let cache = Cache::new(&registry);
        cache.set_snapshot(snapshot);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(portcullis_xds::serve(listener, cache.clone(), async move {
            let _ = stopped.await;
        }));
        Harness {
            cache,
            registry,
            addr,
            stop: Some(stop),
            server: Some(server),
        }
    }

    async fn client(&self) -> AggregatedDiscoveryServiceClient<tonic::transport::Channel> {
        let client = timeout(
            WAIT,
            AggregatedDiscoveryServiceClient::connect(format!("http://{}", self.addr)),
        )
        .await
        .expect("connect timed out")
        .expect("connect");
        client.max_decoding_message_size(portcullis_xds::MAX_MESSAGE_SIZE)
    }

    pub async fn sotw(&self) -> SotwClient {
        let (tx, rx) = mpsc::channel(16);
        let mut client = self.client().await;
        let fut = client.stream_aggregated_resources(ReceiverStream::new(rx));
        // The call resolves once response headers arrive; they are only
        // sent after the server accepted the stream, so no request needed.
        let rx = timeout(WAIT, fut)
            .await
            .expect("open timed out")
            .unwrap()
            .into_inner();
        SotwClient { tx, rx }
    }

    pub async fn delta(&self) -> DeltaClient {
        let (tx, rx) = mpsc::channel(16);
        let mut client = self.client().await;
        let fut = client.delta_aggregated_resources(ReceiverStream::new(rx));
        let rx = timeout(WAIT, fut)
            .await
            .expect("open timed out")
            .unwrap()
            .into_inner();
        DeltaClient { tx, rx }
    }

    /// Wait until `pred(debug json)` holds; ACK/NACK processing is async.
    pub async fn eventually(&self, what: &str, pred: impl Fn(&serde_json::Value) -> bool) {
        let mut status = self.cache.status_rx();
        let wait = async {
            loop {
                if pred(&self.cache.debug()) {
                    return;
                }
                status.changed().await.unwrap();
            }
        };
        if timeout(WAIT, wait).await.is_err() {
            panic!(
                "timed out waiting for {what}; debug: {:#}",
                self.cache.debug()
            );
        }
    }

    /// Value of a metric with the given single label value, read through
    /// the text exposition (independent of prometheus' model features).
    pub fn metric(&self, name: &str, label_value: &str) -> f64 {
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap();
        let needle = format!("=\"{label_value}\"}}");
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&needle))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Shut the server down; it must finish even with streams open.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let server = self.server.take().unwrap();
        timeout(WAIT, server)
            .await
            .expect("server did not shut down")
            .unwrap()
            .unwrap();
    }
}

pub struct SotwClient {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: Streaming<DiscoveryResponse>,
}

impl SotwClient {
    pub async fn send(&self, req: DiscoveryRequest) {
        self.tx.send(req).await.unwrap();
    }

    /// Request as Envoy sends it: type, names, version and nonce.
    pub async fn request(&self, type_url: &str, names: &[&str], version: &str, nonce: &str) {
        self.send(DiscoveryRequest {
            node: Some(node("node-1")),
            type_url: type_url.into(),
            resource_names: names.iter().map(|s| s.to_string()).collect(),
            version_info: version.into(),
            response_nonce: nonce.into(),
            ..Default::default()
        })
        .await;
    }

    pub async fn ack(&self, r: &DiscoveryResponse, names: &[&str]) {
        self.request(&r.type_url, names, &r.version_info, &r.nonce)
            .await;
    }

    pub async fn recv(&mut self) -> DiscoveryResponse {
        timeout(WAIT, self.rx.message())
            .await
            .expect("no response in time")
            .expect("stream error")
            .expect("stream ended")
    }

    pub async fn expect_silence(&mut self) {
        if let Ok(msg) = timeout(SILENCE, self.rx.message()).await {
            panic!("expected no response, got {msg:?}");
        }
    }

    /// The server ends the stream with an error status of `code`.
    pub async fn expect_status(&mut self, code: tonic::Code) -> tonic::Status {
        loop {
            match timeout(WAIT, self.rx.message())
                .await
                .expect("stream still open")
            {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("stream ended without a status"),
                Err(status) => {
                    assert_eq!(status.code(), code, "{status:?}");
                    return status;
                }
            }
        }
    }

    /// The server ends the stream (e.g. on shutdown).
    pub async fn expect_end(&mut self) {
        let end = timeout(WAIT, self.rx.message())
            .await
            .expect("stream still open");
        assert!(matches!(end, Ok(None) | Err(_)), "unexpected {end:?}");
    }
}

pub struct DeltaClient {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    rx: Streaming<DeltaDiscoveryResponse>,
}

impl DeltaClient {
    pub async fn send(&self, mut req: DeltaDiscoveryRequest) {
        req.node = Some(node("delta-node"));
        self.tx.send(req).await.unwrap();
    }

    pub async fn subscribe(&self, type_url: &str, subscribe: &[&str], unsubscribe: &[&str]) {
        self.send(DeltaDiscoveryRequest {
            type_url: type_url.into(),
            resource_names_subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
            resource_names_unsubscribe: unsubscribe.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .await;
    }

    pub async fn ack(&self, r: &DeltaDiscoveryResponse) {
        self.send(DeltaDiscoveryRequest {
            type_url: r.type_url.clone(),
            response_nonce: r.nonce.clone(),
            ..Default::default()
        })
        .await;
    }

    pub async fn recv(&mut self) -> DeltaDiscoveryResponse {
        timeout(WAIT, self.rx.message())
            .await
            .expect("no response in time")
            .expect("stream error")
            .expect("stream ended")
    }

    pub async fn expect_silence(&mut self) {
        if let Ok(msg) = timeout(SILENCE, self.rx.message()).await {
            panic!("expected no response, got {msg:?}");
        }
    }
}

/// Payloads of a SotW response as strings, in order.
pub fn payloads(r: &DiscoveryResponse) -> Vec<String> {
    r.resources
        .iter()
        .map(|a| String::from_utf8(a.value.clone()).unwrap())
        .collect()
}

/// Names of the resources in a delta response.
pub fn delta_names(r: &DeltaDiscoveryResponse) -> Vec<&str> {
    r.resources.iter().map(|x| x.name.as_str()).collect()
}
