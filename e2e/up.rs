//! `portcullis up` (the README's run command) as a process: the demo manifests, the
//! demo backends, authz on the demo keys and a stock Envoy, on free ports; HTTPS for
//! api.localhost with a certificate from the CA `up` makes (its path in the banner).
use tokio::io::AsyncBufReadExt;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_the_demo_with_authentication() {
    let [port, https, xds, admin, envoy_admin, authz, echo, canary] = [(); 8].map(|_| free_port());
    let dir = tempfile::tempdir().unwrap();
    let demo = include_str!("../examples/demo/demo.yaml")
        .replace("127.0.0.1:18080", &format!("127.0.0.1:{echo}"))
        .replace("127.0.0.1:18081", &format!("127.0.0.1:{canary}"));
    write_atomic(&dir.path().join("demo.yaml"), &demo);
    let mut child = tokio::process::Command::new(portcullis_bin())
        .current_dir(dir.path())
        .arg("up")
        .args(["--config", dir.path().to_str().unwrap()])
        .args(["--port", &port.to_string()])
        .args(["--https-port", &https.to_string()])
        .args(["--xds-addr", &format!("127.0.0.1:{xds}")])
        .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
        .args(["--envoy-admin-port", &envoy_admin.to_string()])
        .args(["--authz-addr", &format!("127.0.0.1:{authz}")])
        .args([
            "--demo",
            &format!("echo=127.0.0.1:{echo},echo-canary=127.0.0.1:{canary}"),
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("portcullis up starts");

    // Ready when it says so (after Envoy reported ready).
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("Portcullis is up") {
                return;
            }
        }
        panic!("portcullis up exited before it was up");
    };
    tokio::time::timeout(STARTUP, ready)
        .await
        .expect("up within the start-up bound");
    // The banner names the CA that signed the HTTPS certificate.
    let mut ca_path = None;
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some((_, path)) = line.split_once("signed by the local CA ") {
            ca_path = Some(path.trim().to_string());
            break;
        }
    }
    let ca_pem = std::fs::read_to_string(ca_path.expect("the CA path in the banner")).unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    // HTTPS for the demo hostname, verified against that CA (as curl --cacert does).
    let trusted = crate::tls_client::client(Some(&ca_pem));
    let seen = crate::tls_client::get(&trusted, https, "api.localhost", "api.localhost", "/v1/x")
        .await
        .unwrap();
    assert_eq!(seen.status, 200, "{}", seen.head);
    // Plain HTTP for that hostname: the Host redirects to HTTPS.
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let plain = no_follow
        .get(format!("http://127.0.0.1:{port}/v1/x"))
        .header("host", "api.localhost")
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status().as_u16(), 301);
    assert_eq!(
        plain.headers()["location"].to_str().unwrap(),
        "https://api.localhost/v1/x"
    );
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    assert_eq!(fetch(&url("/echo/hello")).await.unwrap().0, 200);
    let client = reqwest::Client::new();
    let get = |key: Option<&'static str>| {
        let mut req = client.get(url("/echo/orders"));
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        async move {
            let resp = req.send().await.unwrap();
            (
                resp.status().as_u16(),
                resp.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let (status, body) = get(None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("missing_credentials"))
    );
    let (status, body) = get(Some("demo-key-alice")).await;
    assert_eq!(status, 200);
    assert_eq!(body["headers"]["x-portcullis-user"], "alice");
    // Rate limiting: the demo's echo Route allows 10/s per client IP. Ready once an
    // answer carries RateLimit-Limit (the service has its limits from the control plane).
    let hello = || client.get(url("/echo/hello")).send();
    let deadline = std::time::Instant::now() + STARTUP;
    while !hello()
        .await
        .unwrap()
        .headers()
        .contains_key("ratelimit-limit")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "rate limits never applied"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut refused = None;
    for _ in 0..15 {
        let resp = hello().await.unwrap();
        if resp.status() == 429 {
            refused = Some(resp);
            break;
        }
    }
    let refused = refused.expect("the demo limit refuses a burst of 15");
    assert!(refused.headers().contains_key("retry-after"));
    // SIGTERM, as Ctrl-C: `up` stops Envoy itself (SIGKILL would orphan it).
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(STARTUP, child.wait())
        .await
        .expect("up stops on SIGTERM");
    assert!(status.unwrap().success());
}
