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

/// A client that applies every response as Envoy does. Over random snapshots,
/// subscription changes and reconnects (with the versions it holds), it ends each step
/// holding exactly what it subscribed to of the latest snapshot, and is never sent a
/// resource at the version it already has, nor told to remove one it lacks.
#[test]
fn a_client_converges_on_every_snapshot_and_is_sent_nothing_twice() {
    use crate::type_url::CLUSTER_LOAD_ASSIGNMENT as EDS;
    use std::collections::{BTreeMap, BTreeSet};
    const NAMES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
    type Held = BTreeMap<String, BTreeMap<String, String>>;

    fn apply(
        held: &mut Held,
        out: &Output<DeltaDiscoveryResponse>,
        acks: &mut Vec<DeltaDiscoveryRequest>,
    ) {
        for r in &out.responses {
            let mine = held.entry(r.type_url.clone()).or_default();
            for x in &r.resources {
                assert_ne!(
                    mine.get(&x.name),
                    Some(&x.version),
                    "{} sent again at {}",
                    x.name,
                    x.version
                );
                mine.insert(x.name.clone(), x.version.clone());
            }
            for n in &r.removed_resources {
                assert!(
                    mine.remove(n).is_some(),
                    "told to remove {n}, which it lacks"
                );
            }
            acks.push(ack(r));
        }
    }

    for seed in 1..=40u64 {
        let mut rng = seed;
        let mut next = |n: u64| {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (rng >> 33) % n
        };
        let mut snapshot = snap(&[]);
        let mut st = DeltaStream::new(snapshot.clone());
        let mut held = Held::new();
        let mut eds: BTreeSet<&str> = BTreeSet::new();
        let mut acks = Vec::new();
        apply(&mut held, &st.on_request(sub(CLUSTER, &[], &[])), &mut acks);
        for _ in 0..150 {
            match next(5) {
                0 | 1 => {
                    let mut rs = Vec::new();
                    for t in [CLUSTER, EDS] {
                        for n in NAMES {
                            if next(3) > 0 {
                                rs.push(res(t, n, &format!("{n}{}", next(3))));
                            }
                        }
                    }
                    snapshot = snap(&rs);
                    apply(&mut held, &st.on_snapshot(snapshot.clone()), &mut acks);
                }
                2 => {
                    let n = NAMES[next(6) as usize];
                    eds.insert(n);
                    apply(&mut held, &st.on_request(sub(EDS, &[n], &[])), &mut acks);
                }
                3 => {
                    let n = NAMES[next(6) as usize];
                    // (A first request that names nothing would be a wildcard.)
                    if eds.remove(n) {
                        // Envoy forgets what it unsubscribed from.
                        held.entry(EDS.into()).or_default().remove(n);
                        apply(&mut held, &st.on_request(sub(EDS, &[], &[n])), &mut acks);
                    }
                }
                _ => {
                    // Reconnect, naming the versions it holds.
                    st = DeltaStream::new(snapshot.clone());
                    for (t, names) in [(CLUSTER, Vec::new()), (EDS, eds.iter().copied().collect())]
                    {
                        let mut r = sub(t, &names, &[]);
                        r.initial_resource_versions = held
                            .get(t)
                            .cloned()
                            .unwrap_or_default()
                            .into_iter()
                            .collect();
                        if t == EDS && names.is_empty() {
                            continue;
                        }
                        apply(&mut held, &st.on_request(r), &mut acks);
                    }
                }
            }
            for a in acks.drain(..) {
                assert!(st.on_request(a).responses.is_empty(), "an ACK was answered");
            }
            for t in [CLUSTER, EDS] {
                let want: BTreeMap<String, String> = snapshot
                    .resources(t)
                    .filter(|r| t == CLUSTER || eds.contains(r.name.as_str()))
                    .map(|r| {
                        (
                            r.name.clone(),
                            snapshot.resource_version(t, &r.name).unwrap().to_owned(),
                        )
                    })
                    .collect();
                let have = held.get(t).cloned().unwrap_or_default();
                assert_eq!(have, want, "seed {seed}: {t}");
            }
        }
    }
}

/// After every complete push a stream keeps a reference to the snapshot, not a list of
/// what the client holds; a list lives only while a removal is deferred.
#[test]
fn holdings_are_a_snapshot_reference_between_pushes() {
    let selected = |st: &DeltaStream| {
        matches!(
            st.0.types.get(CLUSTER).unwrap().has,
            super::Holds::Selected(_)
        )
    };
    let mut st = DeltaStream::new(snap(&[res(CLUSTER, "a", "1"), res(CLUSTER, "b", "1")]));
    st.on_request(sub(CLUSTER, &[], &[]));
    assert!(selected(&st));
    // "b" removed, "a" changed: the change goes first with "b" kept, then the removal.
    let mut out = st.0.on_snapshot(snap(&[res(CLUSTER, "a", "2")]));
    assert_eq!(out.responses.len(), 2);
    assert!(selected(&st), "the final push completes it");
    let last = out.responses.pop().unwrap();
    assert_eq!(last.removed_resources, ["b"]);
    // A reconnect naming versions lists them until its first push.
    let mut again = DeltaStream::new(snap(&[res(CLUSTER, "a", "2")]));
    let mut first = sub(CLUSTER, &[], &[]);
    first.initial_resource_versions = [("a".to_string(), "stale".to_string())].into();
    again.on_request(first);
    assert!(selected(&again));
}

/// A fresh Envoy's first push of a whole type is the snapshot's one block, the same
/// allocation on every stream; a change of one resource is listed on its own.
#[test]
fn a_whole_type_push_is_the_shared_block() {
    use crate::wire::Carried;
    let s = snap(&[res(CLUSTER, "a", "1"), res(CLUSTER, "b", "1")]);
    let block = |out: Output<crate::wire::DeltaResponse>| match &out.responses[0].resources {
        Carried::All { fields, count } => Some((fields.as_ptr(), *count)),
        Carried::Each(_) => None,
    };
    let first = block(super::DeltaStream::new(s.clone()).on_request(sub(CLUSTER, &[], &[])));
    let again =
        block(super::DeltaStream::new(s.clone()).on_request(sub(CLUSTER, &["a", "b"], &[])));
    assert_eq!(first.map(|b| b.1), Some(2));
    assert_eq!(first, again);
    let mut st = super::DeltaStream::new(s);
    st.on_request(sub(CLUSTER, &[], &[]));
    let changed = st.on_snapshot(snap(&[res(CLUSTER, "a", "2"), res(CLUSTER, "b", "1")]));
    assert_eq!(block(changed), None);
}

/// A type no snapshot changes does not keep the first snapshot alive on the stream.
#[test]
fn an_unchanged_type_lets_old_snapshots_go() {
    let first = snap(&[res(CLUSTER, "a", "1"), res(LISTENER, "l", "1")]);
    let mut st = super::DeltaStream::new(first.clone());
    st.on_request(sub(CLUSTER, &[], &[]));
    st.on_request(sub(LISTENER, &[], &[]));
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

/// A reconnect that claims versions of names it does not subscribe to, and of names
/// that never existed: it is sent what it subscribed to, told of no removal for the
/// rest, and its later pushes still carry only real changes.
#[test]
fn initial_versions_outside_the_subscription_change_nothing_sent() {
    use crate::type_url::CLUSTER_LOAD_ASSIGNMENT as EDS;
    let s1 = snap(&[res(EDS, "a", "1"), res(EDS, "b", "1")]);
    let mut st = DeltaStream::new(s1);
    let mut first = sub(EDS, &["a"], &[]);
    first.initial_resource_versions = [
        ("a".to_string(), "stale".to_string()),
        ("b".to_string(), "forged".to_string()),
        ("never".to_string(), "x".to_string()),
    ]
    .into();
    let out = st.on_request(first);
    assert_eq!(summary(&out.responses), [(EDS, vec!["a"], vec![])]);
    assert!(matches!(
        st.0.types.get(EDS).unwrap().has,
        super::Holds::Listed(_)
    ));
    let out = st.on_snapshot(snap(&[res(EDS, "a", "2"), res(EDS, "b", "2")]));
    assert_eq!(summary(&out.responses), [(EDS, vec!["a"], vec![])]);
}

/// The holdings go back to a snapshot reference whenever nothing is left to send: after
/// an unsubscribe (Envoy's EDS unsubscribe for every cluster CDS removed), a repeated
/// subscription, and a reconnect that holds everything current (every Envoy, after a
/// control-plane restart). A list of (name, version) per resource would otherwise stay
/// on each stream until the type's next push. What is sent afterwards is unchanged.
#[test]
fn nothing_left_to_send_holds_the_selection_not_a_list() {
    use crate::type_url::CLUSTER_LOAD_ASSIGNMENT as EDS;
    let selected = |st: &DeltaStream, t: &str| {
        matches!(st.0.types.get(t).unwrap().has, super::Holds::Selected(_))
    };
    let s1 = snap(&[res(EDS, "a", "1"), res(EDS, "b", "1"), res(EDS, "c", "1")]);
    let mut st = DeltaStream::new(s1.clone());
    let out = st.on_request(sub(EDS, &["a", "b", "c"], &[]));
    assert_eq!(
        summary(&out.responses),
        [(EDS, vec!["a", "b", "c"], vec![])]
    );
    assert!(selected(&st, EDS));

    // Unsubscribing sends nothing, and leaves no list behind.
    assert!(st.on_request(sub(EDS, &[], &["c"])).responses.is_empty());
    assert!(selected(&st, EDS), "an unsubscribe left a list");
    // The same subscription again: nothing to send, still no list.
    assert!(st.on_request(sub(EDS, &["a"], &[])).responses.is_empty());
    assert!(selected(&st, EDS), "a repeated subscription left a list");
    // A client repeating it, or unsubscribing names it never had, in a flood: nothing
    // sent, nothing recorded, the holdings untouched.
    for _ in 0..1_000 {
        let out = st.on_request(sub(EDS, &["a", "b"], &["never"]));
        assert!(out.responses.is_empty() && out.events.is_empty());
    }
    assert!(selected(&st, EDS), "a flood of repeats left a list");
    // "c" is not subscribed: its change is not sent; "b"'s removal is.
    let s2 = snap(&[res(EDS, "a", "1"), res(EDS, "c", "2")]);
    let out = st.on_snapshot(s2.clone());
    assert_eq!(summary(&out.responses), [(EDS, vec![], vec!["b"])]);
    // Re-subscribing "c" sends it, at its new version.
    let out = st.on_request(sub(EDS, &["c"], &[]));
    assert_eq!(summary(&out.responses), [(EDS, vec!["c"], vec![])]);
    assert!(selected(&st, EDS));

    // A reconnect naming exactly the current versions is sent nothing and keeps no
    // list; a later change is sent alone.
    let mut again = DeltaStream::new(s2.clone());
    let mut first = sub(EDS, &["a", "c"], &[]);
    first.initial_resource_versions = ["a", "c"]
        .iter()
        .map(|n| (n.to_string(), s2.resource_version(EDS, n).unwrap().into()))
        .collect();
    let out = again.on_request(first);
    assert!(out.responses.is_empty());
    assert!(selected(&again, EDS), "a current reconnect kept a list");
    // It runs this snapshot's selection: the node table must say so (as an ACK), or
    // the Envoy shows no EDS at all until EDS next changes.
    assert!(
        out.events.iter().any(|e| matches!(e,
            Event::Ack { type_url, version }
                if type_url == EDS && *version == s2.effective_type_version(EDS))),
        "{:?}",
        out.events
    );
    let out = again.on_snapshot(snap(&[res(EDS, "a", "2"), res(EDS, "c", "2")]));
    assert_eq!(summary(&out.responses), [(EDS, vec!["a"], vec![])]);
}
