//! Two controller replicas, each with its own Envoy: the lease holder's `Programmed`
//! counts the peer's Envoy and shows the peer Envoy's NACK message, learnt through
//! the report ConfigMap the peer publishes (built, serialized and read back by the
//! same code as in a cluster; only the API server in between is missing here).
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::route::v3::VirtualHost;
use portcullis_api::ObjectKey;
use portcullis_kube::{
    fleet::{FleetReport, summarize},
    fleet_sync::{FleetConfig, Peers, to_configmap},
    programmed::Programmed,
};
use portcullis_plane::publish::to_snapshot;
use portcullis_translate::{Options, translate};
use portcullis_xds::{Cache, type_url::ROUTE_CONFIGURATION};
use tokio::net::TcpListener;

use crate::harness::*;

async fn replica() -> (Cache, std::net::SocketAddr) {
    let cache = Cache::new(&prometheus::Registry::new());
    let xds = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = xds.local_addr().unwrap();
    tokio::spawn(portcullis_xds::serve(
        xds,
        cache.clone(),
        std::future::pending(),
    ));
    (cache, addr)
}

/// Waits until the one node on `cache` has ACKed (or, with `nacked`, rejected)
/// route version `version`.
async fn wait_for(cache: &Cache, version: &str, nacked: bool) {
    let deadline = Instant::now() + STARTUP;
    loop {
        let nodes = cache.nodes();
        let state = nodes.first().and_then(|n| n.types.get(ROUTE_CONFIGURATION));
        let seen = state.is_some_and(|s| match nacked {
            false => s.acked.as_deref() == Some(version),
            true => s.nack.as_ref().is_some_and(|n| n.version == version),
        });
        if seen {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Envoy did not {} {version}: {nodes:#?}",
            if nacked { "reject" } else { "ACK" }
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What replica "b" would write to its ConfigMap, as the leader lists it.
fn peer_configmap(cache: &Cache, rv: &str) -> k8s_openapi::api::core::v1::ConfigMap {
    let config = FleetConfig {
        namespace: "portcullis-system".into(),
        lease_name: "portcullis".into(),
        replica: "b".into(),
        pod_uid: "uid-b".into(),
    };
    let report = FleetReport {
        replica: "b".into(),
        updated_at: jiff::Timestamp::now().to_string(),
        envoys: summarize(&cache.nodes()),
    };
    let mut cm = to_configmap(&config, &report);
    cm.metadata.resource_version = Some(rv.into());
    // Through JSON, as the API server stores and returns it.
    serde_json::from_value(serde_json::to_value(cm).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_reports_acks_and_nacks_of_envoys_on_other_replicas() {
    let (leader, leader_xds) = replica().await;
    let (peer, peer_xds) = replica().await;
    let services = service_yaml("one", echo("one").await) + &service_yaml("two", echo("two").await);
    let options = Options {
        listen_address: "127.0.0.1".into(),
        listen_port: 0,
        ..Default::default()
    };
    let mut programmed = Programmed::default();
    let good_model = model(
        &(services.clone()
            + &route_yaml(
                "r",
                "{match: {paths: [{prefix: /}]}, backends: [{service: one}]}",
            )),
    );
    let good = to_snapshot(&translate(&good_model, &options));
    programmed.record(&good_model, &good);
    let good_version = good.type_version(ROUTE_CONFIGURATION).unwrap().to_owned();
    leader.set_snapshot(good.clone());
    peer.set_snapshot(good);
    let _envoy_a = Gateway::start(leader_xds, "envoy-a", false).await;
    let envoy_b = Gateway::start(peer_xds, "envoy-b", true).await;
    wait_for(&leader, &good_version, false).await;
    wait_for(&peer, &good_version, false).await;
    assert_eq!(
        envoy_b.get("x.test", "/").await.backend.as_deref(),
        Some("one")
    );

    let route = ObjectKey::route("e2e", "r");
    let mut peers = Peers::default();
    let fleet = |peers: &Peers| {
        let mut envoys = summarize(&leader.nodes());
        envoys.extend(peers.envoys("a", Instant::now(), jiff::Timestamp::now()));
        envoys
    };
    // On its own Envoys alone the leader would claim one; with the peer's report, two.
    assert_eq!(
        programmed
            .condition(&route, &summarize(&leader.nodes()))
            .unwrap()
            .message,
        "ACKed by 1 Envoy(s)"
    );
    peers.ingest(&[peer_configmap(&peer, "1")], Instant::now());
    let c = programmed.condition(&route, &fleet(&peers)).unwrap();
    assert!(c.is_true(), "{c:?}");
    assert_eq!(c.message, "ACKed by 2 Envoy(s)");

    // Generation 2 of the Route moves traffic to "two"; the peer's Envoy rejects it
    // (a virtual host without domains stands in for, say, a field an older Envoy
    // build does not know). The leader's Envoy has not got it yet.
    let mut bad_model = model(
        &(services
            + &route_yaml(
                "r",
                "{match: {paths: [{prefix: /}]}, backends: [{service: two}]}",
            )),
    );
    std::sync::Arc::make_mut(&mut std::sync::Arc::make_mut(&mut bad_model.routes[0]).route)
        .metadata
        .generation = Some(2);
    let mut bad = translate(&bad_model, &options);
    bad.route_configs[0].virtual_hosts.push(VirtualHost {
        name: "broken".into(),
        ..Default::default()
    });
    let bad = to_snapshot(&bad);
    programmed.record(&bad_model, &bad);
    let bad_version = bad.type_version(ROUTE_CONFIGURATION).unwrap().to_owned();
    peer.set_snapshot(bad);
    wait_for(&peer, &bad_version, true).await;

    peers.ingest(&[peer_configmap(&peer, "2")], Instant::now());
    let c = programmed.condition(&route, &fleet(&peers)).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "Rejected")
    );
    assert!(
        c.message
            .starts_with("Envoy envoy-b rejected the configuration: ")
            && c.message.contains("domains"),
        "the peer Envoy's own message: {}",
        c.message
    );
    // The peer's Envoy keeps serving the last good version.
    assert_eq!(
        envoy_b.get("x.test", "/").await.backend.as_deref(),
        Some("one")
    );
}
