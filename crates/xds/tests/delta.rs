//! Delta (incremental) ADS against a real server.

mod common;

use common::{Harness, delta_names, res, snap};
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use envoy_types::pb::google::rpc::Status;
use portcullis_xds::type_url::{CLUSTER, LISTENER, ROUTE_CONFIGURATION};

#[tokio::test]
async fn wildcard_changes_and_removals() {
    let h = Harness::start(snap(&[
        res(CLUSTER, "a", "a1"),
        res(CLUSTER, "b", "b1"),
        res(LISTENER, "l", "l1"),
    ]))
    .await;
    let mut c = h.delta().await;
    c.subscribe(CLUSTER, &[], &[]).await;
    let r = c.recv().await;
    assert_eq!(delta_names(&r), ["a", "b"]);
    assert_eq!(
        r.system_version_info,
        h.cache.snapshot().type_version(CLUSTER).unwrap()
    );
    assert_eq!(
        r.resources[0].version,
        h.cache.snapshot().resource_version(CLUSTER, "a").unwrap()
    );
    c.ack(&r).await;
    c.subscribe(LISTENER, &["*"], &[]).await;
    let rl = c.recv().await;
    assert_eq!(delta_names(&rl), ["l"]);
    c.ack(&rl).await;
    h.eventually("ACKs in debug", |d| {
        let t = &d["nodes"][0]["types"];
        d["nodes"][0]["protocol"] == "delta"
            && t[CLUSTER]["acked"] == r.system_version_info.as_str()
            && t[LISTENER]["acked"] == rl.system_version_info.as_str()
    })
    .await;

    // Only the changed resource is sent.
    h.cache.set_snapshot(snap(&[
        res(CLUSTER, "a", "a2"),
        res(CLUSTER, "b", "b1"),
        res(LISTENER, "l", "l1"),
    ]));
    let r2 = c.recv().await;
    assert_eq!(delta_names(&r2), ["a"]);
    assert!(r2.removed_resources.is_empty());
    c.ack(&r2).await;

    // Removal of a cluster arrives after the listener update.
    h.cache
        .set_snapshot(snap(&[res(CLUSTER, "a", "a2"), res(LISTENER, "l", "l2")]));
    let r3 = c.recv().await;
    assert_eq!(
        (r3.type_url.as_str(), delta_names(&r3)),
        (LISTENER, vec!["l"])
    );
    let r4 = c.recv().await;
    assert_eq!(r4.type_url, CLUSTER);
    assert!(r4.resources.is_empty());
    assert_eq!(r4.removed_resources, ["b"]);
    c.ack(&r3).await;
    c.ack(&r4).await;
    c.expect_silence().await;
    h.stop().await;
}

#[tokio::test]
async fn initial_resource_versions_skip_unchanged() {
    let h = Harness::start(snap(&[res(CLUSTER, "a", "a1"), res(CLUSTER, "b", "b1")])).await;
    let s = h.cache.snapshot();
    let mut c = h.delta().await;
    c.send(DeltaDiscoveryRequest {
        type_url: CLUSTER.into(),
        initial_resource_versions: s
            .resources(CLUSTER)
            .map(|r| {
                let v = s.resource_version(CLUSTER, &r.name).unwrap();
                (r.name.clone(), v.to_owned())
            })
            .collect(),
        ..Default::default()
    })
    .await;
    c.expect_silence().await;
    h.cache
        .set_snapshot(snap(&[res(CLUSTER, "a", "a1"), res(CLUSTER, "b", "b2")]));
    let r = c.recv().await;
    assert_eq!(delta_names(&r), ["b"]);
    h.stop().await;
}

#[tokio::test]
async fn nack_is_recorded_and_not_resent() {
    let h = Harness::start(snap(&[res(CLUSTER, "a", "a1")])).await;
    let mut c = h.delta().await;
    c.subscribe(CLUSTER, &[], &[]).await;
    let r = c.recv().await;
    c.send(DeltaDiscoveryRequest {
        type_url: CLUSTER.into(),
        response_nonce: r.nonce.clone(),
        error_detail: Some(Status {
            code: 3,
            message: "rejected a".into(),
            details: vec![],
        }),
        ..Default::default()
    })
    .await;
    h.eventually("NACK in debug", |d| {
        let nack = &d["nodes"][0]["types"][CLUSTER]["nack"];
        nack["message"] == "rejected a" && nack["version"] == r.system_version_info.as_str()
    })
    .await;
    assert_eq!(h.metric("portcullis_xds_nacks_total", "Cluster"), 1.0);
    c.expect_silence().await;
    h.stop().await;
}

#[tokio::test]
async fn explicit_subscribe_and_unsubscribe() {
    let h = Harness::start(snap(&[
        res(ROUTE_CONFIGURATION, "r1", "v1"),
        res(ROUTE_CONFIGURATION, "r2", "v1"),
    ]))
    .await;
    let mut c = h.delta().await;
    c.subscribe(ROUTE_CONFIGURATION, &["r1", "missing"], &[])
        .await;
    let r = c.recv().await;
    assert_eq!(delta_names(&r), ["r1"]);
    c.ack(&r).await;
    c.subscribe(ROUTE_CONFIGURATION, &["r2"], &["r1"]).await;
    let r = c.recv().await;
    assert_eq!(delta_names(&r), ["r2"]);
    assert!(r.removed_resources.is_empty());
    c.ack(&r).await;
    // r1 is no longer of interest: its change is not sent.
    h.cache.set_snapshot(snap(&[
        res(ROUTE_CONFIGURATION, "r1", "v2"),
        res(ROUTE_CONFIGURATION, "r2", "v1"),
    ]));
    c.expect_silence().await;
    h.stop().await;
}
