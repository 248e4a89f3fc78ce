//! The whole rate-limit path as separate processes: `portcullis serve` (the control
//! plane, publishing each Route limit as a RateLimitConfig next to Envoy's resources),
//! `portcullis ratelimit --store redis --xds-addr …` (subscribed to those configs),
//! a real redis-server, stock Envoy, and an echo backend.
use std::{
    net::SocketAddr,
    path::Path,
    process::Stdio,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;
use tokio::process::{Child, Command};

use crate::harness::*;
use crate::redis::Redis;

pub const RATE_LIMIT_CONFIG: &str = "type.googleapis.com/portcullis.ratelimit.v1.RateLimitConfig";

pub struct Limited {
    pub gw: Gateway,
    pub echo: SocketAddr,
    pub dir: tempfile::TempDir,
    /// The control plane's admin API.
    pub admin: SocketAddr,
    /// `portcullis ratelimit`'s /metrics.
    pub metrics: SocketAddr,
    pub plane: Child,
    pub ratelimit: Child,
    _redis: Redis,
}

/// The Service `echo`, a `/probe` Route used to wait for readiness, and `routes`.
pub fn manifests(echo: SocketAddr, routes: &str) -> String {
    service_yaml("echo", echo)
        + &route_yaml(
            "probe",
            "{match: {paths: [{prefix: /probe}]}, backends: [{service: echo}], rateLimits: [{name: per-client, by: ['header:x-client'], limits: [{requests: 1000, per: 1s}]}]}",
        )
        + routes
}

impl Limited {
    pub async fn start(routes: &str, node: &str) -> Limited {
        Self::start_with_authz(routes, node, None).await
    }

    /// As [`Limited::start`], with Routes' `auth` answered by the authz service at `authz`
    /// (whose identities feed the `user` and `apiKey` dimensions).
    pub async fn start_with_authz(routes: &str, node: &str, authz: Option<SocketAddr>) -> Limited {
        Self::start_full(routes, node, authz, &[]).await
    }

    /// As [`Limited::start_with_authz`], with more `portcullis serve` flags.
    pub async fn start_full(
        routes: &str,
        node: &str,
        authz: Option<SocketAddr>,
        plane_flags: &[&str],
    ) -> Limited {
        let echo = echo("echo").await;
        let redis = tokio::task::spawn_blocking(Redis::start).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        std::fs::create_dir(&config).unwrap();
        write_atomic(&config.join("all.yaml"), &manifests(echo, routes));
        let (grpc, metrics) = (free_port(), free_port());

        let (plane, xds, admin) = start_plane(
            &config,
            grpc,
            authz,
            plane_flags,
            &dir.path().join("addrs.json"),
        )
        .await;
        let ratelimit = Command::new(portcullis_bin())
            .arg("ratelimit")
            .args(["--grpc-addr", &format!("127.0.0.1:{grpc}")])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
            .args(["--store", "redis", "--redis-url", &redis.url()])
            .args(["--xds-addr", &format!("http://{xds}")])
            .args(["--node-id", &format!("{node}-ratelimit")])
            .env("PORTCULLIS_LOG", "warn")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("portcullis ratelimit starts");
        let gw = Gateway::start(xds, node, false).await;
        let s = Limited {
            gw,
            echo,
            dir,
            admin,
            metrics: ([127, 0, 0, 1], metrics).into(),
            plane,
            ratelimit,
            _redis: redis,
        };
        s.wait_rate_limits_acked(None, STARTUP).await;
        wait_synced(&s.debug_url(), None, STARTUP).await;
        s.wait_enforcing().await;
        s
    }

    pub fn debug_url(&self) -> String {
        format!("http://{}/debug/xds", self.admin)
    }

    /// Replaces the Routes (the probe Route stays).
    pub fn write_routes(&self, routes: &str) {
        write_atomic(
            &self.dir.path().join("config/all.yaml"),
            &manifests(self.echo, routes),
        );
    }

    /// Waits until the rate-limit service has ACKed (so applied) the snapshot's
    /// RateLimitConfig set, and that set is not `not`; returns its version.
    pub async fn wait_rate_limits_acked(&self, not: Option<&str>, within: Duration) -> String {
        let started = Instant::now();
        loop {
            let debug = get_json(&self.debug_url()).await;
            let version = debug["snapshot"]["types"][RATE_LIMIT_CONFIG]["version"].as_str();
            let acked = debug["nodes"].as_array().into_iter().flatten().any(|n| {
                version.is_some() && n["types"][RATE_LIMIT_CONFIG]["acked"].as_str() == version
            });
            if let Some(v) = version
                && acked
                && not != Some(v)
            {
                return v.to_owned();
            }
            assert!(
                started.elapsed() < within,
                "the rate-limit service did not ACK the limits within {within:?}: {debug:#}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Readiness of the whole path: Envoy asks the service, which has the limits and a
    /// Redis connection, exactly when an answer carries `RateLimit-Limit` (a store that
    /// is not connected yet allows without headers). Each probe is a new client.
    async fn wait_enforcing(&self) {
        let deadline = Instant::now() + STARTUP;
        for n in 0.. {
            let client = format!("probe-{n}");
            let r = self
                .gw
                .request("GET", "x.test", "/probe", &[("x-client", &client)])
                .await;
            if r.status == 200 && r.headers.contains_key("ratelimit-limit") {
                return;
            }
            assert!(Instant::now() < deadline, "rate limits never enforced");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `portcullis_ratelimit_decisions_total` for one limit and outcome.
    pub async fn decisions(&self, limit: &str, outcome: &str) -> u64 {
        let (_, text) = fetch(&format!("http://{}/metrics", self.metrics))
            .await
            .unwrap();
        let (l, o) = (
            format!("limit=\"{limit}\""),
            format!("outcome=\"{outcome}\""),
        );
        text.lines()
            .filter(|line| line.starts_with("portcullis_ratelimit_decisions_total{"))
            .find(|line| line.contains(&l) && line.contains(&o))
            .and_then(|line| line.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Whether both child processes are still the ones started.
    pub fn still_running(&mut self) -> bool {
        matches!(self.plane.try_wait(), Ok(None)) && matches!(self.ratelimit.try_wait(), Ok(None))
    }
}

/// `portcullis serve` on kernel-chosen ports; returns it with its xDS and admin addresses.
pub async fn start_plane(
    config: &Path,
    ratelimit_port: u16,
    authz: Option<SocketAddr>,
    flags: &[&str],
    addr_file: &Path,
) -> (Child, SocketAddr, SocketAddr) {
    let mut cmd = Command::new(portcullis_bin());
    cmd.arg("serve").args(flags);
    if let Some(a) = authz {
        cmd.args(["--authz-addr", &a.to_string()]);
    }
    let child = cmd
        .arg("--config")
        .arg(config)
        .args(["--xds-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .args(["--listen-address", "127.0.0.1", "--listen-port", "0"])
        .args(["--ratelimit-addr", &format!("127.0.0.1:{ratelimit_port}")])
        .args(["--poll-ms", "100"])
        .arg("--addr-file")
        .arg(addr_file)
        .env("PORTCULLIS_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("portcullis serve starts");
    let deadline = Instant::now() + STARTUP;
    let addrs: Value = loop {
        if let Ok(text) = std::fs::read_to_string(addr_file)
            && let Ok(v) = serde_json::from_str(&text)
        {
            break v;
        }
        assert!(Instant::now() < deadline, "portcullis serve did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let addr = |k: &str| addrs[k].as_str().unwrap().parse().unwrap();
    (child, addr("xds"), addr("admin"))
}

/// Sleeps until `offset` past the next whole second of the wall clock, where the
/// service's windows start (it buckets time as `[k·per, (k+1)·per)`).
pub async fn at_second(offset: Duration) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into = Duration::from_nanos(now.subsec_nanos().into());
    tokio::time::sleep(Duration::from_secs(1) - into + offset).await;
}
