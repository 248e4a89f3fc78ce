//! A resource Envoy rejects: the last good version keeps serving, the rejection shows on
//! `/debug/xds` with Envoy's message, and the rejected version is not re-sent in a loop.
use std::{sync::Arc, time::Duration};

use envoy_types::pb::envoy::config::route::v3::VirtualHost;
use portcullis_plane::{admin, publish::to_snapshot};
use portcullis_translate::{Options, translate};
use portcullis_xds::Cache;
use tokio::net::TcpListener;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_resource_keeps_last_good_version_and_is_reported() {
    let registry = prometheus::Registry::new();
    let cache = Cache::new(&registry);
    let xds = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let xds_addr = xds.local_addr().unwrap();
    tokio::spawn(portcullis_xds::serve(
        xds,
        cache.clone(),
        std::future::pending(),
    ));
    let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin_listener.local_addr().unwrap();
    let debug_url = format!("http://{admin_addr}/debug/xds");
    let state = admin::AdminState {
        cache: cache.clone(),
        registry: registry.clone(),
        board: Default::default(),
        model: Default::default(),
        ready: Arc::new(true.into()),
    };
    tokio::spawn(async move {
        axum::serve(admin_listener, admin::router(state, Default::default())).await
    });

    let services = service_yaml("one", echo("one").await) + &service_yaml("two", echo("two").await);
    let options = Options {
        listen_address: "127.0.0.1".into(),
        listen_port: 0,
        ..Default::default()
    };
    let good = translate(
        &model(
            &(services.clone()
                + &route_yaml(
                    "r",
                    "{match: {paths: [{prefix: /}]}, backends: [{service: one}]}",
                )),
        ),
        &options,
    );
    cache.set_snapshot(to_snapshot(&good));
    let gw = Gateway::start(xds_addr, "nack", false).await;
    wait_synced(&debug_url, None, STARTUP).await;
    assert_eq!(gw.get("x.test", "/").await.backend.as_deref(), Some("one"));

    // The next version moves traffic to "two" but carries a virtual host without
    // domains, which Envoy's proto validation rejects.
    let mut bad = translate(
        &model(
            &(services
                + &route_yaml(
                    "r",
                    "{match: {paths: [{prefix: /}]}, backends: [{service: two}]}",
                )),
        ),
        &options,
    );
    bad.route_configs[0].virtual_hosts.push(VirtualHost {
        name: "broken".into(),
        ..Default::default()
    });
    let bad_snapshot = to_snapshot(&bad);
    let bad_version = bad_snapshot
        .type_version(portcullis_xds::type_url::ROUTE_CONFIGURATION)
        .unwrap()
        .to_owned();
    cache.set_snapshot(bad_snapshot);

    let rds = portcullis_xds::type_url::ROUTE_CONFIGURATION;
    let deadline = std::time::Instant::now() + STARTUP;
    let nack = loop {
        let debug = get_json(&debug_url).await;
        let nack = debug["nodes"][0]["types"][rds]["nack"].clone();
        if !nack.is_null() {
            assert!(debug["nacks_total"].as_u64().unwrap() >= 1);
            break nack;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no NACK recorded: {debug:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(nack["version"], bad_version.as_str());
    let message = nack["message"].as_str().unwrap();
    assert!(
        message.contains("domains"),
        "Envoy's error_detail should be shown: {message}"
    );

    // The console lists the NACK under Problems with Envoy's message, and the Fleet
    // marks the type rejected while the others stay in sync.
    let (status, problems) = fetch(&format!("http://{admin_addr}/")).await.unwrap();
    assert_eq!(status, 200);
    let item = problems
        .split("<li class=\"problem")
        .find(|p| p.contains("data-kind=\"NACK\""))
        .unwrap_or_else(|| panic!("no NACK under Problems: {problems}"));
    assert!(
        item.contains("Envoy nack") && item.contains("rejected RouteConfiguration"),
        "{item}"
    );
    assert!(item.contains("domains") && item.contains("Fix:"), "{item}");
    let (_, fleet) = fetch(&format!("http://{admin_addr}/fleet")).await.unwrap();
    assert_eq!(
        fleet
            .matches("<span class=\"badge error\">NACK</span>")
            .count(),
        1,
        "{fleet}"
    );
    assert_eq!(
        fleet
            .matches("<span class=\"badge ok\">in sync</span>")
            .count(),
        3,
        "{fleet}"
    );

    // The last good version keeps serving.
    for _ in 0..20 {
        assert_eq!(gw.get("x.test", "/").await.backend.as_deref(), Some("one"));
    }
    // Not re-sent in a loop: Envoy rejected it exactly once, also a second later.
    let rejected = "http.http.rds.portcullis.update_rejected";
    assert_eq!(gw.stat(rejected).await, 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        gw.stat(rejected).await,
        1,
        "the rejected version was sent again"
    );
    let metrics = portcullis_process::render_metrics(&registry);
    assert!(
        metrics.lines().any(|l| l.starts_with("portcullis_xds_nacks_total{type_url=\"RouteConfiguration\"} 1")),
        "{metrics}"
    );
    // The rejecting node counts as one running old config; the good version's push
    // (install to ACK) was timed once per type, the rejected one not at all.
    assert!(
        metrics.contains("portcullis_xds_nacked_streams 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_xds_push_seconds_count{type_url=\"RouteConfiguration\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_xds_nacks_total{type_url=\"Cluster\"} 0"),
        "counters exist at 0: {metrics}"
    );
}
