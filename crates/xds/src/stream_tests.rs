use portcullis_tls::mtls::NodeGrant;

use super::*;

fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        ..Default::default()
    }
}

fn mtls(grants: Vec<NodeGrant>) -> StreamPeer {
    StreamPeer {
        addr: None,
        grants: Some(grants),
    }
}

#[test]
fn plaintext_streams_are_not_bound_to_a_node() {
    assert!(
        StreamPeer::default()
            .denied(Some(&node("any")), "")
            .is_none()
    );
}

#[test]
fn a_certificate_allows_only_its_node() {
    let peer = mtls(vec![NodeGrant::Exact("node-a".into())]);
    assert!(peer.denied(Some(&node("node-a")), "").is_none());
    let status = peer.denied(Some(&node("node-b")), "").unwrap();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(status.message().contains("node-a") && status.message().contains("node-b"));
    // Later requests leave the node out: the stream's node is checked.
    assert!(peer.denied(None, "node-a").is_none());
    assert!(peer.denied(None, "").is_some());
    assert!(peer.denied(Some(&node("")), "node-b").is_some());
}

#[test]
fn a_certificate_without_a_node_may_not_subscribe() {
    let status = mtls(Vec::new()).denied(Some(&node("node-a")), "").unwrap();
    assert!(status.message().contains("none"), "{}", status.message());
}

#[test]
fn a_prefix_grant_covers_a_deployments_pods() {
    let peer = mtls(vec![NodeGrant::Prefix("edge-envoy-".into())]);
    assert!(
        peer.denied(Some(&node("edge-envoy-5d8c-x2x9k")), "")
            .is_none()
    );
    assert!(peer.denied(Some(&node("edge-ratelimit")), "").is_some());
}

/// A cluster `a` and a listener `l`, both with content `body`.
fn cluster_snapshot(body: &str) -> crate::snapshot::Snapshot {
    let resource = |name: &str, type_url: &str| {
        crate::snapshot::Resource::new(
            name,
            envoy_types::pb::google::protobuf::Any {
                type_url: type_url.into(),
                value: body.as_bytes().to_vec(),
            },
        )
    };
    crate::snapshot::Snapshot::new([
        resource("a", crate::type_url::CLUSTER),
        resource("l", crate::type_url::LISTENER),
    ])
}

type Requests = futures::channel::mpsc::UnboundedSender<Result<DiscoveryRequest, Status>>;
type Inbound = futures::channel::mpsc::UnboundedReceiver<Result<DiscoveryRequest, Status>>;

/// A SotW stream on a cache serving [`cluster_snapshot`] `"a"`: the cache, where the
/// client's requests go, the shutdown switch, and the stream's responses.
fn open() -> (
    Cache,
    Requests,
    watch::Sender<bool>,
    Responses<SotwStream, Inbound>,
) {
    let cache = Cache::new(&prometheus::Registry::new());
    cache.set_snapshot(cluster_snapshot("a"));
    let (requests, inbound) = futures::channel::mpsc::unbounded();
    let (stop, shutdown) = watch::channel(false);
    let stream = Responses::new(&cache, inbound, StreamPeer::default(), shutdown);
    (cache, requests, stop, stream)
}

fn subscribe(requests: &Requests, type_url: &str) {
    requests
        .unbounded_send(Ok(DiscoveryRequest {
            type_url: type_url.into(),
            node: Some(node("envoy-1")),
            ..Default::default()
        }))
        .unwrap();
}

/// A stream whose client does not read (the body is not polled) queues nothing: the
/// snapshots that arrive meanwhile are taken as the latest one only, once it reads
/// again, and dropping the stream (the client going away) takes it off the table.
#[test]
fn a_stream_that_is_not_read_takes_only_the_latest_snapshot() {
    use futures::FutureExt;
    let (cache, requests, _stop, mut stream) = open();
    assert!(stream.next().now_or_never().is_none(), "nothing asked yet");
    subscribe(&requests, crate::type_url::CLUSTER);
    let first = stream.next().now_or_never().flatten().unwrap().unwrap();
    let cds_version = || {
        cache
            .snapshot()
            .effective_type_version(crate::type_url::CLUSTER)
    };
    assert_eq!(first.version_info, cds_version());

    for name in ["b", "c", "d"] {
        cache.set_snapshot(cluster_snapshot(name));
    }
    let pushed = stream.next().now_or_never().flatten().unwrap().unwrap();
    assert_eq!(pushed.version_info, cds_version(), "the latest");
    let resources = pushed.to_proto().resources;
    assert_eq!(resources.len(), 1);
    assert_eq!(resources[0].value, b"d", "the latest content");
    assert!(
        stream.next().now_or_never().is_none(),
        "nothing queued behind it"
    );

    assert_eq!(cache.nodes().len(), 1);
    drop(stream);
    assert!(cache.nodes().is_empty());
}

/// Shutdown ends the stream before the responses it had left to send.
#[test]
fn shutdown_ends_a_stream_before_its_queued_responses() {
    use futures::FutureExt;
    let (cache, requests, stop, mut stream) = open();
    for t in [crate::type_url::CLUSTER, crate::type_url::LISTENER] {
        subscribe(&requests, t);
        assert!(stream.next().now_or_never().flatten().is_some());
    }
    // One snapshot changes both types: a CDS and an LDS response, in that order.
    cache.set_snapshot(cluster_snapshot("b"));
    let cds = stream.next().now_or_never().flatten().unwrap().unwrap();
    assert_eq!(cds.type_url, crate::type_url::CLUSTER);
    stop.send(true).unwrap();
    assert!(
        matches!(stream.next().now_or_never(), Some(None)),
        "the LDS response is not sent after shutdown"
    );
}
