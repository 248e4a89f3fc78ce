//! The web console in a real headless Chromium, on `portcullis up` (demo manifests,
//! demo backends, authz, rate limits, a stock Envoy): the start-up banner links it,
//! the routing table lists the demo Routes in Envoy's order, a conflicting Route added
//! while the page is open shows under Problems within 3 s, the Explain form names the
//! Route Envoy used for the same request (read from Envoy's access log), the Signals
//! chart the traffic, 401s and 429s just sent, and markup a tenant writes stays text.
//! Screenshots of each page land in `target/console-screenshots/`.
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::io::AsyncBufReadExt;

use crate::{browser::Browser, harness::*};

/// Markup a tenant could write: a header value on a served Route (its own host, so
/// the demo's order is untouched) and the name of an invalid Route (a Problem).
const HOSTILE: &str = r#"
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: tenant, namespace: demo}
spec:
  hosts: [evil.localhost]
  match:
    paths: [{prefix: /tenant}]
    headers: [{name: x-team, exact: "<img src=x onerror=\"window.pwned=1\">"}]
  backends: [{service: echo}]
---
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: "<script>window.pwned=2</script>", namespace: demo}
spec:
  match: {paths: [{prefix: /x}]}
  backends: [{service: echo}]
"#;

/// Same match as the demo's `echo` Route, registered later: Conflicted.
const CONFLICT: &str = r#"
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: echo-copy, namespace: demo}
spec:
  match: {paths: [{prefix: /echo}]}
  backends: [{service: echo-canary}]
"#;

struct Up {
    child: tokio::process::Child,
    /// Everything `up` printed (the banner, then access-log records).
    lines: Arc<Mutex<Vec<String>>>,
    port: u16,
    admin: u16,
    dir: tempfile::TempDir,
}

async fn up() -> Up {
    let [port, xds, admin, envoy_admin, authz, echo, canary] = [(); 7].map(|_| free_port());
    let dir = tempfile::tempdir().unwrap();
    let demo = include_str!("../examples/demo/demo.yaml")
        .replace("127.0.0.1:18080", &format!("127.0.0.1:{echo}"))
        .replace("127.0.0.1:18081", &format!("127.0.0.1:{canary}"));
    write_atomic(&dir.path().join("demo.yaml"), &demo);
    write_atomic(&dir.path().join("tenant.yaml"), HOSTILE);
    let mut child = tokio::process::Command::new(portcullis_bin())
        .current_dir(dir.path())
        .arg("up")
        .args(["--config", dir.path().to_str().unwrap()])
        .args(["--port", &port.to_string()])
        .args(["--xds-addr", &format!("127.0.0.1:{xds}")])
        .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
        .args(["--envoy-admin-port", &envoy_admin.to_string()])
        .args(["--envoy-admin-interval-ms", "500"])
        .args(["--authz-addr", &format!("127.0.0.1:{authz}")])
        .args([
            "--demo",
            &format!("echo=127.0.0.1:{echo},echo-canary=127.0.0.1:{canary}"),
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("portcullis up starts");
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let ready = async {
        while let Some(line) = out.next_line().await.unwrap() {
            let done = line.starts_with("Try:");
            lines.lock().unwrap().push(line);
            if done {
                return;
            }
        }
        panic!("portcullis up exited before it was up");
    };
    tokio::time::timeout(STARTUP, ready)
        .await
        .expect("up within the start-up bound");
    tokio::spawn({
        let lines = lines.clone();
        async move {
            while let Ok(Some(line)) = out.next_line().await {
                lines.lock().unwrap().push(line);
            }
        }
    });
    Up {
        child,
        lines,
        port,
        admin,
        dir,
    }
}

impl Up {
    /// Sends a request through Envoy; the Route Envoy used, from its access-log record.
    async fn route_envoy_used(
        &self,
        method: &str,
        host: &str,
        path: &str,
        key: Option<&str>,
    ) -> String {
        let mut req = reqwest::Client::new()
            .request(
                method.parse().unwrap(),
                format!("http://127.0.0.1:{}{path}", self.port),
            )
            .header("host", host);
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "{method} {host}{path}");
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        let deadline = Instant::now() + STARTUP;
        loop {
            let record = self.lines.lock().unwrap().iter().find_map(|l| {
                let v: Value = serde_json::from_str(l).ok()?;
                (v["request_id"] == id.as_str()).then_some(v)
            });
            if let Some(r) = record {
                return r["route"].as_str().unwrap().to_string();
            }
            assert!(Instant::now() < deadline, "no access-log record for {id}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) {
        let pid = self.child.id().unwrap().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let status = tokio::time::timeout(STARTUP, self.child.wait())
            .await
            .expect("up stops on SIGTERM");
        assert!(status.unwrap().success());
    }
}

/// Rows of one host's table, top to bottom.
async fn table_order(b: &mut Browser, host: &str) -> Vec<String> {
    let js = format!(
        "Array.from(document.querySelectorAll('section.host[data-host=\"{host}\"] tr[data-route]')).map(r => r.dataset.route)"
    );
    serde_json::from_value(b.eval(&js).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_browser_on_up() {
    let up = up().await;
    let console = format!("http://127.0.0.1:{}/", up.admin);
    let banner = up.lines.lock().unwrap().join("\n");
    assert!(
        banner.contains(&format!("console:        {console}")),
        "the banner links the console: {banner}"
    );
    let mut b = Browser::start().await;

    // Problems: the tenant's invalid Route, its name as text.
    b.goto(&console).await;
    assert_eq!(b.eval("document.title").await, "Problems · Portcullis");
    let invalid = b
        .wait_for(
            "document.querySelector('li.problem[data-kind=\"Invalid\"] .subject')?.textContent",
            STARTUP,
            "the invalid tenant Route under Problems",
        )
        .await;
    assert_eq!(invalid, "Route demo/<script>window.pwned=2</script>");

    // The routing table, in the order Envoy tries the entries.
    b.goto(&format!("{console}routes")).await;
    assert_eq!(
        table_order(&mut b, "*").await,
        ["demo/orders-write", "demo/orders-read", "demo/echo"]
    );
    assert_eq!(
        table_order(&mut b, "api.localhost").await,
        [
            "demo/api-host",
            "demo/orders-write",
            "demo/orders-read",
            "demo/echo"
        ]
    );
    let header = b
        .eval("document.querySelector('tr[data-route=\"demo/tenant\"] td:nth-child(3)').innerText")
        .await;
    assert!(
        header
            .as_str()
            .unwrap()
            .contains("x-team = <img src=x onerror=\"window.pwned=1\">"),
        "{header}"
    );
    b.screenshot("routes.png").await;
    // Typing in the filter hides the rest without a round trip.
    b.eval("const f = document.getElementById('filter-text'); f.value = 'orders-write'; f.dispatchEvent(new Event('input'))")
        .await;
    // Three hosts (*, api.localhost, evil.localhost) each hold the host-less Route.
    b.wait_for(
        "Array.from(document.querySelectorAll('tr[data-route]:not([hidden])')).map(r => r.dataset.route).join() \
         === 'demo/orders-write,demo/orders-write,demo/orders-write'",
        STARTUP,
        "the text filter keeps orders-write on every host",
    )
    .await;

    // A conflicting Route, added while the Problems page is open, appears by itself.
    b.goto(&console).await;
    write_atomic(&up.dir.path().join("conflict.yaml"), CONFLICT);
    let written = Instant::now();
    let js = "Array.from(document.querySelectorAll('li.problem[data-kind=\"Conflicted\"]')).map(p => p.innerText).join('\\n') || null";
    let shown = b
        .wait_for(js, STARTUP, "the Conflicted Route under Problems")
        .await;
    let took = written.elapsed();
    assert!(
        took <= Duration::from_secs(3),
        "the conflict took {took:?} to show (bound: 3 s)"
    );
    let shown = shown.as_str().unwrap();
    assert!(shown.contains("Route demo/echo-copy"), "{shown}");
    assert!(
        shown.contains("already served by the older Route demo/echo"),
        "{shown}"
    );
    assert!(shown.contains("Fix:"), "{shown}");
    b.screenshot("problems.png").await;
    assert_eq!(b.eval("window.pwned === undefined").await, true);

    // Explain in the page names the Route Envoy used for the same request.
    let cases = [
        // (api.localhost is HTTPS-only under `up`: plain HTTP there is redirected.)
        ("GET", "evil.localhost".to_string(), "/echo/things", None),
        ("GET", format!("127.0.0.1:{}", up.port), "/echo/hello", None),
        (
            "POST",
            format!("127.0.0.1:{}", up.port),
            "/echo/orders",
            None,
        ),
        (
            "GET",
            format!("127.0.0.1:{}", up.port),
            "/echo/orders/7",
            Some("demo-key-alice"),
        ),
    ];
    for (method, host, path, key) in &cases {
        let used = up.route_envoy_used(method, host, path, *key).await;
        b.goto(&format!("{console}explain")).await;
        b.eval(&format!(
            "document.getElementById('explain-method').value = '{method}'; \
             document.getElementById('explain-url').value = 'http://{host}{path}'; \
             document.getElementById('explain-submit').click()"
        ))
        .await;
        b.event("Page.loadEventFired").await;
        let explained = b
            .wait_for(
                "document.getElementById('explain-route')?.dataset.route",
                STARTUP,
                "the explain answer",
            )
            .await;
        assert_eq!(
            explained.as_str(),
            Some(used.as_str()),
            "{method} {host}{path}: the console explains {explained}, Envoy used {used}"
        );
    }
    // The last answer lists the Route that matched too but lost, and why.
    let lost = b
        .eval("document.querySelector('#explain-lost tr[data-route]')?.innerText")
        .await;
    assert!(lost.as_str().unwrap().contains("demo/echo"), "{lost}");
    b.screenshot("explain.png").await;

    // Signals: traffic, a 401 (no key) and a burst past the demo's 10/s limit.
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", up.port);
    assert_eq!(
        client
            .get(url("/echo/orders"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let mut limited = 0;
    for _ in 0..20 {
        if client
            .get(url("/echo/hello"))
            .send()
            .await
            .unwrap()
            .status()
            == 429
        {
            limited += 1;
        }
    }
    assert!(limited > 0, "the demo limit refuses part of a burst of 20");
    b.goto(&format!("{console}signals")).await;
    let chart = |service: &str, signal: &str| {
        format!(
            "+(document.querySelector('section.service[data-service=\"{service}\"] figure[data-signal=\"{signal}\"]')?.dataset.max || 0) > 0"
        )
    };
    b.wait_for(&chart("demo/echo", "Requests"), STARTUP, "requests charted")
        .await;
    b.wait_for(
        &chart("demo/echo", "401/403 refused"),
        STARTUP,
        "the 401 charted",
    )
    .await;
    b.wait_for(
        &format!(
            "({}) || ({})",
            chart("demo/echo", "429 rate limited"),
            chart("demo/echo-canary", "429 rate limited")
        ),
        STARTUP,
        "the 429s charted",
    )
    .await;
    let hint = b
        .eval("document.querySelector('figure[data-signal=\"Errors (5xx)\"] .hint').textContent")
        .await;
    assert!(hint.as_str().unwrap().contains("check"), "{hint}");
    b.screenshot("signals.png").await;

    // Fleet: the Envoy and the rate-limit service, in sync.
    b.goto(&format!("{console}fleet")).await;
    b.wait_for(
        "document.querySelectorAll('tr[data-node=\"portcullis-up\"] .badge.ok').length === 5",
        STARTUP,
        "the Envoy in sync on its five types (listeners, routes, clusters, endpoints, secrets)",
    )
    .await;
    b.wait_for(
        "document.querySelectorAll('tr[data-node=\"portcullis-up-ratelimit\"] .badge.ok').length === 1",
        STARTUP,
        "the rate-limit service in sync",
    )
    .await;
    b.screenshot("fleet.png").await;
    assert_eq!(b.eval("window.pwned === undefined").await, true);
    up.stop().await;
}
