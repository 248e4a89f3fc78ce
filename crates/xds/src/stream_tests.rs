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
