use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status;

use crate::subscription::Output;

/// The stream logic with its responses decoded into the generated type, as Envoy reads them.
struct DeltaStream(super::DeltaStream);

impl DeltaStream {
    fn new(snapshot: Arc<Snapshot>) -> Self {
        DeltaStream(super::DeltaStream::new(snapshot))
    }
    fn on_request(&mut self, req: DeltaDiscoveryRequest) -> Output<DeltaDiscoveryResponse> {
        decoded(self.0.on_request(req))
    }
    fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Output<DeltaDiscoveryResponse> {
        decoded(self.0.on_snapshot(snapshot))
    }
}

fn decoded(out: Output<crate::wire::DeltaResponse>) -> Output<DeltaDiscoveryResponse> {
    Output {
        responses: out.responses.iter().map(|r| r.to_proto()).collect(),
        events: out.events,
    }
}
use crate::nodes::Event;
use crate::snapshot::{Resource, Snapshot};
use crate::type_url::{CLUSTER, LISTENER};

fn res(t: &str, name: &str, value: &str) -> Resource {
    Resource::new(
        name,
        Any {
            type_url: t.into(),
            value: value.as_bytes().to_vec(),
        },
    )
}

fn snap(rs: &[Resource]) -> Arc<Snapshot> {
    Arc::new(Snapshot::new(rs.iter().cloned()))
}

fn sub(t: &str, subscribe: &[&str], unsubscribe: &[&str]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: t.into(),
        resource_names_subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
        resource_names_unsubscribe: unsubscribe.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn ack(r: &DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: r.type_url.clone(),
        response_nonce: r.nonce.clone(),
        ..Default::default()
    }
}

/// (type, sent names, removed names)
fn summary(rs: &[DeltaDiscoveryResponse]) -> Vec<(&str, Vec<&str>, Vec<&str>)> {
    rs.iter()
        .map(|r| {
            (
                r.type_url.as_str(),
                r.resources.iter().map(|x| x.name.as_str()).collect(),
                r.removed_resources.iter().map(String::as_str).collect(),
            )
        })
        .collect()
}

#[test]
fn wildcard_then_only_changes() {
    let mut st = DeltaStream::new(snap(&[res(CLUSTER, "a", "a1"), res(CLUSTER, "b", "b1")]));
    let out = st.on_request(sub(CLUSTER, &[], &[]));
    assert_eq!(summary(&out.responses), [(CLUSTER, vec!["a", "b"], vec![])]);
    let ack_out = st.on_request(ack(&out.responses[0]));
    assert!(ack_out.responses.is_empty());
    assert!(matches!(ack_out.events[..], [Event::Ack { .. }]));
    let out = st.on_snapshot(snap(&[res(CLUSTER, "a", "a2"), res(CLUSTER, "b", "b1")]));
    assert_eq!(summary(&out.responses), [(CLUSTER, vec!["a"], vec![])]);
}

#[test]
fn removals_of_clusters_come_last() {
    let mut st = DeltaStream::new(snap(&[res(CLUSTER, "a", "a1"), res(LISTENER, "l", "l1")]));
    st.on_request(sub(CLUSTER, &[], &[]));
    st.on_request(sub(LISTENER, &[], &[]));
    let out = st.on_snapshot(snap(&[res(CLUSTER, "b", "b1"), res(LISTENER, "l", "l2")]));
    assert_eq!(
        summary(&out.responses),
        [
            (CLUSTER, vec!["b"], vec![]),
            (LISTENER, vec!["l"], vec![]),
            (CLUSTER, vec![], vec!["a"]),
        ]
    );
    // Listener removals are not deferred.
    let out = st.on_snapshot(snap(&[res(CLUSTER, "b", "b1")]));
    assert_eq!(summary(&out.responses), [(LISTENER, vec![], vec!["l"])]);
}

#[test]
fn initial_versions_skip_unchanged() {
    let s = snap(&[res(CLUSTER, "a", "a1"), res(CLUSTER, "b", "b1")]);
    let mut st = DeltaStream::new(s.clone());
    let mut r = sub(CLUSTER, &[], &[]);
    r.initial_resource_versions = [
        (
            "a".to_string(),
            s.resource_version(CLUSTER, "a").unwrap().to_string(),
        ),
        ("b".to_string(), "stale".to_string()),
        ("gone".to_string(), "x".to_string()),
    ]
    .into_iter()
    .collect();
    let out = st.on_request(r);
    assert_eq!(
        summary(&out.responses),
        [(CLUSTER, vec!["b"], vec!["gone"])]
    );

    let mut st = DeltaStream::new(s.clone());
    let mut r = sub(CLUSTER, &[], &[]);
    r.initial_resource_versions = s
        .resources(CLUSTER)
        .map(|x| {
            let v = s.resource_version(CLUSTER, &x.name).unwrap();
            (x.name.clone(), v.to_string())
        })
        .collect();
    assert!(st.on_request(r).responses.is_empty());
}

#[test]
fn fresh_wildcard_for_missing_type_gets_empty_response() {
    let mut st = DeltaStream::new(snap(&[]));
    let out = st.on_request(sub(CLUSTER, &[], &[]));
    assert_eq!(summary(&out.responses), [(CLUSTER, vec![], vec![])]);
    // Explicit names that don't exist: nothing.
    let out = st.on_request(sub(LISTENER, &["nope"], &[]));
    assert!(out.responses.is_empty());
}

#[test]
fn nack_recorded_and_not_resent() {
    let mut st = DeltaStream::new(snap(&[res(CLUSTER, "a", "a1")]));
    let r = st.on_request(sub(CLUSTER, &[], &[])).responses.remove(0);
    let mut nack = ack(&r);
    nack.error_detail = Some(Status {
        code: 3,
        message: "nope".into(),
        details: vec![],
    });
    let out = st.on_request(nack);
    assert!(out.responses.is_empty());
    assert_eq!(
        out.events,
        [Event::Nack {
            type_url: CLUSTER.into(),
            version: r.system_version_info.clone(),
            message: "nope".into()
        }]
    );
}

#[test]
fn subscribe_and_unsubscribe() {
    let mut st = DeltaStream::new(snap(&[res(CLUSTER, "a", "a1"), res(CLUSTER, "b", "b1")]));
    let out = st.on_request(sub(CLUSTER, &["a"], &[]));
    assert_eq!(summary(&out.responses), [(CLUSTER, vec!["a"], vec![])]);
    let out = st.on_request(sub(CLUSTER, &["b"], &["a"]));
    assert_eq!(summary(&out.responses), [(CLUSTER, vec!["b"], vec![])]);
    // "a" no longer subscribed: its change is not sent, nor its removal.
    let out = st.on_snapshot(snap(&[res(CLUSTER, "a", "a2"), res(CLUSTER, "b", "b1")]));
    assert!(out.responses.is_empty());
    // Re-subscribing sends it again.
    let out = st.on_request(sub(CLUSTER, &["a"], &[]));
    assert_eq!(summary(&out.responses), [(CLUSTER, vec!["a"], vec![])]);
}
