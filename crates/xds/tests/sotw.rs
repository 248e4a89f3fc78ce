//! State-of-the-World ADS against a real server.

mod common;

use common::{Harness, payloads, res, snap};
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::google::rpc::Status;
use portcullis_xds::type_url::{CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION};

const CUSTOM: &str = "type.googleapis.com/portcullis.ratelimit.v1.Config";

#[tokio::test]
async fn wildcard_cds_ack_and_push() {
    let h = Harness::start(snap(&[res(CLUSTER, "a", "a1"), res(CLUSTER, "b", "b1")])).await;
    let mut c = h.sotw().await;
    c.request(CLUSTER, &[], "", "").await;
    let r = c.recv().await;
    assert_eq!(r.type_url, CLUSTER);
    assert_eq!(payloads(&r), ["a1", "b1"]);
    let v1 = h.cache.snapshot().type_version(CLUSTER).unwrap().to_owned();
    assert_eq!(r.version_info, v1);
    c.ack(&r, &[]).await;
    h.eventually("ACK in debug", |d| {
        d["nodes"][0]["types"][CLUSTER]["acked"] == v1.as_str()
            && d["nodes"][0]["id"] == "node-1"
            && d["nodes"][0]["protocol"] == "sotw"
    })
    .await;
    assert_eq!(h.metric("portcullis_xds_acks_total", "Cluster"), 1.0);
    assert_eq!(h.metric("portcullis_xds_connected_streams", "sotw"), 1.0);

    // Same content again: no push.
    h.cache
        .set_snapshot(snap(&[res(CLUSTER, "b", "b1"), res(CLUSTER, "a", "a1")]));
    c.expect_silence().await;

    h.cache.set_snapshot(snap(&[
        res(CLUSTER, "a", "a1"),
        res(CLUSTER, "b", "b1"),
        res(CLUSTER, "c", "c1"),
    ]));
    let r2 = c.recv().await;
    assert_eq!(payloads(&r2), ["a1", "b1", "c1"]);
    assert_ne!(r2.version_info, v1);
    assert_ne!(r2.nonce, r.nonce);
    c.ack(&r2, &[]).await;
    h.eventually("second ACK", |d| {
        d["nodes"][0]["types"][CLUSTER]["acked"] == r2.version_info.as_str()
    })
    .await;

    let d = h.cache.debug();
    assert_eq!(d["snapshot"]["types"][CLUSTER]["resources"], 3);
    assert_eq!(d["nacks_total"], 0);
    h.stop().await;
}

#[tokio::test]
async fn eds_named_subscription_and_name_change() {
    let h = Harness::start(snap(&[
        res(CLUSTER_LOAD_ASSIGNMENT, "a", "a1"),
        res(CLUSTER_LOAD_ASSIGNMENT, "b", "b1"),
        res(CLUSTER_LOAD_ASSIGNMENT, "c", "c1"),
    ]))
    .await;
    let mut c = h.sotw().await;
    c.request(CLUSTER_LOAD_ASSIGNMENT, &["b"], "", "").await;
    let r = c.recv().await;
    assert_eq!(payloads(&r), ["b1"]);
    // Envoy adds a cluster: the ACK carries the new name list.
    c.ack(&r, &["b", "c"]).await;
    let r2 = c.recv().await;
    assert_eq!(payloads(&r2), ["b1", "c1"]);
    c.ack(&r2, &["b", "c"]).await;
    c.expect_silence().await;
    h.stop().await;
}

#[tokio::test]
async fn reconnect_with_current_version_gets_nothing() {
    let h = Harness::start(snap(&[res(CLUSTER, "a", "a1")])).await;
    let v = h.cache.snapshot().type_version(CLUSTER).unwrap().to_owned();
    let mut c = h.sotw().await;
    c.request(CLUSTER, &[], &v, "").await;
    c.expect_silence().await;
    h.eventually("reconnect counts as acked", |d| {
        d["nodes"][0]["types"][CLUSTER]["acked"] == v.as_str()
    })
    .await;
    // The stream is alive: a real change is pushed.
    h.cache.set_snapshot(snap(&[res(CLUSTER, "a", "a2")]));
    assert_eq!(payloads(&c.recv().await), ["a2"]);
    h.stop().await;
}

#[tokio::test]
async fn nack_is_recorded_and_not_resent() {
    let h = Harness::start(snap(&[res(CLUSTER, "a", "a1")])).await;
    let mut c = h.sotw().await;
    c.request(CLUSTER, &[], "", "").await;
    let r = c.recv().await;
    c.send(DiscoveryRequest {
        type_url: CLUSTER.into(),
        version_info: String::new(),
        response_nonce: r.nonce.clone(),
        error_detail: Some(Status {
            code: 3,
            message: "cluster a: invalid lb policy".into(),
            details: vec![],
        }),
        ..Default::default()
    })
    .await;
    h.eventually("NACK in debug", |d| {
        let nack = &d["nodes"][0]["types"][CLUSTER]["nack"];
        nack["message"] == "cluster a: invalid lb policy"
            && nack["version"] == r.version_info.as_str()
            && nack["at"].is_string()
    })
    .await;
    assert_eq!(h.cache.debug()["nacks_total"], 1);
    assert_eq!(h.metric("portcullis_xds_nacks_total", "Cluster"), 1.0);
    let status = &h.cache.nodes()[0].types[CLUSTER];
    assert_eq!(status.sent.as_deref(), Some(r.version_info.as_str()));
    assert_eq!(status.acked, None);
    c.expect_silence().await;

    // A fixed snapshot is pushed, and its ACK clears the NACK.
    h.cache.set_snapshot(snap(&[res(CLUSTER, "a", "a2")]));
    let r2 = c.recv().await;
    c.ack(&r2, &[]).await;
    h.eventually("NACK cleared", |d| {
        d["nodes"][0]["types"][CLUSTER]["nack"].is_null()
            && d["nodes"][0]["types"][CLUSTER]["acked"] == r2.version_info.as_str()
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn stale_nonce_is_ignored() {
    let h = Harness::start(snap(&[res(CLUSTER_LOAD_ASSIGNMENT, "a", "a1")])).await;
    let mut c = h.sotw().await;
    c.request(CLUSTER_LOAD_ASSIGNMENT, &["a"], "", "").await;
    let r1 = c.recv().await;
    h.cache
        .set_snapshot(snap(&[res(CLUSTER_LOAD_ASSIGNMENT, "a", "a2")]));
    let r2 = c.recv().await;
    // Late ACK of r1 (with a different name list): stale, no effect.
    c.ack(&r1, &["a", "b"]).await;
    c.expect_silence().await;
    assert_eq!(
        h.metric("portcullis_xds_acks_total", "ClusterLoadAssignment"),
        0.0
    );
    c.ack(&r2, &["a"]).await;
    h.eventually("ACK of r2", |d| {
        d["nodes"][0]["types"][CLUSTER_LOAD_ASSIGNMENT]["acked"] == r2.version_info.as_str()
    })
    .await;
    c.expect_silence().await;
    h.stop().await;
}

#[tokio::test]
async fn removal_ordering() {
    let h = Harness::start(snap(&[
        res(CLUSTER, "keep", "c-keep"),
        res(CLUSTER, "old", "c-old"),
        res(CLUSTER_LOAD_ASSIGNMENT, "keep", "e-keep"),
        res(CLUSTER_LOAD_ASSIGNMENT, "old", "e-old"),
        res(LISTENER, "l", "l1"),
        res(ROUTE_CONFIGURATION, "r", "r1"),
    ]))
    .await;
    let mut c = h.sotw().await;
    for (t, names) in [
        (CLUSTER, vec![]),
        (CLUSTER_LOAD_ASSIGNMENT, vec!["keep", "old"]),
        (LISTENER, vec![]),
        (ROUTE_CONFIGURATION, vec!["r"]),
    ] {
        c.request(t, &names, "", "").await;
        let r = c.recv().await;
        assert_eq!(r.type_url, t);
        c.ack(&r, &names).await;
    }
    h.eventually("all ACKed", |d| {
        d["nodes"][0]["types"]
            .as_object()
            .is_some_and(|t| t.len() == 4 && t.values().all(|s| !s["acked"].is_null()))
    })
    .await;

    // Add cluster "new" with a route to it, remove cluster "old".
    h.cache.set_snapshot(snap(&[
        res(CLUSTER, "keep", "c-keep"),
        res(CLUSTER, "new", "c-new"),
        res(CLUSTER_LOAD_ASSIGNMENT, "keep", "e-keep"),
        res(CLUSTER_LOAD_ASSIGNMENT, "new", "e-new"),
        res(LISTENER, "l", "l2"),
        res(ROUTE_CONFIGURATION, "r", "r2-to-new"),
    ]));
    let mut seen = Vec::new();
    for _ in 0..6 {
        let r = c.recv().await;
        seen.push((
            r.type_url.clone(),
            r.version_info.ends_with("-keep"),
            payloads(&r),
        ));
    }
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        seen,
        [
            (CLUSTER.to_string(), true, s(&["c-keep", "c-new", "c-old"])),
            // Named EDS: "new" is not subscribed yet, "old" is kept for now.
            (
                CLUSTER_LOAD_ASSIGNMENT.to_string(),
                true,
                s(&["e-keep", "e-old"])
            ),
            (LISTENER.to_string(), false, s(&["l2"])),
            (ROUTE_CONFIGURATION.to_string(), false, s(&["r2-to-new"])),
            (CLUSTER.to_string(), false, s(&["c-keep", "c-new"])),
            (CLUSTER_LOAD_ASSIGNMENT.to_string(), false, s(&["e-keep"])),
        ]
    );
    c.expect_silence().await;
    h.stop().await;
}

#[tokio::test]
async fn custom_type_is_served() {
    let h = Harness::start(snap(&[res(CUSTOM, "limits", "\u{0}\u{1}opaque")])).await;
    let mut c = h.sotw().await;
    c.request(CUSTOM, &[], "", "").await;
    let r = c.recv().await;
    assert_eq!(r.type_url, CUSTOM);
    assert_eq!(r.resources[0].type_url, CUSTOM);
    assert_eq!(r.resources[0].value, b"\x00\x01opaque");
    c.ack(&r, &[]).await;
    h.cache.set_snapshot(snap(&[res(CUSTOM, "limits", "v2")]));
    assert_eq!(payloads(&c.recv().await), ["v2"]);
    h.stop().await;
}

#[tokio::test]
async fn missing_type_wildcard_gets_empty_response() {
    let h = Harness::start(snap(&[res(CLUSTER, "a", "a1")])).await;
    let mut c = h.sotw().await;
    c.request(LISTENER, &[], "", "").await;
    let r = c.recv().await;
    assert!(r.resources.is_empty());
    assert!(!r.version_info.is_empty());
    c.ack(&r, &[]).await;
    c.expect_silence().await;
    h.stop().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams_and_disconnect_removes_node() {
    let h = Harness::start(snap(&[res(CLUSTER, "a", "a1")])).await;
    let mut c1 = h.sotw().await;
    c1.request(CLUSTER, &[], "", "").await;
    c1.recv().await;
    {
        let mut c2 = h.sotw().await;
        c2.request(CLUSTER, &[], "", "").await;
        c2.recv().await;
        assert_eq!(h.cache.nodes().len(), 2);
    }
    h.eventually("dropped stream removed", |d| {
        d["nodes"].as_array().is_some_and(|n| n.len() == 1)
    })
    .await;
    let stopping = tokio::spawn(async move { h.stop().await });
    c1.expect_end().await;
    tokio::time::timeout(common::WAIT, stopping)
        .await
        .expect("shutdown hung")
        .unwrap();
}

/// A client cannot grow a stream's state without bound: the 17th type URL, a name
/// longer than 1 KiB and a node id change each end the stream with a status.
#[tokio::test]
async fn a_stream_past_its_bounds_is_closed_with_the_reason() {
    let h = Harness::start(snap(&[res(CLUSTER, "a", "a1")])).await;
    let mut c = h.sotw().await;
    for i in 0..portcullis_xds::limits::MAX_TYPES {
        c.request(&format!("type.googleapis.com/x.T{i}"), &[], "", "")
            .await;
    }
    c.request("type.googleapis.com/x.One.Too.Many", &[], "", "")
        .await;
    let s = c.expect_status(tonic::Code::ResourceExhausted).await;
    assert!(s.message().contains("at most 16 types"), "{s:?}");

    let mut c = h.sotw().await;
    c.request(CLUSTER, &[&"n".repeat(2000)], "", "").await;
    c.expect_status(tonic::Code::InvalidArgument).await;

    let mut c = h.sotw().await;
    c.request(CLUSTER, &[], "", "").await;
    let _ = c.recv().await;
    c.send(DiscoveryRequest {
        node: Some(common::node("someone-else")),
        type_url: LISTENER.into(),
        ..Default::default()
    })
    .await;
    c.expect_status(tonic::Code::InvalidArgument).await;
}

/// A request over the size bound ends its stream with OUT_OF_RANGE, naming the bound,
/// and the server goes on serving: a large request sent in many HTTP/2 frames, on
/// another stream, is read whole.
#[tokio::test]
async fn an_oversized_request_ends_only_its_stream() {
    let h = Harness::start(snap(&[res(CLUSTER, "a", "a1")])).await;
    let mut big = h.sotw().await;
    // 5,000 names of 1,000 bytes: ~5 MB, over the 4 MiB bound (and each name within its own).
    let long: Vec<String> = (0..5000).map(|i| format!("{i:01000}")).collect();
    let names: Vec<&str> = long.iter().map(String::as_str).collect();
    big.request(CLUSTER_LOAD_ASSIGNMENT, &names, "", "").await;
    let s = big.expect_status(tonic::Code::OutOfRange).await;
    assert!(s.message().contains("the limit is: 4194304"), "{s:?}");

    let mut c = h.sotw().await;
    // ~2 MB: read across many frames, then answered.
    c.request(CLUSTER, &names[..2000], "", "").await;
    let r = c.recv().await;
    assert_eq!(r.type_url, CLUSTER);
    assert!(r.resources.is_empty(), "none of those names exists");
    c.request(CLUSTER, &["a"], &r.version_info, &r.nonce).await;
    assert_eq!(c.recv().await.resources.len(), 1);
}
