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

/// One cluster, `a`, whose content is `body`.
fn cluster_snapshot(body: &str) -> crate::snapshot::Snapshot {
    crate::snapshot::Snapshot::new([crate::snapshot::Resource::new(
        "a",
        envoy_types::pb::google::protobuf::Any {
            type_url: crate::type_url::CLUSTER.into(),
            value: body.as_bytes().to_vec(),
        },
    )])
}

/// A stream whose client does not read (the body is not polled) queues nothing: the
/// snapshots that arrive meanwhile are taken as the latest one only, once it reads
/// again, and dropping the stream (the client going away) takes it off the table.
#[test]
fn a_stream_that_is_not_read_takes_only_the_latest_snapshot() {
    use futures::FutureExt;
    let cache = Cache::new(&prometheus::Registry::new());
    cache.set_snapshot(cluster_snapshot("a"));
    let (requests, inbound) = futures::channel::mpsc::unbounded();
    let (_stop, shutdown) = watch::channel(false);
    let mut stream =
        Responses::<SotwStream, _>::new(&cache, inbound, StreamPeer::default(), shutdown);
    assert!(stream.next().now_or_never().is_none(), "nothing asked yet");
    requests
        .unbounded_send(Ok(DiscoveryRequest {
            type_url: crate::type_url::CLUSTER.into(),
            node: Some(node("envoy-1")),
            ..Default::default()
        }))
        .unwrap();
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

/// Shutdown ends the stream before anything it had left to send.
#[test]
fn shutdown_ends_a_stream_before_its_queued_responses() {
    use futures::FutureExt;
    let cache = Cache::new(&prometheus::Registry::new());
    cache.set_snapshot(cluster_snapshot("a"));
    let (requests, inbound) = futures::channel::mpsc::unbounded();
    let (stop, shutdown) = watch::channel(false);
    let mut stream =
        Responses::<SotwStream, _>::new(&cache, inbound, StreamPeer::default(), shutdown);
    for t in [crate::type_url::CLUSTER, crate::type_url::LISTENER] {
        requests
            .unbounded_send(Ok(DiscoveryRequest {
                type_url: t.into(),
                ..Default::default()
            }))
            .unwrap();
    }
    assert!(stream.next().now_or_never().flatten().is_some());
    stop.send(true).unwrap();
    assert!(matches!(stream.next().now_or_never(), Some(None)));
}
