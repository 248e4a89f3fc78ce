//! envoyproxy/ratelimit's drop-in through stock Envoy: `portcullis ratelimit` started
//! with envoyproxy's environment variables only (runtime directory, Redis as
//! host:port, ports, response headers) plus the compat switch, its limits in
//! envoyproxy-format files, and a RUNTIME_ROOT symlink swap while Envoy keeps asking.
use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use portcullis_contract::ratelimit::{DOMAIN, HEADER_PREFIX, LIMIT_KEY};
use tokio::process::{Child, Command};

use crate::harness::*;
use crate::ratelimit_stack::{manifests, start_plane};
use crate::redis::Redis;

const CLIENT_HEADER: &str = "x-client";

/// One envoyproxy rule: the Route limit `e2e/<route>/per-client`, counted per client.
fn rule(route: &str, unit: &str, requests: u32) -> String {
    format!(
        "  - key: {LIMIT_KEY}\n    value: e2e/{route}/per-client\n    descriptors:\n      - key: \"{HEADER_PREFIX}{CLIENT_HEADER}\"\n        rate_limit: {{unit: {unit}, requests_per_unit: {requests}}}\n"
    )
}

fn domain_file(rules: &[String]) -> String {
    format!("domain: {DOMAIN}\ndescriptors:\n{}", rules.concat())
}

/// Version `v` of the runtime tree, then RUNTIME_ROOT (`current`) swapped to it by an
/// atomic rename, as envoyproxy deployments do.
fn publish(base: &Path, v: &str, swap_limit: u32) {
    let app = base.join(v).join("ratelimit/config");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("probe.yaml"),
        domain_file(&[rule("probe", "second", 1000)]),
    )
    .unwrap();
    std::fs::write(
        app.join("kept.yaml"),
        domain_file(&[rule("kept", "day", 3)]),
    )
    .unwrap();
    std::fs::write(
        app.join("swap.yaml"),
        domain_file(&[rule("swap", "day", swap_limit)]),
    )
    .unwrap();
    let tmp = base.join(format!("current.{v}"));
    symlink(base.join(v), &tmp).unwrap();
    std::fs::rename(&tmp, base.join("current")).unwrap();
}

fn limited_route(name: &str) -> String {
    // The numbers here are what the control plane would publish over xDS; the service
    // under test reads the runtime directory instead.
    route_yaml(
        name,
        &format!(
            "{{match: {{paths: [{{prefix: /{name}}}]}}, backends: [{{service: echo}}], rateLimits: [{{name: per-client, by: ['{HEADER_PREFIX}{CLIENT_HEADER}'], limits: [{{requests: 1000, per: 1s}}]}}]}}"
        ),
    )
}

struct DropIn {
    gw: Gateway,
    metrics: SocketAddr,
    base: tempfile::TempDir,
    _config: tempfile::TempDir,
    _plane: Child,
    ratelimit: Child,
    _redis: Redis,
}

impl DropIn {
    async fn start() -> DropIn {
        let echo = echo("echo").await;
        let redis = tokio::task::spawn_blocking(Redis::start).await.unwrap();
        let base = tempfile::tempdir().unwrap();
        publish(base.path(), "v1", 2);
        let config = tempfile::tempdir().unwrap();
        let routes = limited_route("kept") + &limited_route("swap");
        write_atomic(&config.path().join("all.yaml"), &manifests(echo, &routes));
        let (grpc, metrics) = (free_port(), free_port());
        let (plane, xds, _admin) = start_plane(
            config.path(),
            grpc,
            None,
            &[],
            &config.path().join("addrs.json"),
        )
        .await;
        let ratelimit = Command::new(portcullis_bin())
            .arg("ratelimit")
            .env("RUNTIME_ROOT", base.path().join("current"))
            .env("RUNTIME_SUBDIRECTORY", "ratelimit")
            // The three files share the domain.
            .env("MERGE_DOMAIN_CONFIG", "true")
            .env("REDIS_SOCKET_TYPE", "tcp")
            .env("REDIS_URL", format!("127.0.0.1:{}", redis.port))
            .env("GRPC_HOST", "127.0.0.1")
            .env("GRPC_PORT", grpc.to_string())
            .env("HOST", "127.0.0.1")
            .env("PORT", metrics.to_string())
            .env("USE_STATSD", "false")
            .env("LOG_LEVEL", "warn")
            .env("LIMIT_RESPONSE_HEADERS_ENABLED", "true")
            .env("PORTCULLIS_RATELIMIT_COMPAT", "envoyproxy")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("portcullis ratelimit starts");
        let gw = Gateway::start(xds, "rl-runtime", false).await;
        let mut d = DropIn {
            gw,
            metrics: ([127, 0, 0, 1], metrics).into(),
            base,
            _config: config,
            _plane: plane,
            ratelimit,
            _redis: redis,
        };
        d.wait_enforcing().await;
        d
    }

    async fn get(&self, path: &str, client: &str) -> Reply {
        self.gw
            .request("GET", "x.test", path, &[(CLIENT_HEADER, client)])
            .await
    }

    /// Envoy asks the service, which has the files and Redis, exactly when an answer
    /// carries `RateLimit-Limit` (LIMIT_RESPONSE_HEADERS_ENABLED).
    async fn wait_enforcing(&mut self) {
        let deadline = Instant::now() + STARTUP;
        for n in 0.. {
            if let Ok(Some(status)) = self.ratelimit.try_wait() {
                panic!("portcullis ratelimit exited: {status}");
            }
            let r = self.get("/probe", &format!("probe-{n}")).await;
            if r.status == 200 && r.headers.contains_key("ratelimit-limit") {
                return;
            }
            assert!(Instant::now() < deadline, "rate limits never enforced");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The applied file version from /metrics.
    async fn version(&self) -> Option<String> {
        let (_, text) = fetch(&format!("http://{}/metrics", self.metrics))
            .await
            .ok()?;
        let line = text
            .lines()
            .find(|l| l.starts_with("portcullis_ratelimit_config_version_info{"))?;
        let v = line.split("version=\"").nth(1)?.split('"').next()?;
        Some(v.to_owned())
    }

    async fn statuses(&self, path: &str, client: &str, n: usize) -> Vec<u16> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.get(path, client).await.status);
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_symlink_swap_applies_within_2s_and_unchanged_limits_keep_counters() {
    let d = DropIn::start().await;
    let v1 = d.version().await.expect("a file version on /metrics");

    assert_eq!(d.statuses("/kept", "alice", 2).await, [200, 200]);
    // envoyproxy's counting (the compat switch): the refused third request counts too.
    let r = d.get("/swap", "bob").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers
            .get("ratelimit-limit")
            .and_then(|v| v.to_str().ok()),
        Some("2")
    );
    assert_eq!(d.statuses("/swap", "bob", 2).await, [200, 429]);
    let refused = d.get("/swap", "bob").await;
    assert_eq!(refused.status, 429);
    assert!(
        refused.headers.get("retry-after").is_none(),
        "envoyproxy sends no Retry-After"
    );

    // The swap: v2 raises the swap limit to 6 and leaves the other files as they were.
    let swapped = Instant::now();
    publish(d.base.path(), "v2", 6);
    let took = loop {
        if d.version().await.is_some_and(|v| v != v1) {
            break swapped.elapsed();
        }
        assert!(swapped.elapsed() < STARTUP, "the swap was never applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("runtime symlink swap applied after {took:?}");
    assert!(took <= Duration::from_secs(2), "applied after {took:?}");

    // bob's counter (4: two admitted, two refused but counted) is kept: 2 of the 6 left.
    assert_eq!(d.statuses("/swap", "bob", 3).await, [200, 200, 429]);
    // alice's unchanged limit kept her 2 of 3.
    assert_eq!(d.statuses("/kept", "alice", 2).await, [200, 429]);
    // Someone new gets the raised limit whole.
    assert_eq!(
        d.statuses("/swap", "carol", 7)
            .await
            .iter()
            .filter(|s| **s == 200)
            .count(),
        6
    );
}
