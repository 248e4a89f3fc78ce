//! Envoy's gRPC access log stream into `portcullis accesslog`: one scrubbed record per
//! request with route, service, status, duration, the user authz resolved (never the
//! key), the rate-limit outcome and the request id Envoy returned to the client.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use clap::Parser;
use serde_json::Value;
use tokio::{net::TcpListener, sync::oneshot};

use crate::auth::{Authz, keys_yaml};
use crate::harness::*;
use crate::ratelimit_stack::Limited;

/// `portcullis accesslog` in this process, writing to `sink`.
pub struct AccessLog {
    pub grpc: SocketAddr,
    pub metrics: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl AccessLog {
    pub async fn start(sink: &str, scrub: &[&str]) -> AccessLog {
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (g, m) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
        let scrub = scrub.join(",");
        let args = portcullis_accesslog::Args::parse_from([
            "accesslog",
            "--sink",
            sink,
            "--queue",
            "1000",
            "--scrub",
            &scrub,
        ]);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            if let Err(e) = portcullis_accesslog::run(args, grpc, http, async move {
                let _ = stopped.await;
            })
            .await
            {
                panic!("accesslog: {e:#}");
            }
        });
        wait_ok(&format!("http://{m}/healthz"), "accesslog").await;
        AccessLog {
            grpc: g,
            metrics: m,
            _stop: stop,
        }
    }

    pub async fn metrics_text(&self) -> String {
        fetch(&format!("http://{}/metrics", self.metrics))
            .await
            .unwrap()
            .1
    }
}

/// Waits until `path` holds at least `n` records of `route` (Envoy flushes its
/// buffer every second); returns them.
pub async fn records(path: &Path, route: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + STARTUP;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let found: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .filter(|r| r["route"] == route)
            .collect();
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} records for {route}: {text}",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_scrubbed_record_per_request_with_user_limit_outcome_and_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let log: PathBuf = dir.path().join("access.log");
    let als = AccessLog::start(&format!("file:{}", log.display()), &["x-team"]).await;
    let keys = dir.path().join("keys.yaml");
    write_atomic(&keys, &keys_yaml(&[("k0", "key-0", "user-0", "")]));
    let authz = Authz::start(&["--keys-file", keys.to_str().unwrap()]).await;
    let routes = route_yaml(
        "logged",
        "{match: {paths: [{prefix: /logged}]}, auth: {}, backends: [{service: echo}], rateLimits: [{name: per-key, by: [apiKey], limits: [{requests: 2, per: 1h}]}]}",
    );
    let als_addr = als.grpc.to_string();
    let s = Limited::start_full(
        &routes,
        "als",
        Some(authz.grpc),
        &[
            "--accesslog-addr",
            &als_addr,
            "--accesslog-headers",
            "Authorization,x-team,x-api-key,x-trace-me",
        ],
    )
    .await;

    let headers = [
        ("x-api-key", "key-0"),
        ("authorization", "Bearer hunter2"),
        ("x-team", "payments"),
        ("x-trace-me", "yes"),
    ];
    let mut ids = Vec::new();
    for want in [200, 200, 429] {
        let r =
            s.gw.request("GET", "x.test", "/logged/items?token=abc123", &headers)
                .await;
        assert_eq!(r.status, want);
        ids.push(r.headers["x-request-id"].to_str().unwrap().to_owned());
    }
    let denied =
        s.gw.request("GET", "x.test", "/logged/items", &[("x-api-key", "wrong")])
            .await;
    assert_eq!(denied.status, 401);
    ids.push(denied.headers["x-request-id"].to_str().unwrap().to_owned());

    let found = records(&log, "e2e/logged", 4).await;
    assert_eq!(found.len(), 4, "one record per request: {found:#?}");
    let by_id = |id: &str| {
        found
            .iter()
            .find(|r| r["request_id"] == id)
            .unwrap_or_else(|| panic!("no record with the client's x-request-id {id}: {found:#?}"))
    };
    for (i, id) in ids.iter().take(3).enumerate() {
        let r = by_id(id);
        assert_eq!(r["user"], "user-0", "{r:#}");
        assert_eq!(r["node"], "als");
        assert_eq!(r["method"], "GET");
        assert_eq!(r["path"], "/logged/items", "no query string: {r:#}");
        assert!(r["duration_ms"].is_u64(), "{r:#}");
        // authz consumed the credentials: removed before the upstream, so the record
        // (the request as forwarded) has neither, not even scrubbed.
        assert!(r["headers"].get("x-api-key").is_none(), "{r:#}");
        assert!(r["headers"].get("authorization").is_none(), "{r:#}");
        assert_eq!(r["headers"]["x-team"], "[scrubbed]", "the configured extra");
        assert_eq!(r["headers"]["x-trace-me"], "yes");
        if i < 2 {
            assert_eq!(
                (r["status"].as_u64(), r["service"].as_str()),
                (Some(200), Some("e2e/echo"))
            );
            assert!(r.get("rate_limit").is_none(), "{r:#}");
        } else {
            assert_eq!(r["status"], 429);
            assert_eq!(r["rate_limit"], "over_limit", "{r:#}");
            assert_eq!(r["flags"], serde_json::json!(["RL"]));
        }
    }
    let r = by_id(&ids[3]);
    assert_eq!(
        (r["status"].as_u64(), r["auth_denied"].as_bool()),
        (Some(401), Some(true))
    );
    assert_eq!(r["user"], "");
    assert_eq!(
        r["headers"]["x-api-key"], "[scrubbed]",
        "a refused key is kept, scrubbed: {r:#}"
    );

    let text = std::fs::read_to_string(&log).unwrap();
    for secret in ["hunter2", "key-0", "abc123", "payments", "wrong"] {
        assert!(!text.contains(secret), "{secret} reached the log:\n{text}");
    }
    let metrics = als.metrics_text().await;
    assert!(
        metrics.contains("portcullis_accesslog_records_dropped_total{reason=\"queue_full\"} 0"),
        "{metrics}"
    );
}
