//! One ADS stream without a transport: the protocol logic and status-table bookkeeping
//! a gRPC stream runs for each request and snapshot ([`crate::stream::step`]),
//! driven by direct calls. The fuzz target (`fuzz/fuzz_targets/xds.rs`) feeds it request
//! sequences no Envoy would send; gRPC adds only framing around the same steps. Responses
//! come back as the generated types, decoded from the bytes the server would write.
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};

use tonic::Status;

use crate::cache::{Cache, StreamHandle};
use crate::delta::DeltaStream;
use crate::snapshot::Snapshot;
use crate::sotw::SotwStream;
use crate::stream::{Input, Logic, StreamPeer, step};

macro_rules! session {
    ($(#[$doc:meta])* $name:ident, $logic:ty, $req:ty, $resp:ty) => {
        $(#[$doc])*
        pub struct $name {
            logic: $logic,
            handle: StreamHandle,
        }

        impl $name {
            /// Opens a stream on `cache` from its current snapshot; the stream is listed
            /// in [`Cache::nodes`] until this is dropped.
            pub fn open(cache: &Cache) -> Self {
                Self {
                    logic: <$logic as Logic>::new(cache.snapshot()),
                    handle: cache.open_stream(<$logic as Logic>::PROTOCOL, None),
                }
            }

            /// A request from the client; the responses to send, in order. `Err`: the
            /// request is past one of the stream's bounds, and the server closes the
            /// stream with that status (open a new session to go on).
            pub fn request(&mut self, req: $req) -> Result<Vec<$resp>, Status> {
                step(&mut self.logic, &mut self.handle, Input::Request(req), &StreamPeer::default())
                    .map(|out| out.iter().map(|r| r.to_proto()).collect())
            }

            /// The cache moved to `snapshot` (what [`Cache::set_snapshot`] wakes a
            /// stream with); the responses to push, in order.
            pub fn snapshot(&mut self, snapshot: Arc<Snapshot>) -> Vec<$resp> {
                step(&mut self.logic, &mut self.handle, Input::Snapshot(snapshot), &StreamPeer::default())
                    .expect("snapshots are not checked against request bounds")
                    .iter()
                    .map(|r| r.to_proto())
                    .collect()
            }
        }
    };
}

session!(
    /// A State-of-the-World ADS stream.
    SotwSession,
    SotwStream,
    DiscoveryRequest,
    DiscoveryResponse
);
session!(
    /// An incremental (delta) ADS stream.
    DeltaSession,
    DeltaStream,
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse
);

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::core::v3::Node;
    use envoy_types::pb::google::protobuf::Any;
    use envoy_types::pb::google::rpc::Status;

    use super::*;
    use crate::snapshot::Resource;
    use crate::type_url::CLUSTER;

    fn cache_with(names: &[&str]) -> Cache {
        let cache = Cache::new(&prometheus::Registry::new());
        cache.set_snapshot(snapshot(names));
        cache
    }

    fn snapshot(names: &[&str]) -> Snapshot {
        Snapshot::new(names.iter().map(|n| {
            Resource::new(
                *n,
                Any {
                    type_url: CLUSTER.into(),
                    value: n.as_bytes().to_vec(),
                },
            )
        }))
    }

    #[test]
    fn sotw_session_answers_and_records_ack_nack_and_close() {
        let cache = cache_with(&["a", "b"]);
        let mut s = SotwSession::open(&cache);
        let first = s
            .request(DiscoveryRequest {
                type_url: CLUSTER.into(),
                node: Some(Node {
                    id: "envoy-1".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].resources.len(), 2);
        let ack = |r: &DiscoveryResponse, error: Option<&str>| DiscoveryRequest {
            type_url: CLUSTER.into(),
            version_info: r.version_info.clone(),
            response_nonce: r.nonce.clone(),
            error_detail: error.map(|m| Status {
                message: m.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(s.request(ack(&first[0], None)).unwrap().is_empty());
        let node = &cache.nodes()[0];
        assert_eq!(node.id, "envoy-1");
        assert_eq!(
            node.types[CLUSTER].acked,
            Some(first[0].version_info.clone())
        );

        cache.set_snapshot(snapshot(&["a"]));
        let pushed = s.snapshot(cache.snapshot());
        assert_eq!(pushed.last().map(|r| r.resources.len()), Some(1));
        assert!(
            s.request(ack(pushed.last().unwrap(), Some("bad")))
                .unwrap()
                .is_empty()
        );
        let nack = cache.nodes()[0].types[CLUSTER]
            .nack
            .clone()
            .expect("NACK recorded");
        assert_eq!(nack.message, "bad");
        assert_eq!(cache.nacks_total(), 1);

        // The stream's bounds apply as on the server: a node id change is refused.
        let refused = s.request(DiscoveryRequest {
            type_url: CLUSTER.into(),
            node: Some(Node {
                id: "envoy-2".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(refused.unwrap_err().code(), tonic::Code::InvalidArgument);

        drop(s);
        assert!(cache.nodes().is_empty());
    }

    /// A node's cluster name is kept for as long as it is connected, so its size is
    /// bounded like the node id's, whatever the client sends.
    #[test]
    fn a_huge_cluster_name_is_kept_cut() {
        let cache = cache_with(&["a"]);
        let mut s = SotwSession::open(&cache);
        s.request(DiscoveryRequest {
            type_url: CLUSTER.into(),
            node: Some(Node {
                id: "envoy-1".into(),
                cluster: "c".repeat(1 << 20),
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap();
        let node = &cache.nodes()[0];
        assert_eq!(node.id, "envoy-1");
        assert_eq!(node.cluster.len(), crate::limits::MAX_NODE_ID_LEN);
    }

    #[test]
    fn delta_session_sends_changes_and_removals() {
        let cache = cache_with(&["a", "b"]);
        let mut s = DeltaSession::open(&cache);
        let first = s
            .request(DeltaDiscoveryRequest {
                type_url: CLUSTER.into(),
                resource_names_subscribe: vec!["a".into(), "c".into()],
                ..Default::default()
            })
            .unwrap();
        let names: Vec<&str> = first[0].resources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a"]);
        s.request(DeltaDiscoveryRequest {
            type_url: CLUSTER.into(),
            response_nonce: first[0].nonce.clone(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            cache.nodes()[0].types[CLUSTER].acked,
            Some(first[0].system_version_info.clone())
        );
        cache.set_snapshot(snapshot(&["b", "c"]));
        let pushed = s.snapshot(cache.snapshot());
        let added: Vec<&str> = pushed
            .iter()
            .flat_map(|r| &r.resources)
            .map(|r| r.name.as_str())
            .collect();
        let removed: Vec<&str> = pushed
            .iter()
            .flat_map(|r| &r.removed_resources)
            .map(String::as_str)
            .collect();
        assert_eq!((added, removed), (vec!["c"], vec!["a"]));
    }
}
