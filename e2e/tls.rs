//! HTTPS at the edge through real Envoy: Hosts own hostnames and certificates (PEM files
//! in file mode), Envoy picks the certificate by SNI from SDS, clients without SNI get
//! the default, plain HTTP is redirected, HSTS is sent, a rotated certificate is served
//! within 2 s with zero failed requests under load, a bad replacement keeps the old one,
//! and no private key byte reaches logs, debug output or the state file.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::harness::*;
use crate::tls_client::{Ca, client, der, get};

fn host_yaml(name: &str, hostname: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: portcullis.dev/v1alpha1\nkind: Host\nmetadata: {{name: {name}, namespace: e2e}}\nspec: {{hostname: {hostname}, tls: {{certificateFile: {name}.crt, keyFile: {name}.key{extra}}}}}\n"
    )
}

struct Edge {
    plane: Plane,
    gw: Gateway,
    dir: tempfile::TempDir,
    ca: Ca,
    https: u16,
}

async fn edge(node: &str) -> Edge {
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    ca.write_leaf(dir.path(), "api", &["api.example.com"], 90);
    ca.write_leaf(dir.path(), "shop", &["shop.example.com"], 90);
    let manifests = service_yaml("echo", echo("echo").await)
        + &host_yaml(
            "api",
            "api.example.com",
            ", hsts: {maxAge: 31536000s, includeSubDomains: true}",
        )
        + &host_yaml("shop", "shop.example.com", "")
        + &route_yaml(
            "api",
            "{hosts: [api.example.com], match: {paths: [{prefix: /}]}, backends: [{service: echo}]}",
        )
        + &route_yaml(
            "shop",
            "{hosts: [shop.example.com], match: {paths: [{prefix: /}]}, backends: [{service: echo}]}",
        );
    write_atomic(&dir.path().join("all.yaml"), &manifests);
    let state = dir.path().join("state.json");
    let plane = Plane::start(dir.path(), Some(state)).await;
    let gw = Gateway::start(plane.xds, node, false).await;
    plane.wait_synced(None, STARTUP).await;
    let deadline = Instant::now() + STARTUP;
    let https = loop {
        if let Some(p) = gw.listener_port("https").await {
            break p;
        }
        assert!(Instant::now() < deadline, "no https listener");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    Edge {
        plane,
        gw,
        dir,
        ca,
        https,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_each_hosts_certificate_and_plain_http_is_redirected() {
    let e = edge("tls-sni").await;
    let dir = e.dir.path();
    let trusted = client(Some(&e.ca.pem));
    for host in ["api", "shop"] {
        let hostname = format!("{host}.example.com");
        let seen = get(&trusted, e.https, &hostname, &hostname, "/x")
            .await
            .unwrap();
        assert_eq!(seen.status, 200, "{}", seen.head);
        let want = der(&std::fs::read_to_string(dir.join(format!("{host}.crt"))).unwrap());
        assert_eq!(seen.leaf, want, "{hostname} got another certificate");
    }
    // HSTS on the Host that asks for it, not on the other.
    let api = get(&trusted, e.https, "api.example.com", "api.example.com", "/")
        .await
        .unwrap();
    assert!(
        api.head
            .to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000; includesubdomains"),
        "{}",
        api.head
    );
    let shop = get(
        &trusted,
        e.https,
        "shop.example.com",
        "shop.example.com",
        "/",
    )
    .await
    .unwrap();
    assert!(
        !shop
            .head
            .to_ascii_lowercase()
            .contains("strict-transport-security"),
        "{}",
        shop.head
    );
    // No SNI: the default certificate (the oldest Host's).
    let any = client(None);
    let no_sni = get(&any, e.https, "127.0.0.1", "api.example.com", "/")
        .await
        .unwrap();
    let first = der(&std::fs::read_to_string(dir.join("api.crt")).unwrap());
    let second = der(&std::fs::read_to_string(dir.join("shop.crt")).unwrap());
    assert!(
        no_sni.leaf == first || no_sni.leaf == second,
        "no SNI got an unknown certificate"
    );
    // curl, as an operator would check it.
    write_atomic(&dir.join("ca.pem"), &e.ca.pem);
    let curl = |args: &[String]| {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{redirect_url}",
            ])
            .args(args)
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let https = curl(&[
        "--resolve".into(),
        format!("shop.example.com:{}:127.0.0.1", e.https),
        "--cacert".into(),
        dir.join("ca.pem").display().to_string(),
        format!("https://shop.example.com:{}/", e.https),
    ]);
    assert_eq!(https, "200", "curl over HTTPS");
    // Plain HTTP for a Host with TLS: 301 to HTTPS.
    let plain = curl(&[
        "-H".into(),
        "host: shop.example.com".into(),
        format!("http://127.0.0.1:{}/a?b=1", e.gw.port),
    ]);
    assert_eq!(plain, "301 https://shop.example.com/a?b=1");
    e.plane.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_within_2s_with_no_failed_request_and_a_bad_one_is_refused()
{
    let e = edge("tls-rotate").await;
    let dir = e.dir.path().to_path_buf();
    let trusted = client(Some(&e.ca.pem));
    let old = der(&std::fs::read_to_string(dir.join("api.crt")).unwrap());
    // Load: new connections (a handshake each) until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed, trusted, port) = (
                stop.clone(),
                ok.clone(),
                failed.clone(),
                trusted.clone(),
                e.https,
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match get(
                        &trusted,
                        port,
                        "api.example.com",
                        "api.example.com",
                        "/load",
                    )
                    .await
                    {
                        Ok(s) if s.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Rotate: a new key and certificate, each file replaced atomically.
    let (new_cert, new_key) = e.ca.leaf(&["api.example.com"], 90);
    write_atomic(&dir.join("api.key"), &new_key);
    write_atomic(&dir.join("api.crt"), &new_cert);
    let rotated = Instant::now();
    let new = der(&new_cert);
    let took = crate::tls_client::wait_for_leaf(&trusted, e.https, &old, &new, rotated).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("rotation served after {took:?}; {ok} requests during it, {failed} failed");
    assert!(took < Duration::from_secs(2), "rotation took {took:?}");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during the rotation",
        ok + failed
    );
    assert!(ok > 20, "too little load to mean anything: {ok}");

    // A bad replacement (a key that does not match) is refused; the new one keeps serving.
    let (_, other_key) = e.ca.leaf(&["api.example.com"], 90);
    write_atomic(&dir.join("api.key"), &other_key);
    let deadline = Instant::now() + STARTUP;
    let accepted = loop {
        let objects = e.plane.objects().await;
        let host = objects["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["object"] == "Host e2e/api")
            .unwrap()
            .clone();
        let accepted = host["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Accepted")
            .unwrap()
            .clone();
        if accepted["message"].as_str().unwrap().contains("refused") {
            break accepted;
        }
        assert!(
            Instant::now() < deadline,
            "the bad key was not reported: {host:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        accepted["message"]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{accepted}"
    );
    let still = get(&trusted, e.https, "api.example.com", "api.example.com", "/")
        .await
        .unwrap();
    assert_eq!(still.leaf, new, "a bad key took the good certificate away");

    // No private key byte anywhere the control plane shows or writes.
    let base64_of = |pem: &str| -> Vec<String> {
        pem.lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 20)
            .map(str::to_string)
            .collect()
    };
    let debug = e.plane.xds_debug().await.to_string() + &e.plane.objects().await.to_string();
    let state = std::fs::read_to_string(dir.join("state.json")).unwrap();
    let state_decoded = String::from_utf8_lossy(
        &base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            serde_json::from_str::<serde_json::Value>(&state).unwrap()["snapshot"]
                .as_str()
                .unwrap(),
        )
        .unwrap(),
    )
    .to_string();
    for key in [&new_key, &other_key] {
        for line in base64_of(key) {
            assert!(!debug.contains(&line), "a private key line in debug output");
            assert!(
                !state.contains(&line) && !state_decoded.contains(&line),
                "a private key line in the state file"
            );
        }
    }
    assert!(!state_decoded.contains("PRIVATE KEY"));
    e.plane.stop().await;
}

/// Routing is split by Host (translate `host_routes`): the certificate a client
/// verified decides which Routes it reaches, and an edit to one Host's Route reaches
/// Envoy as that Host's RouteConfiguration alone (SotW sends only what changed) while
/// the other Host keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_to_one_host_is_sent_alone_and_sni_decides_the_routes() {
    let e = edge("tls-split").await;
    let trusted = client(Some(&e.ca.pem));
    // A client holding shop's certificate cannot reach api's Routes by its Host header.
    let fronted = get(
        &trusted,
        e.https,
        "shop.example.com",
        "api.example.com",
        "/x",
    )
    .await
    .unwrap();
    assert_eq!(fronted.status, 404, "{}", fronted.head);

    let (_, dump) = fetch(
        &e.gw
            .envoy
            .admin_url("/config_dump?resource=dynamic_route_configs"),
    )
    .await
    .unwrap();
    for name in ["\"portcullis\"", "\"https/e2e/api\"", "\"https/e2e/shop\""] {
        assert!(dump.contains(name), "{name} not in Envoy's route configs");
    }
    let sent_before = e.gw.stat("cluster_manager.cds.update_success").await;
    // Envoy counts each RouteConfiguration a response hands its subscription.
    let rds = |name: &'static str| {
        let gw = &e.gw;
        async move {
            gw.stat(&format!("http.https.rds.https/e2e/{name}.update_attempt"))
                .await
        }
    };
    let (api_before, shop_before) = (rds("api").await, rds("shop").await);
    assert!(
        api_before > 0 && shop_before > 0,
        "no RDS stats: {api_before} {shop_before}"
    );

    let before = e.plane.xds_debug().await["snapshot"]["version"].clone();
    let manifests = std::fs::read_to_string(e.dir.path().join("all.yaml")).unwrap();
    let edited = manifests.replacen(
        "{hosts: [api.example.com], match: {paths: [{prefix: /}]}",
        "{hosts: [api.example.com], match: {paths: [{prefix: /v2}]}",
        1,
    );
    assert_ne!(edited, manifests);
    write_atomic(&e.dir.path().join("all.yaml"), &edited);
    let deadline = Instant::now() + STARTUP;
    let version = loop {
        let v = e.plane.xds_debug().await["snapshot"]["version"].clone();
        if v != before {
            break v;
        }
        assert!(Instant::now() < deadline, "the edit was not published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    e.plane.wait_synced(version.as_str(), STARTUP).await;

    let status = |sni: &'static str, path: &'static str| {
        let trusted = &trusted;
        async move { get(trusted, e.https, sni, sni, path).await.unwrap().status }
    };
    assert_eq!(status("api.example.com", "/v2/x").await, 200);
    assert_eq!(status("api.example.com", "/x").await, 404);
    // The other Host, left out of the push, still serves.
    assert_eq!(status("shop.example.com", "/x").await, 200);
    assert!(
        rds("api").await > api_before,
        "api's configuration was not sent"
    );
    assert_eq!(
        rds("shop").await,
        shop_before,
        "shop's configuration was sent again"
    );
    // A Route edit is no cluster change.
    assert_eq!(
        e.gw.stat("cluster_manager.cds.update_success").await,
        sent_before
    );
    e.plane.stop().await;
}
