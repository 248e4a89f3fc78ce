//! Taking an Envoy out under load drops no request, when it goes the way the chart's
//! Envoy pods go: `portcullis drain --on-signal` (the sidecar) gets SIGTERM while
//! Envoy's preStop hook (charts/portcullis/files/envoy-prestop.sh, this very file)
//! waits for it; then Envoy gets SIGTERM and exits. Envoy runs with the chart's drain
//! options. The client behaves like a Kubernetes Service: it keeps its open
//! connections, and opens new ones to the terminating Envoy for a while (endpoint
//! removal takes time to reach kube-proxy and load balancers), then only to the other.
//! The control: the same rollout without the drain drops requests.
use std::{
    net::SocketAddr,
    path::Path,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use parking_lot::Mutex;
use tokio::{net::TcpStream, process::Command};

use crate::harness::{
    Gateway, Plane, STARTUP, backend, echo, fetch, portcullis_bin, route_yaml, service_yaml,
    write_atomic,
};

/// The drain settings here; the chart's defaults are longer (5 s, 60 s).
const MIN_SECONDS: u64 = 2;
const TIMEOUT_SECONDS: u64 = 30;
/// How long the client still opens connections to the terminating Envoy.
const PROPAGATION: Duration = Duration::from_millis(1000);
const WORKERS: usize = 8;

/// Envoy's drain options as the chart sets them (templates/envoy.yaml).
fn envoy_drain_args() -> Vec<String> {
    vec![
        "--drain-strategy".into(),
        "immediate".into(),
        "--drain-time-s".into(),
        TIMEOUT_SECONDS.to_string(),
    ]
}

struct Setup {
    _plane: Plane,
    _dir: tempfile::TempDir,
    /// The Envoy that is taken out, and the one that stays.
    leaving: Gateway,
    staying: Gateway,
}

async fn setup(node: &str) -> Setup {
    let backend = echo("echo").await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = format!(
        "{}{}",
        service_yaml("echo", backend),
        route_yaml(
            "drain",
            "{match: {paths: [{prefix: /drain}]}, backends: [{service: echo}]}"
        )
    );
    write_atomic(&dir.path().join("all.yaml"), &manifests);
    let plane = Plane::start(dir.path(), None).await;
    let args = envoy_drain_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let leaving = Gateway::start_with_args(plane.xds, &format!("{node}-a"), false, &args).await;
    let staying = Gateway::start_with_args(plane.xds, &format!("{node}-b"), false, &args).await;
    plane.wait_synced(None, STARTUP).await;
    Setup {
        _plane: plane,
        _dir: dir,
        leaving,
        staying,
    }
}

/// A steady load from `WORKERS` clients, each on one connection at a time.
struct Load {
    ports: [u16; 2],
    /// The first Envoy is terminating: new connections go to the second.
    terminating: AtomicBool,
    stop: AtomicBool,
    ok: [AtomicU64; 2],
    /// Responses of the first Envoy that asked the client to close the connection.
    closes: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Load {
    fn start(ports: [u16; 2]) -> (Arc<Load>, Vec<tokio::task::JoinHandle<()>>) {
        let load = Arc::new(Load {
            ports,
            terminating: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            ok: [AtomicU64::new(0), AtomicU64::new(0)],
            closes: AtomicU64::new(0),
            failures: Mutex::new(Vec::new()),
        });
        let workers = (0..WORKERS)
            .map(|_| tokio::spawn(worker(load.clone())))
            .collect();
        (load, workers)
    }

    fn ok(&self, i: usize) -> u64 {
        self.ok[i].load(Ordering::SeqCst)
    }

    fn fail(&self, what: String) {
        self.failures.lock().push(what);
    }
}

async fn worker(load: Arc<Load>) {
    while !load.stop.load(Ordering::SeqCst) {
        let target = usize::from(load.terminating.load(Ordering::SeqCst));
        let tcp = match TcpStream::connect(("127.0.0.1", load.ports[target])).await {
            Ok(s) => s,
            Err(e) => {
                load.fail(format!("connect to Envoy {target}: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await
        else {
            continue;
        };
        tokio::spawn(conn);
        while !load.stop.load(Ordering::SeqCst) {
            // Closed before we sent anything: a client just opens another connection.
            if sender.ready().await.is_err() {
                break;
            }
            let request = hyper::Request::get("/drain/item")
                .header("host", "drain.test")
                .body(Empty::<Bytes>::new())
                .unwrap();
            let response = match sender.send_request(request).await {
                Ok(r) => r,
                Err(e) => {
                    load.fail(format!("request to Envoy {target}: {e}"));
                    break;
                }
            };
            let status = response.status();
            let close = response
                .headers()
                .get(hyper::header::CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
            match response.into_body().collect().await.map(|b| b.to_bytes()) {
                Ok(body) if status == 200 && body.starts_with(b"{") => {
                    load.ok[target].fetch_add(1, Ordering::SeqCst);
                }
                Ok(body) => load.fail(format!("Envoy {target} answered {status}: {body:?}")),
                Err(e) => load.fail(format!("response body from Envoy {target}: {e}")),
            }
            if close {
                if target == 0 {
                    load.closes.fetch_add(1, Ordering::SeqCst);
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sigterm(pid: Option<u32>) {
    let pid = pid.expect("the process is running").to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success(), "kill -TERM {pid}");
}

fn prestop_script() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../charts/portcullis/files/envoy-prestop.sh");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn admin_status(admin: SocketAddr, path: &str) -> u16 {
    fetch(&format!("http://{admin}{path}"))
        .await
        .map(|r| r.0)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn draining_an_envoy_under_load_drops_no_request() {
    let mut s = setup("drain").await;
    let dir = tempfile::tempdir().unwrap();
    let done = dir.path().join("done");
    // The pod's sidecar, started with the pod.
    let sidecar = Command::new(portcullis_bin())
        .args([
            "drain",
            "--on-signal",
            "--admin",
            &s.leaving.envoy.admin.to_string(),
        ])
        .args(["--min-seconds", &MIN_SECONDS.to_string()])
        .args(["--timeout-seconds", &TIMEOUT_SECONDS.to_string()])
        .arg("--done-file")
        .arg(&done)
        .env("PORTCULLIS_LOG", "info")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (load, workers) = Load::start([s.leaving.port, s.staying.port]);
    wait_for("steady load on the first Envoy", STARTUP, || {
        load.ok(0) >= 200
    })
    .await;
    assert_eq!(admin_status(s.leaving.envoy.admin, "/ready").await, 200);

    // The pod is deleted: SIGTERM to the sidecar while Envoy's preStop hook runs.
    let deleted = Instant::now();
    sigterm(sidecar.id()).await;
    let limit = (TIMEOUT_SECONDS + MIN_SECONDS + 10).to_string();
    let mut prestop = Command::new("sh")
        .arg("-c")
        .arg(prestop_script())
        .arg("envoy-prestop")
        .arg(&done)
        .arg(&limit)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let served_before = load.ok(0);
    tokio::time::sleep(PROPAGATION / 2).await;
    assert_eq!(
        admin_status(s.leaving.envoy.admin, "/ready").await,
        503,
        "a draining Envoy must fail its readiness probe"
    );
    tokio::time::sleep(PROPAGATION / 2).await;
    // The endpoint removal has reached the client: new connections go elsewhere.
    load.terminating.store(true, Ordering::SeqCst);
    let served_while_propagating = load.ok(0) - served_before;
    let hook = tokio::time::timeout(Duration::from_secs(TIMEOUT_SECONDS + 30), prestop.wait())
        .await
        .expect("the preStop hook ends once the sidecar is done")
        .unwrap();
    assert!(hook.success(), "preStop hook: {hook}");
    let drained_after = deleted.elapsed();
    // Then Kubernetes sends Envoy its SIGTERM.
    sigterm(s.leaving.envoy.id()).await;
    let exit = tokio::time::timeout(Duration::from_secs(30), s.leaving.envoy.wait())
        .await
        .expect("Envoy exits on SIGTERM")
        .unwrap();
    let staying_before = load.ok(1);
    wait_for("load on the second Envoy", STARTUP, || {
        load.ok(1) >= staying_before + 100
    })
    .await;
    load.stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let out = sidecar.wait_with_output().await.unwrap();
    let report = String::from_utf8_lossy(&out.stdout);

    let failures = load.failures.lock().clone();
    assert!(
        failures.is_empty(),
        "{} failed requests while the first Envoy drained and exited; first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        out.status.success(),
        "drain sidecar: {}: {report}",
        out.status
    );
    assert!(
        report.contains("drained: 0 open connections"),
        "the connections did not all close before the timeout: {report}"
    );
    assert!(
        drained_after >= Duration::from_secs(MIN_SECONDS)
            && drained_after < Duration::from_secs(TIMEOUT_SECONDS),
        "drained after {drained_after:?}"
    );
    assert!(
        served_while_propagating > 0 && load.closes.load(Ordering::SeqCst) > 0,
        "the draining Envoy must keep serving (and send clients away) while its endpoint \
         is being removed: served {served_while_propagating}, closes {}",
        load.closes.load(Ordering::SeqCst)
    );
    assert!(done.exists());
    eprintln!(
        "drain: {} requests through the first Envoy, {} through the second, {} while propagating, drained in {drained_after:?}, Envoy exit {exit}",
        load.ok(0),
        load.ok(1),
        served_while_propagating
    );
}

/// The control: without the drain the same rollout loses requests, so the test above
/// can tell a drain from none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_the_drain_the_same_rollout_drops_requests() {
    let mut s = setup("nodrain").await;
    let (load, workers) = Load::start([s.leaving.port, s.staying.port]);
    wait_for("steady load on the first Envoy", STARTUP, || {
        load.ok(0) >= 200
    })
    .await;
    sigterm(s.leaving.envoy.id()).await;
    tokio::time::timeout(Duration::from_secs(30), s.leaving.envoy.wait())
        .await
        .expect("Envoy exits on SIGTERM")
        .unwrap();
    tokio::time::sleep(PROPAGATION).await;
    load.terminating.store(true, Ordering::SeqCst);
    let staying_before = load.ok(1);
    wait_for("load on the second Envoy", STARTUP, || {
        load.ok(1) >= staying_before + 100
    })
    .await;
    load.stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let failures = load.failures.lock().len();
    assert!(failures > 0, "a plain SIGTERM under load dropped nothing?");
    eprintln!("no drain: {failures} failed requests");
}

/// A request slower than the drain's timeout (a slow backend, or a client that never
/// finishes) cannot hold the pod: the wait ends at the timeout, reports what is still
/// open, and signals Envoy's preStop hook all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_outlasting_the_timeout_ends_the_wait_at_the_timeout() {
    let (slow, behavior) = backend("slow").await;
    behavior.set_delay(8_000);
    let dir = tempfile::tempdir().unwrap();
    let manifests = format!(
        "{}{}",
        service_yaml("slow", slow),
        route_yaml(
            "slow",
            "{match: {paths: [{prefix: /drain}]}, backends: [{service: slow}], timeout: 30s}"
        )
    );
    write_atomic(&dir.path().join("all.yaml"), &manifests);
    let plane = Plane::start(dir.path(), None).await;
    let args = envoy_drain_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let gw = Gateway::start_with_args(plane.xds, "drain-slow", false, &args).await;
    plane.wait_synced(None, STARTUP).await;
    let url = format!("http://127.0.0.1:{}/drain/slow", gw.port);
    let in_flight = tokio::spawn(async move {
        let r = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.headers().get("connection").cloned())
    });
    wait_for("the slow request reaching the backend", STARTUP, || {
        behavior.hits() == 1
    })
    .await;
    let done = dir.path().join("done");
    let started = Instant::now();
    let out = Command::new(portcullis_bin())
        .args(["drain", "--admin", &gw.envoy.admin.to_string()])
        .args(["--min-seconds", "1", "--timeout-seconds", "3"])
        .arg("--done-file")
        .arg(&done)
        .output()
        .await
        .unwrap();
    let took = started.elapsed();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}: {report}", out.status);
    assert!(
        report.starts_with("drained: 1 open connections after 3."),
        "{report}"
    );
    assert!(
        took < Duration::from_secs(7),
        "waited {took:?} for a request it should give up on"
    );
    assert!(done.exists(), "Envoy's preStop hook must be released");
    // Envoy itself is still up: the request completes, told to close its connection.
    let (status, connection) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        connection.as_ref().and_then(|v| v.to_str().ok()),
        Some("close")
    );
}
