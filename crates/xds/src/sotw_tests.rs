use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status;

use crate::subscription::Output;

/// The stream logic with its responses decoded into the generated type, as Envoy reads them.
struct SotwStream(super::SotwStream);

impl SotwStream {
    fn new(snapshot: Arc<Snapshot>) -> Self {
        SotwStream(super::SotwStream::new(snapshot))
    }
    fn on_request(&mut self, req: DiscoveryRequest) -> Output<DiscoveryResponse> {
        decoded(self.0.on_request(req))
    }
    fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Output<DiscoveryResponse> {
        decoded(self.0.on_snapshot(snapshot))
    }
}

fn decoded(out: Output<crate::wire::SotwResponse>) -> Output<DiscoveryResponse> {
    Output {
        responses: out.responses.iter().map(|r| r.to_proto()).collect(),
        events: out.events,
    }
}
use crate::nodes::Event;
use crate::snapshot::{Resource, Snapshot};
use crate::type_url::{CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION};

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

fn req(t: &str, names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: t.into(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        version_info: version.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

fn ack(r: &DiscoveryResponse, names: &[&str]) -> DiscoveryRequest {
    req(&r.type_url, names, &r.version_info, &r.nonce)
}

/// (type, version suffix is "-keep", sorted resource payloads)
fn summary(rs: &[DiscoveryResponse]) -> Vec<(&str, bool, Vec<String>)> {
    rs.iter()
        .map(|r| {
            (
                r.type_url.as_str(),
                r.version_info.ends_with("-keep"),
                r.resources
                    .iter()
                    .map(|a| String::from_utf8(a.value.clone()).unwrap())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn wildcard_first_request_gets_everything_then_ack_is_quiet() {
    let s = snap(&[res(CLUSTER, "a", "a1"), res(CLUSTER, "b", "b1")]);
    let mut st = SotwStream::new(s.clone());
    let out = st.on_request(req(CLUSTER, &[], "", ""));
    assert_eq!(out.responses.len(), 1);
    let r = &out.responses[0];
    assert_eq!(r.version_info, s.type_version(CLUSTER).unwrap());
    assert_eq!(r.resources.len(), 2);
    let out = st.on_request(ack(r, &[]));
    assert!(out.responses.is_empty());
    assert_eq!(
        out.events,
        [Event::Ack {
            type_url: CLUSTER.into(),
            version: r.version_info.clone()
        }]
    );
}

#[test]
fn reconnect_with_current_version_sends_nothing() {
    let s = snap(&[res(CLUSTER, "a", "a1")]);
    let mut st = SotwStream::new(s.clone());
    let out = st.on_request(req(CLUSTER, &[], s.type_version(CLUSTER).unwrap(), ""));
    assert!(out.responses.is_empty());
    // An older version is answered.
    let mut st = SotwStream::new(s);
    let out = st.on_request(req(CLUSTER, &[], "old", ""));
    assert_eq!(out.responses.len(), 1);
}

#[test]
fn nack_is_recorded_and_not_resent() {
    let s = snap(&[res(CLUSTER, "a", "a1")]);
    let mut st = SotwStream::new(s);
    let r = st.on_request(req(CLUSTER, &[], "", "")).responses.remove(0);
    let mut nack = req(CLUSTER, &[], "", &r.nonce);
    nack.error_detail = Some(Status {
        code: 3,
        message: "bad cluster".into(),
        details: vec![],
    });
    let out = st.on_request(nack);
    assert!(out.responses.is_empty());
    assert_eq!(
        out.events,
        [Event::Nack {
            type_url: CLUSTER.into(),
            version: r.version_info.clone(),
            message: "bad cluster".into()
        }]
    );
    // A newer snapshot is pushed again.
    let out = st.on_snapshot(snap(&[res(CLUSTER, "a", "a2")]));
    assert_eq!(out.responses.len(), 1);
}

#[test]
fn stale_nonce_is_ignored() {
    let mut st = SotwStream::new(snap(&[res(CLUSTER_LOAD_ASSIGNMENT, "a", "a1")]));
    let r1 = st
        .on_request(req(CLUSTER_LOAD_ASSIGNMENT, &["a"], "", ""))
        .responses
        .remove(0);
    let r2 = st
        .on_snapshot(snap(&[res(CLUSTER_LOAD_ASSIGNMENT, "a", "a2")]))
        .responses
        .remove(0);
    // ACK of r1 with a name change arrives after r2 was sent: ignored.
    let out = st.on_request(ack(&r1, &["a", "b"]));
    assert!(out.responses.is_empty() && out.events.is_empty());
    let out = st.on_request(ack(&r2, &["a"]));
    assert!(out.responses.is_empty());
    assert_eq!(out.events.len(), 1);
}

#[test]
fn named_subscription_and_name_change() {
    let s = snap(&[
        res(CLUSTER_LOAD_ASSIGNMENT, "a", "a1"),
        res(CLUSTER_LOAD_ASSIGNMENT, "b", "b1"),
        res(CLUSTER_LOAD_ASSIGNMENT, "c", "c1"),
    ]);
    let mut st = SotwStream::new(s);
    let r = st
        .on_request(req(CLUSTER_LOAD_ASSIGNMENT, &["a", "missing"], "", ""))
        .responses
        .remove(0);
    assert_eq!(summary(std::slice::from_ref(&r))[0].2, ["a1"]);
    let out = st.on_request(ack(&r, &["a", "c"]));
    assert_eq!(summary(&out.responses)[0].2, ["a1", "c1"]);
}

#[test]
fn missing_type_gets_one_empty_response() {
    let custom = "type.googleapis.com/x.Custom";
    let mut st = SotwStream::new(snap(&[res(CLUSTER, "a", "a1")]));
    let r = st.on_request(req(custom, &[], "", "")).responses.remove(0);
    assert!(r.resources.is_empty() && !r.version_info.is_empty());
    assert!(st.on_request(ack(&r, &[])).responses.is_empty());
    // Unrelated snapshot change: the custom type's version is unchanged.
    assert!(
        st.on_snapshot(snap(&[res(CLUSTER, "a", "a2")]))
            .responses
            .iter()
            .all(|r| r.type_url != custom)
    );
}

#[test]
fn removal_is_two_phase_and_ordered() {
    let s1 = snap(&[
        res(CLUSTER, "old", "old"),
        res(CLUSTER, "keep", "keep"),
        res(LISTENER, "l", "l1"),
        res(ROUTE_CONFIGURATION, "r", "r1"),
    ]);
    let mut st = SotwStream::new(s1);
    for (t, names) in [
        (CLUSTER, vec![]),
        (LISTENER, vec![]),
        (ROUTE_CONFIGURATION, vec!["r"]),
    ] {
        let r = st.on_request(req(t, &names, "", "")).responses.remove(0);
        st.on_request(ack(&r, &names));
    }
    let s2 = snap(&[
        res(CLUSTER, "new", "new"),
        res(CLUSTER, "keep", "keep"),
        res(LISTENER, "l", "l2"),
        res(ROUTE_CONFIGURATION, "r", "r2"),
    ]);
    let out = st.on_snapshot(s2.clone());
    assert_eq!(
        summary(&out.responses),
        [
            (
                CLUSTER,
                true,
                vec!["keep".into(), "new".into(), "old".into()]
            ),
            (LISTENER, false, vec!["l2".into()]),
            (ROUTE_CONFIGURATION, false, vec!["r2".into()]),
            (CLUSTER, false, vec!["keep".into(), "new".into()]),
        ]
    );
    assert_eq!(
        out.responses[3].version_info,
        s2.type_version(CLUSTER).unwrap()
    );
}

#[test]
fn no_dance_without_removal() {
    let mut st = SotwStream::new(snap(&[res(CLUSTER, "a", "a1")]));
    st.on_request(req(CLUSTER, &[], "", ""));
    st.on_request(req(LISTENER, &[], "", ""));
    let out = st.on_snapshot(snap(&[
        res(CLUSTER, "a", "a1"),
        res(CLUSTER, "b", "b1"),
        res(LISTENER, "l", "l1"),
    ]));
    assert_eq!(
        summary(&out.responses),
        [
            (CLUSTER, false, vec!["a1".into(), "b1".into()]),
            (LISTENER, false, vec!["l1".into()]),
        ]
    );
}

#[test]
fn route_configurations_are_resent_only_when_they_changed() {
    let s1 = snap(&[
        res(ROUTE_CONFIGURATION, "a", "a1"),
        res(ROUTE_CONFIGURATION, "b", "b1"),
        res(ROUTE_CONFIGURATION, "c", "c1"),
        res(LISTENER, "l", "l1"),
    ]);
    let mut st = SotwStream::new(s1.clone());
    let first = st
        .on_request(req(ROUTE_CONFIGURATION, &["a", "b"], "", ""))
        .responses;
    assert_eq!(
        summary(&first),
        [(ROUTE_CONFIGURATION, false, vec!["a1".into(), "b1".into()])]
    );
    st.on_request(ack(&first[0], &["a", "b"]));
    let listeners = st.on_request(req(LISTENER, &[], "", "")).responses;
    st.on_request(ack(&listeners[0], &[]));

    // One of the two changes: only it is sent, at the new type version.
    let s2 = snap(&[
        res(ROUTE_CONFIGURATION, "a", "a2"),
        res(ROUTE_CONFIGURATION, "b", "b1"),
        res(ROUTE_CONFIGURATION, "c", "c1"),
        res(LISTENER, "l", "l1"),
    ]);
    let out = st.on_snapshot(s2.clone()).responses;
    assert_eq!(
        summary(&out),
        [(ROUTE_CONFIGURATION, false, vec!["a2".into()])]
    );
    assert_eq!(
        out[0].version_info,
        s2.type_version(ROUTE_CONFIGURATION).unwrap()
    );

    // Only an unsubscribed one changes: the type version moves, so everything selected
    // is sent (it stays acknowledgeable) rather than an empty response.
    let s3 = snap(&[
        res(ROUTE_CONFIGURATION, "a", "a2"),
        res(ROUTE_CONFIGURATION, "b", "b1"),
        res(ROUTE_CONFIGURATION, "c", "c2"),
        res(LISTENER, "l", "l1"),
    ]);
    let out = st.on_snapshot(s3).responses;
    assert_eq!(
        summary(&out),
        [(ROUTE_CONFIGURATION, false, vec!["a2".into(), "b1".into()])]
    );

    // Listeners are always the whole set.
    let s4 = snap(&[
        res(ROUTE_CONFIGURATION, "a", "a2"),
        res(ROUTE_CONFIGURATION, "b", "b1"),
        res(ROUTE_CONFIGURATION, "c", "c2"),
        res(LISTENER, "l", "l2"),
        res(LISTENER, "m", "m1"),
    ]);
    let out = st.on_snapshot(s4).responses;
    assert_eq!(
        summary(&out),
        [(LISTENER, false, vec!["l2".into(), "m1".into()])]
    );
}

#[test]
fn streams_that_ask_for_a_whole_type_share_one_block() {
    use crate::wire::Carried;
    let s = snap(&[
        res(CLUSTER_LOAD_ASSIGNMENT, "a", "a1"),
        res(CLUSTER_LOAD_ASSIGNMENT, "b", "b1"),
        res(CLUSTER, "a", "ca"),
    ]);
    let first = |names: &[&str], t: &str| {
        let mut st = super::SotwStream::new(s.clone());
        st.on_request(req(t, names, "", "")).responses.remove(0)
    };
    let block = |r: &crate::wire::SotwResponse| match &r.resources {
        Carried::All { fields, count } => Some((fields.as_ptr(), *count)),
        Carried::Each(_) => None,
    };
    // Every name (in any order), and a wildcard: the same allocation on every stream.
    let named = first(&["b", "a"], CLUSTER_LOAD_ASSIGNMENT);
    let again = first(&["a", "b", "gone"], CLUSTER_LOAD_ASSIGNMENT);
    assert_eq!(block(&named).map(|b| b.1), Some(2));
    assert_eq!(block(&named), block(&again));
    assert_eq!(named.to_proto().resources.len(), 2);
    let wildcard = first(&[], CLUSTER);
    assert_eq!(block(&wildcard).map(|b| b.1), Some(1));
    // Some of them: a list of just those.
    let some = first(&["b", "gone"], CLUSTER_LOAD_ASSIGNMENT);
    assert_eq!(block(&some), None);
    let decoded = some.to_proto();
    assert_eq!(decoded.resources.len(), 1);
    assert_eq!(decoded.resources[0].value, b"b1");
    // None of the type exists: an empty list, not a block.
    assert_eq!(first(&[], LISTENER).resources, Carried::Each(Vec::new()));
}

/// A type no snapshot changes does not keep the first snapshot alive on the stream.
#[test]
fn an_unchanged_type_lets_old_snapshots_go() {
    let first = snap(&[res(CLUSTER, "a", "1"), res(LISTENER, "l", "1")]);
    let mut st = SotwStream::new(first.clone());
    for t in [CLUSTER, LISTENER] {
        let r = st.on_request(req(t, &[], "", "")).responses.remove(0);
        st.on_request(ack(&r, &[]));
    }
    for v in 2..5 {
        let next = snap(&[res(CLUSTER, "a", "1"), res(LISTENER, "l", &v.to_string())]);
        assert_eq!(
            st.on_snapshot(next).responses.len(),
            1,
            "only the listener changed"
        );
    }
    assert_eq!(
        Arc::strong_count(&first),
        1,
        "the stream still holds the first snapshot"
    );
}

/// Every Envoy of a fleet asks for the same names: a set found to select a whole type
/// is remembered with the type, and forgotten when a Delta update changes it in place.
#[test]
fn a_set_found_to_select_a_whole_type_is_remembered_until_it_changes() {
    use crate::subscription::Subscription;
    use crate::wire::Carried;
    let t = CLUSTER_LOAD_ASSIGNMENT;
    let s = snap(&[res(t, "a", "a1"), res(t, "b", "b1")]);
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let whole = Subscription::first(&names(&["b", "a"]));
    assert!(!s.selects_all(t, &whole.names));
    assert!(matches!(
        super::selected(&whole, &s, t),
        Carried::All { .. }
    ));
    assert!(s.selects_all(t, &whole.names));
    // Asked again: the block, without looking the names up.
    assert!(matches!(
        super::selected(&whole, &s, t),
        Carried::All { .. }
    ));
    let part = Subscription::first(&names(&["a"]));
    assert!(matches!(super::selected(&part, &s, t), Carried::Each(_)));
    assert!(!s.selects_all(t, &part.names) && s.selects_all(t, &whole.names));
    // The only holder of the set changes it in place: no longer the set remembered.
    let mut delta = whole.clone();
    drop(whole);
    delta.update(&[], &names(&["b"]));
    assert!(!s.selects_all(t, &delta.names));
    assert!(matches!(super::selected(&delta, &s, t), Carried::Each(_)));
}
