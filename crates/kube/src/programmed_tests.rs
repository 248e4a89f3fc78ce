use std::collections::BTreeMap;

use portcullis_api::{ObjectKey, validate::validate};
use portcullis_plane::publish::to_snapshot;
use portcullis_translate::{Options, translate};
use portcullis_xds::{NackStatus, NodeStatus, Protocol, Snapshot, TypeStatus, type_url};

use super::*;
use crate::fixtures::{mk_route, mk_service};
use crate::fleet::summarize;

/// The condition as the leader computes it: from the nodes' grouped states.
fn cond(p: &Programmed, key: &ObjectKey, nodes: &[NodeStatus]) -> Option<Condition> {
    p.condition(key, &summarize(nodes))
}

fn publish(p: &mut Programmed, path: &str) -> Snapshot {
    let outcome = validate(
        &[mk_route("team", "items", 0, path, "echo")],
        &[mk_service("team", "echo")],
    );
    let snapshot = to_snapshot(&translate(&outcome.model, &Options::default()));
    p.record(&outcome.model, &snapshot);
    snapshot
}

/// Generation 2 of the Route, on another path: a new RDS version.
fn publish_edit(p: &mut Programmed) -> Snapshot {
    let mut edited = mk_route("team", "items", 0, "/items/v2", "echo");
    edited.metadata.generation = Some(2);
    let outcome = validate(&[edited], &[mk_service("team", "echo")]);
    let snapshot = to_snapshot(&translate(&outcome.model, &Options::default()));
    p.record(&outcome.model, &snapshot);
    snapshot
}

/// A node that ACKed `acked`'s versions of every type, optionally NACKing `nacked`'s.
fn node(id: &str, acked: &Snapshot, nacked: Option<(&Snapshot, &str)>) -> NodeStatus {
    let mut types = BTreeMap::new();
    for t in [
        type_url::CLUSTER,
        type_url::CLUSTER_LOAD_ASSIGNMENT,
        type_url::ROUTE_CONFIGURATION,
        type_url::LISTENER,
        type_url::SECRET,
    ] {
        types.insert(
            t.to_string(),
            TypeStatus {
                sent: acked.type_version(t).map(str::to_owned),
                acked: acked.type_version(t).map(str::to_owned),
                nack: nacked.and_then(|(s, msg)| {
                    Some(NackStatus {
                        version: s.type_version(t)?.to_owned(),
                        message: msg.into(),
                        at: "2026-11-22T00:00:00Z".into(),
                    })
                }),
                ..Default::default()
            },
        );
    }
    NodeStatus {
        stream_id: 1,
        id: id.into(),
        cluster: "portcullis".into(),
        protocol: Protocol::Sotw,
        peer: None,
        connected_at: "2026-11-22T00:00:00Z".into(),
        last_seen: "2026-11-22T00:00:00Z".into(),
        types,
    }
}

#[test]
fn true_when_every_node_acked_a_version_carrying_the_object() {
    let mut p = Programmed::default();
    let snap = publish(&mut p, "/items");
    let route = ObjectKey::route("team", "items");
    let service = ObjectKey::service("team", "echo");
    let nodes = [node("a", &snap, None), node("b", &snap, None)];
    for key in [&route, &service] {
        let c = cond(&p, key, &nodes).unwrap();
        assert!(c.is_true(), "{key}: {c:?}");
        assert_eq!(c.reason, "Programmed");
    }
    assert!(cond(&p, &ObjectKey::route("team", "nope"), &nodes).is_none());
}

#[test]
fn pending_until_the_new_version_is_acked() {
    let mut p = Programmed::default();
    let old = publish(&mut p, "/items");
    let new = publish_edit(&mut p);
    let route = ObjectKey::route("team", "items");
    let c = cond(&p, &route, &[node("a", &new, None), node("b", &old, None)]).unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "Pending"));
    assert!(c.message.contains("1 of 2"), "{}", c.message);
    // The Service did not change: the old CDS/EDS versions carry it too.
    let svc = cond(
        &p,
        &ObjectKey::service("team", "echo"),
        &[node("b", &old, None)],
    )
    .unwrap();
    assert!(svc.is_true(), "{svc:?}");
}

#[test]
fn false_with_envoys_message_when_nacked() {
    let mut p = Programmed::default();
    let old = publish(&mut p, "/items");
    let new = publish_edit(&mut p);
    let nodes = [node("edge-1", &old, Some((&new, "route: invalid regex")))];
    let c = cond(&p, &ObjectKey::route("team", "items"), &nodes).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "Rejected")
    );
    assert_eq!(
        c.message,
        "Envoy edge-1 rejected the configuration: route: invalid regex"
    );
}

#[test]
fn unknown_without_envoys() {
    let mut p = Programmed::default();
    publish(&mut p, "/items");
    let c = cond(&p, &ObjectKey::route("team", "items"), &[]).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("Unknown", "NoEnvoy")
    );
}

#[test]
fn rate_limit_services_are_not_waited_for() {
    let mut p = Programmed::default();
    let snap = publish(&mut p, "/items");
    let mut ratelimit = node("portcullis-ratelimit", &snap, None);
    ratelimit.types = [(
        portcullis_translate::RATE_LIMIT_CONFIG_TYPE_URL.to_string(),
        TypeStatus::default(),
    )]
    .into();
    let route = ObjectKey::route("team", "items");
    let c = cond(&p, &route, &[node("a", &snap, None), ratelimit.clone()]).unwrap();
    assert!(c.is_true(), "{c:?}");
    assert_eq!(c.message, "ACKed by 1 Envoy(s)");
    let c = cond(&p, &route, &[ratelimit]).unwrap();
    assert_eq!(c.reason, "NoEnvoy");
}

#[test]
fn counts_envoys_of_every_replica_and_names_a_rejecting_group() {
    let mut p = Programmed::default();
    let old = publish(&mut p, "/items");
    let new = publish_edit(&mut p);
    let route = ObjectKey::route("team", "items");
    // This replica: two Envoys on the new version. A peer: three more.
    let mut envoys = summarize(&[node("a-1", &new, None), node("a-2", &new, None)]);
    let peer: Vec<NodeStatus> = (1..=3)
        .map(|i| node(&format!("b-{i}"), &new, None))
        .collect();
    envoys.extend(summarize(&peer));
    let c = p.condition(&route, &envoys).unwrap();
    assert_eq!(c.message, "ACKed by 5 Envoy(s)");
    // The peer's three Envoys reject the new version (say, an older Envoy build).
    let peer: Vec<NodeStatus> = (1..=3)
        .map(|i| node(&format!("b-{i}"), &old, Some((&new, "unknown field"))))
        .collect();
    envoys.truncate(1);
    envoys.extend(summarize(&peer));
    let c = p.condition(&route, &envoys).unwrap();
    assert_eq!(c.reason, "Rejected");
    assert_eq!(
        c.message,
        "Envoy b-1 and 2 more rejected the configuration: unknown field"
    );
}

#[test]
fn a_host_is_programmed_once_envoy_runs_its_listener_and_certificate() {
    let key_pair = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["api.example.com".to_string()])
        .unwrap()
        .self_signed(&key_pair)
        .unwrap();
    let checked = portcullis_tls::check(
        &cert.pem(),
        &key_pair.serialize_pem(),
        "api.example.com",
        2_000_000_000,
    )
    .unwrap();
    let yaml = "---\napiVersion: portcullis.dev/v1alpha1\nkind: Host\nmetadata: {name: api, namespace: team}\nspec: {hostname: api.example.com, tls: {certificateFile: c, keyFile: k}}\n";
    let objects = portcullis_api::Objects::parse(yaml).unwrap();
    let host = ObjectKey::new("Host", &objects.hosts[0].metadata);
    let certificates = portcullis_api::Certificates::from([(
        host.clone(),
        portcullis_api::CertificateState {
            serving: Some(checked),
            ..Default::default()
        },
    )]);
    let outcome = portcullis_api::validate::validate_objects(
        &objects,
        &certificates,
        &portcullis_api::validate::Rules::file_mode(),
    );
    let options = Options {
        https_port: Some(0),
        ..Default::default()
    };
    let snapshot = to_snapshot(&translate(&outcome.model, &options));
    assert!(snapshot.type_version(type_url::SECRET).is_some());
    let mut p = Programmed::default();
    p.record(&outcome.model, &snapshot);
    let all = node("edge-1", &snapshot, None);
    let c = cond(&p, &host, std::slice::from_ref(&all)).unwrap();
    assert!(c.is_true(), "{c:?}");
    // An Envoy that has not ACKed the certificate's secret yet: pending.
    let mut no_secret = all.clone();
    no_secret.types.remove(type_url::SECRET);
    let c = cond(&p, &host, &[no_secret]).unwrap();
    assert_eq!(c.reason, "Pending", "{c:?}");
}

/// Publishes the Routes `(name, path, generation)` over one Service.
fn publish_routes(p: &mut Programmed, routes: &[(&str, &str, i64)]) -> Snapshot {
    let routes: Vec<_> = routes
        .iter()
        .map(|&(name, path, g)| {
            let mut r = mk_route("team", name, 0, path, "echo");
            r.metadata.generation = Some(g);
            r
        })
        .collect();
    let outcome = validate(&routes, &[mk_service("team", "echo")]);
    let snapshot = to_snapshot(&translate(&outcome.model, &Options::default()));
    p.record(&outcome.model, &snapshot);
    snapshot
}

fn status(p: &Programmed, key: &ObjectKey, acked: &Snapshot) -> String {
    cond(p, key, &[node("a", acked, None)]).unwrap().reason
}

#[test]
fn an_older_version_carries_what_did_not_change_since_and_nothing_that_did() {
    let mut p = Programmed::default();
    let (a, b) = (ObjectKey::route("team", "a"), ObjectKey::route("team", "b"));
    let v1 = publish_routes(&mut p, &[("a", "/a", 1), ("b", "/b", 1)]);
    let v2 = publish_routes(&mut p, &[("a", "/a", 1), ("b", "/b2", 2)]);
    let v3 = publish_routes(&mut p, &[("a", "/a", 1), ("b", "/b3", 3)]);
    assert_eq!(status(&p, &a, &v1), "Programmed", "a is unchanged since v1");
    assert_eq!(status(&p, &b, &v1), "Pending");
    assert_eq!(
        status(&p, &b, &v2),
        "Pending",
        "v2 carried b's generation 2"
    );
    assert_eq!(status(&p, &b, &v3), "Programmed");
}

#[test]
fn an_edit_undone_makes_the_old_version_current_again_and_the_one_between_stale() {
    let mut p = Programmed::default();
    let b = ObjectKey::route("team", "b");
    let v1 = publish_routes(&mut p, &[("b", "/b", 1)]);
    let v2 = publish_routes(&mut p, &[("b", "/b2", 2)]);
    // Generation 3 puts the path back: the same content, so the same version as v1.
    let v3 = publish_routes(&mut p, &[("b", "/b", 3)]);
    let rds = type_url::ROUTE_CONFIGURATION;
    assert_eq!(v1.type_version(rds), v3.type_version(rds));
    assert_eq!(
        status(&p, &b, &v1),
        "Programmed",
        "v1 is what is served now"
    );
    assert_eq!(status(&p, &b, &v2), "Pending", "v2 carried generation 2");
}

#[test]
fn an_object_that_left_and_came_back_is_carried_only_from_its_return() {
    let mut p = Programmed::default();
    let b = ObjectKey::route("team", "b");
    let v1 = publish_routes(&mut p, &[("a", "/a", 1), ("b", "/b", 1)]);
    let v2 = publish_routes(&mut p, &[("a", "/a", 1)]);
    assert!(
        cond(&p, &b, &[node("a", &v2, None)]).is_none(),
        "not served"
    );
    let v3 = publish_routes(&mut p, &[("a", "/a", 1), ("b", "/b", 1)]);
    // v3 has v1's content and so v1's version: republished, it is current again.
    assert_eq!(status(&p, &b, &v3), "Programmed");
    assert_eq!(status(&p, &b, &v2), "Pending", "v2 did not carry b");
    assert_eq!(status(&p, &b, &v1), "Programmed");
}

#[test]
fn versions_older_than_the_history_are_not_programmed() {
    let mut p = Programmed::default();
    let a = ObjectKey::route("team", "a");
    let first = publish_routes(&mut p, &[("a", "/a", 1), ("b", "/b0", 1)]);
    let mut last = first.clone();
    for i in 1..=HISTORY {
        last = publish_routes(&mut p, &[("a", "/a", 1), ("b", &format!("/b{i}"), 1)]);
    }
    assert_eq!(status(&p, &a, &last), "Programmed");
    assert_eq!(
        status(&p, &a, &first),
        "Pending",
        "forgotten: the safe answer"
    );
}

#[test]
fn a_record_that_skips_unchanged_entries_decides_as_one_that_places_every_entry() {
    use portcullis_api::{
        Certificates, Objects, Route,
        validate::{Memo, Rules, validate_objects},
    };
    use std::sync::Arc;

    // Two Programmeds: one fed the models a memo makes (unchanged Routes keep their
    // entries, the same allocations, which `record` skips), one fed models built
    // afresh (every entry new, so every one is placed). Over random edits, removals,
    // returns and conflicts (a shared path refuses the younger Route), every Route's
    // condition must agree for a node that ACKed any recent version, and a Route has
    // a condition exactly while it is served.
    let names = ["a", "b", "c", "d", "e", "f"];
    let paths = ["/p0", "/p1", "/p2", "/p3", "/p4", "/p5", "/p6", "/p7"];
    let service = Arc::new(mk_service("team", "echo"));
    let mut routes: BTreeMap<&str, Arc<Route>> = BTreeMap::new();
    let (mut skipping, mut placing) = (Programmed::default(), Programmed::default());
    let mut memo = Memo::new();
    let rules = Rules::file_mode();
    let mut history: Vec<Snapshot> = Vec::new();
    let mut last_entries: Vec<Arc<portcullis_api::RouteEntry>> = Vec::new();
    let (mut shared, mut left) = (0, 0);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    for step in 0..300 {
        let name = names[next(names.len())];
        match (routes.get(name), next(4)) {
            (Some(_), 0) => {
                routes.remove(name);
            }
            (old, _) => {
                let age = names.iter().position(|n| *n == name).unwrap() as i64;
                let mut r = mk_route("team", name, age, paths[next(paths.len())], "echo");
                r.metadata.generation = Some(old.map_or(1, |o| o.metadata.generation.unwrap() + 1));
                routes.insert(name, Arc::new(r));
            }
        }
        let objects = Objects {
            routes: routes.values().cloned().collect(),
            services: vec![service.clone()],
            hosts: Vec::new(),
        };
        let kept = memo.validate(&objects, &Certificates::new(), &rules);
        let fresh = validate_objects(&objects, &Certificates::new(), &rules);
        let snapshot = to_snapshot(&translate(&kept.model, &Options::default()));
        let again = to_snapshot(&translate(&fresh.model, &Options::default()));
        for t in TYPES {
            assert_eq!(
                snapshot.type_version(t),
                again.type_version(t),
                "step {step}"
            );
        }
        skipping.record(&kept.model, &snapshot);
        placing.record(&fresh.model, &snapshot);
        let served = |key: &ObjectKey| kept.model.routes.iter().any(|e| &e.key == key);
        shared += kept
            .model
            .routes
            .iter()
            .filter(|e| last_entries.iter().any(|l| Arc::ptr_eq(l, e)))
            .count();
        left += last_entries.iter().filter(|e| !served(&e.key)).count();
        last_entries = kept.model.routes.clone();
        history.push(snapshot);
        for name in names {
            let key = ObjectKey::route("team", name);
            for acked in history.iter().rev().take(8) {
                let nodes = [node("n", acked, None)];
                let c = cond(&skipping, &key, &nodes);
                assert_eq!(c.is_some(), served(&key), "step {step}, {key}: {c:?}");
                assert_eq!(c, cond(&placing, &key, &nodes), "step {step}, {key}");
            }
        }
    }
    assert!(shared > 300, "the memo kept entries {shared} times");
    assert!(left > 20, "Routes left the served set {left} times");
}
