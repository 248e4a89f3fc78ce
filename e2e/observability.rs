//! Golden signals end to end: a real Prometheus scrapes Envoy and the control plane,
//! and a golden-signal query over the Service and Route names returns the traffic sent.
use std::{process::Stdio, time::Duration};

use serde_json::Value;

use crate::harness::*;

fn prometheus_bin() -> String {
    for p in ["/usr/bin/prometheus", "/usr/local/bin/prometheus"] {
        if std::path::Path::new(p).is_file() {
            return p.into();
        }
    }
    panic!("prometheus not found: `make tools` installs it (apt-get install prometheus)");
}

async fn query(base: &str, expr: &str) -> Vec<Value> {
    let url = format!("{base}/api/v1/query?query={}", urlencode(expr));
    let v = get_json(&url).await;
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_golden_signals_by_service_and_route() {
    // Dotted names: Envoy's stat tags would split them; they read with `_` instead.
    let manifests = service_yaml("shop.eu", echo("shop").await)
        + &route_yaml(
            "checkout.v2",
            "{hosts: [x.test], match: {paths: [{prefix: /checkout}]}, backends: [{service: shop.eu}]}",
        );
    let s = stack(&manifests, "metrics").await;
    for i in 0..50 {
        assert_eq!(
            s.gw.get("x.test", &format!("/checkout/{i}")).await.status,
            200
        );
    }

    // Prometheus cannot report a kernel-chosen port, so take a free one and hand it over.
    let port = crate::harness::free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: envoy\n    metrics_path: /stats/prometheus\n    static_configs: [{{targets: ['{}']}}]\n  - job_name: portcullis\n    static_configs: [{{targets: ['{}']}}]\n",
        s.gw.envoy.admin, s.plane.admin
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let _prometheus = tokio::process::Command::new(prometheus_bin())
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");

    // Ready = both targets scraped at least once.
    let deadline = std::time::Instant::now() + STARTUP;
    loop {
        let up = if fetch(&format!("{base}/-/ready"))
            .await
            .is_ok_and(|(s, _)| s == 200)
        {
            query(&base, "sum(up)").await
        } else {
            vec![]
        };
        if up.first().and_then(|r| r["value"][1].as_str()) == Some("2") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Prometheus did not scrape both targets"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Traffic per Service, by the Service's name.
    let requests = query(
        &base,
        r#"sum(envoy_cluster_upstream_rq_total{envoy_cluster_name="e2e/shop_eu"})"#,
    )
    .await;
    let value: f64 = requests[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(
        value >= 50.0,
        "Prometheus saw {value} requests to e2e/shop.eu, sent 50"
    );
    // Errors and latency of the same Service are there to alert on.
    let errors = query(&base, r#"sum(envoy_cluster_upstream_rq_xx{envoy_cluster_name="e2e/shop_eu", envoy_response_code_class="5"}) or vector(0)"#).await;
    assert_eq!(errors[0]["value"][1], "0");
    let latency = query(
        &base,
        r#"sum(envoy_cluster_upstream_rq_time_count{envoy_cluster_name="e2e/shop_eu"})"#,
    )
    .await;
    assert!(
        latency[0]["value"][1]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
            >= 50.0
    );
    // Per Route too, on the virtual host of its host name.
    let per_route = query(
        &base,
        r#"sum(envoy_vhost_route_upstream_rq{envoy_virtual_host="x_test", envoy_route="e2e/checkout_v2", envoy_response_code="200"})"#,
    )
    .await;
    assert_eq!(per_route[0]["value"][1], "50", "{per_route:?}");
    // The control plane's own health: one Envoy stream connected, snapshots built.
    let streams = query(&base, "sum(portcullis_xds_connected_streams)").await;
    assert_eq!(streams[0]["value"][1], "1");

    // The console's Signals with --prometheus-url: range queries to this Prometheus,
    // the dotted Service under its own name. Traffic now, so the 1 m rate sees it.
    for i in 0..50 {
        s.gw.get("x.test", &format!("/checkout/{i}")).await;
    }
    let console = console_with(
        model(&manifests),
        portcullis_plane::console::ConsoleArgs {
            prometheus_url: Some(base.clone()),
            ..Default::default()
        },
    )
    .await;
    let deadline = std::time::Instant::now() + STARTUP;
    loop {
        let (status, page) = fetch(&format!("http://{console}/signals")).await.unwrap();
        assert_eq!(status, 200, "{page}");
        assert!(
            page.contains(&format!("source: Prometheus at {base}")),
            "{page}"
        );
        let requests = page
            .split("data-service=\"e2e/shop.eu\"")
            .nth(1)
            .and_then(|card| card.split("data-signal=\"Requests\" data-max=\"").nth(1))
            .and_then(|v| v.split('"').next())
            .and_then(|v| v.parse::<f64>().ok());
        if requests.is_some_and(|r| r > 0.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the console never charted e2e/shop.eu from Prometheus: {page}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A Prometheus that is gone is said on the page, not a failure of the page.
    let gone = console_with(
        model(&manifests),
        portcullis_plane::console::ConsoleArgs {
            prometheus_url: Some(format!("http://127.0.0.1:{}", free_port())),
            ..Default::default()
        },
    )
    .await;
    let (status, page) = fetch(&format!("http://{gone}/signals")).await.unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("class=\"alert\">Prometheus: "), "{page}");
}

/// An admin endpoint (console included) serving `model`, with `args`.
async fn console_with(
    model: portcullis_api::Model,
    args: portcullis_plane::console::ConsoleArgs,
) -> std::net::SocketAddr {
    use std::sync::Arc;
    let registry = prometheus::Registry::new();
    let state = portcullis_plane::admin::AdminState {
        cache: portcullis_xds::Cache::new(&registry),
        registry,
        board: Default::default(),
        model: Arc::new(parking_lot::RwLock::new(Arc::new(model))),
        ready: Arc::new(true.into()),
    };
    let console = portcullis_plane::console::Console::new(&args).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = portcullis_plane::admin::router(state, console);
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}
