//! Shared pieces of the end-to-end tests: echo backends, an in-process control plane,
//! the `portcullis` binary as a process, and a stock Envoy connected to either.
#![allow(dead_code)] // each test module uses a different subset

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use portcullis::{bootstrap::Bootstrap, envoy::Envoy};
use serde_json::Value;
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

/// Generous bound for anything that waits on Envoy or the control plane: the tests
/// must hold on a busy 2-core machine.
pub const STARTUP: Duration = Duration::from_secs(60);

/// A free port for a process that cannot bind port 0 and report what it got (Redis,
/// Prometheus, a service whose address another is configured with before it starts),
/// below the kernel's ephemeral range: see `portcullis_process::port`.
pub fn free_port() -> u16 {
    portcullis_process::port::free_loopback_port().expect("a free loopback port")
}

/// Starts an echo backend answering with `name`; runs until the test's runtime ends.
pub async fn echo(name: &str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let name = name.to_owned();
    tokio::spawn(portcullis::echo::serve(
        listener,
        name,
        std::future::pending(),
    ));
    addr
}

/// YAML for a Service with one destination.
pub fn service_yaml(name: &str, addr: SocketAddr) -> String {
    format!(
        "---\napiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {{name: {name}, namespace: e2e}}\nspec:\n  destinations: [{{name: d, address: \"{addr}\"}}]\n"
    )
}

/// YAML for a Route; `spec` is the YAML flow mapping of the spec.
pub fn route_yaml(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: portcullis.dev/v1alpha1\nkind: Route\nmetadata: {{name: {name}, namespace: e2e}}\nspec: {spec}\n"
    )
}

/// The validated model of `yaml` (Routes and Services), which must have no problems.
pub fn model(yaml: &str) -> portcullis_api::Model {
    let objects = portcullis_api::Objects::parse(yaml).unwrap();
    let outcome = portcullis_api::validate::validate(&objects.routes, &objects.services);
    assert_eq!(outcome.problems().count(), 0);
    outcome.model
}

/// GET a URL; status and body text.
pub async fn fetch(url: &str) -> anyhow::Result<(u16, String)> {
    let resp = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await?))
}

/// Waits until `url` answers 200 (a service's /healthz); `what` names it on timeout.
pub async fn wait_ok(url: &str, what: &str) {
    let deadline = Instant::now() + STARTUP;
    while !matches!(fetch(url).await, Ok((200, _))) {
        assert!(Instant::now() < deadline, "{what} not ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GET a URL on the control plane's admin API as JSON.
pub async fn get_json(url: &str) -> Value {
    let (status, body) = fetch(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(status, 200, "GET {url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: {e}: {body}"))
}

/// The file-mode control plane, running in this process.
pub struct Plane {
    pub xds: SocketAddr,
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Plane {
    pub async fn start(config_dir: &Path, state_file: Option<PathBuf>) -> Plane {
        let options = portcullis_translate::Options {
            listen_address: "127.0.0.1".into(),
            listen_port: 0,
            https_port: Some(0),
            ..Default::default()
        };
        Self::start_with(config_dir, state_file, options).await
    }

    pub async fn start_with(
        config_dir: &Path,
        state_file: Option<PathBuf>,
        options: portcullis_translate::Options,
    ) -> Plane {
        let xds = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (xds_addr, admin_addr) = (xds.local_addr().unwrap(), admin.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let config = portcullis_plane::serve::ServeConfig {
            config_dir: config_dir.to_path_buf(),
            state_file,
            options,
            poll_interval: Duration::from_millis(100),
            console: Default::default(),
            extra: Vec::new(),
            require_host_ownership: false,
        };
        let task = tokio::spawn(portcullis_plane::serve::run(
            config,
            xds,
            admin,
            async move {
                let _ = stopped.await;
            },
        ));
        let plane = Plane {
            xds: xds_addr,
            admin: admin_addr,
            stop: Some(stop),
            task,
        };
        plane.wait_ready().await;
        plane
    }

    pub async fn wait_ready(&self) {
        let url = format!("http://{}/readyz", self.admin);
        let deadline = Instant::now() + STARTUP;
        while !matches!(fetch(&url).await, Ok((200, _))) {
            assert!(Instant::now() < deadline, "control plane not ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn objects(&self) -> Value {
        get_json(&format!("http://{}/debug/objects", self.admin)).await
    }

    /// Waits until the control plane holds `want` objects (it has read an edit).
    pub async fn wait_objects(&self, want: usize) {
        let deadline = Instant::now() + STARTUP;
        while self.objects().await["objects"]
            .as_array()
            .map_or(0, Vec::len)
            != want
        {
            assert!(
                Instant::now() < deadline,
                "the control plane never held {want} objects"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `/debug/explain` for a request, as `portcullis explain --admin-addr` asks it.
    pub async fn explain(
        &self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Value {
        let mut query = vec![
            ("method", method.to_string()),
            ("url", path.to_string()),
            ("header", format!("host: {host}")),
        ];
        query.extend(headers.iter().map(|(k, v)| ("header", format!("{k}: {v}"))));
        reqwest::Client::new()
            .get(format!("http://{}/debug/explain", self.admin))
            .query(&query)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn xds_debug(&self) -> Value {
        get_json(&format!("http://{}/debug/xds", self.admin)).await
    }

    /// Waits until every connected node has ACKed every type of the current snapshot
    /// and the snapshot is `version` (when given).
    pub async fn wait_synced(&self, version: Option<&str>, within: Duration) -> Duration {
        wait_synced(&format!("http://{}/debug/xds", self.admin), version, within).await
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

pub async fn wait_synced(debug_url: &str, version: Option<&str>, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let debug = get_json(debug_url).await;
        if is_synced(&debug, version) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "nodes did not ACK the snapshot within {within:?}: {debug:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_synced(debug: &Value, version: Option<&str>) -> bool {
    let snap = &debug["snapshot"];
    if version.is_some_and(|v| snap["version"] != v) {
        return false;
    }
    let Some(nodes) = debug["nodes"].as_array() else {
        return false;
    };
    let Some(types) = snap["types"].as_object() else {
        return false;
    };
    // An Envoy must hold every Envoy type; `portcullis ratelimit` subscribes to its
    // RateLimitConfig type only, and Envoy never does.
    let is_envoy_type = |url: &str| url.starts_with("type.googleapis.com/envoy.");
    !nodes.is_empty()
        && nodes.iter().all(|n| {
            let subscribed = n["types"].as_object().cloned().unwrap_or_default();
            let envoy = subscribed.keys().any(|u| is_envoy_type(u));
            !subscribed.is_empty()
                && types
                    .iter()
                    .filter(|(url, _)| {
                        if envoy {
                            is_envoy_type(url)
                        } else {
                            subscribed.contains_key(*url)
                        }
                    })
                    .all(|(url, t)| n["types"][url]["acked"] == t["version"])
        })
}

/// Writes `text` to `path` atomically (write + rename), as editors and ConfigMap
/// updates do, so the control plane never reads half a file.
pub fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A stock Envoy bootstrapped to a control plane, with its HTTP listener port read
/// back from its admin API.
pub struct Gateway {
    pub envoy: Envoy,
    pub port: u16,
    pub client: reqwest::Client,
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    /// The echo backend's name, when a backend answered.
    pub backend: Option<String>,
    pub body: Value,
}

impl Gateway {
    pub async fn start(xds: SocketAddr, node_id: &str, delta: bool) -> Gateway {
        Self::start_with_args(xds, node_id, delta, &[]).await
    }

    /// [`Gateway::start`] with more Envoy command-line options.
    pub async fn start_with_args(
        xds: SocketAddr,
        node_id: &str,
        delta: bool,
        args: &[&str],
    ) -> Gateway {
        let mut bootstrap = Bootstrap::new(xds.to_string(), node_id);
        bootstrap.admin_port = 0;
        bootstrap.delta = delta;
        Self::from_bootstrap(&bootstrap, args).await
    }

    /// An Envoy on `bootstrap` (admin port 0), once ready with its HTTP listener.
    pub async fn from_bootstrap(bootstrap: &Bootstrap, args: &[&str]) -> Gateway {
        let envoy = Envoy::start_with_args(&bootstrap.to_yaml().unwrap(), "warning", args)
            .await
            .expect("envoy starts");
        let deadline = Instant::now() + STARTUP;
        let port = loop {
            if let Some(port) = listener_port(&envoy, "http").await
                && matches!(fetch(&envoy.admin_url("/ready")).await, Ok((200, _)))
            {
                break port;
            }
            assert!(
                Instant::now() < deadline,
                "envoy did not become ready with a listener"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Gateway {
            envoy,
            port,
            client,
        }
    }

    pub async fn request(
        &self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let url = format!("http://127.0.0.1:{}{}", self.port, path);
        let mut req = self
            .client
            .request(method.parse().unwrap(), &url)
            .header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {host}{path}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        let backend = body["name"].as_str().map(str::to_owned);
        Reply {
            status,
            headers,
            backend,
            body,
        }
    }

    /// The port Envoy's listener `name` bound (`https` appears once a Host has a
    /// certificate).
    pub async fn listener_port(&self, name: &str) -> Option<u16> {
        listener_port(&self.envoy, name).await
    }

    pub async fn get(&self, host: &str, path: &str) -> Reply {
        self.request("GET", host, path, &[]).await
    }

    /// One counter or gauge from Envoy's admin stats.
    pub async fn stat(&self, name: &str) -> u64 {
        let url = self.envoy.admin_url(&format!("/stats?filter=^{name}$"));
        let (_, body) = fetch(&url).await.unwrap();
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

async fn listener_port(envoy: &Envoy, name: &str) -> Option<u16> {
    let (code, body) = fetch(&envoy.admin_url("/listeners?format=json"))
        .await
        .ok()?;
    let v: Value = serde_json::from_str(&body).ok().filter(|_| code == 200)?;
    v["listener_statuses"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == name)
        .and_then(|l| l["local_address"]["socket_address"]["port_value"].as_u64())
        .filter(|p| *p > 0)
        .map(|p| p as u16)
}

/// The `portcullis` binary under test.
pub fn portcullis_bin() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

/// What a controllable backend does; change it while a test runs.
#[derive(Default)]
pub struct Behavior {
    /// Delay before answering, in milliseconds.
    pub delay_ms: std::sync::atomic::AtomicU64,
    /// 0: answer 200; 1: always 503; 2: every other request 503.
    pub fail: std::sync::atomic::AtomicU8,
    /// What `/health` answers (200 when true, 503 when false). Starts healthy.
    pub unhealthy: std::sync::atomic::AtomicBool,
    /// Requests served, health checks excluded.
    pub hits: std::sync::atomic::AtomicUsize,
}

impl Behavior {
    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
    pub fn set_delay(&self, ms: u64) {
        self.delay_ms.store(ms, std::sync::atomic::Ordering::SeqCst);
    }
    pub fn set_fail(&self, mode: u8) {
        self.fail.store(mode, std::sync::atomic::Ordering::SeqCst);
    }
    pub fn set_healthy(&self, healthy: bool) {
        self.unhealthy
            .store(!healthy, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A backend the test controls: slow, failing, flaky or unhealthy on demand.
pub async fn backend(name: &str) -> (SocketAddr, std::sync::Arc<Behavior>) {
    use std::sync::{Arc, atomic::Ordering};
    let behavior = Arc::new(Behavior::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route(
            "/health",
            axum::routing::get({
                let b = behavior.clone();
                move || async move {
                    if b.unhealthy.load(Ordering::SeqCst) {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down")
                    } else {
                        (axum::http::StatusCode::OK, "up")
                    }
                }
            }),
        )
        .fallback({
            let (b, name) = (behavior.clone(), name.to_owned());
            move || async move {
                let n = b.hits.fetch_add(1, Ordering::SeqCst);
                let delay = b.delay_ms.load(Ordering::SeqCst);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                let fail = match b.fail.load(Ordering::SeqCst) {
                    1 => true,
                    2 => n % 2 == 0,
                    _ => false,
                };
                let status = if fail {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                } else {
                    axum::http::StatusCode::OK
                };
                (status, axum::Json(serde_json::json!({"name": name})))
            }
        });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, behavior)
}

/// A started gateway on `manifests`, synced; the plane and its directory stay alive
/// as long as the returned value.
pub struct Stack {
    pub plane: Plane,
    pub gw: Gateway,
    pub dir: tempfile::TempDir,
}

pub async fn stack(manifests: &str, node: &str) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    write_atomic(&dir.path().join("all.yaml"), manifests);
    let plane = Plane::start(dir.path(), None).await;
    let objects = plane.objects().await;
    assert!(
        objects["file_errors"].as_array().unwrap().is_empty(),
        "{objects:#}"
    );
    for o in objects["objects"].as_array().unwrap() {
        assert_eq!(o["served"], true, "{o:#}");
    }
    let gw = Gateway::start(plane.xds, node, false).await;
    plane.wait_synced(None, STARTUP).await;
    Stack { plane, gw, dir }
}

/// A Service manifest with a free-form spec (flow YAML).
pub fn service_spec_yaml(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {{name: {name}, namespace: e2e}}\nspec: {spec}\n"
    )
}
