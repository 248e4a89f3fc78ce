//! Losing the control plane: Envoy keeps serving what it has, and a restart from the
//! state file reconnects without changing anything. Uses the real binary, killed hard.
use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::process::{Child, Command};

use crate::harness::*;

struct Process {
    child: Child,
    xds: String,
    admin: String,
}

async fn start_binary(dir: &Path, state: &Path, xds_addr: &str, addr_file: &Path) -> Process {
    let _ = std::fs::remove_file(addr_file);
    let child = Command::new(portcullis_bin())
        .arg("serve")
        .arg("--config")
        .arg(dir)
        .args([
            "--xds-addr",
            xds_addr,
            "--admin-addr",
            "127.0.0.1:0",
            "--listen-address",
            "127.0.0.1",
            "--listen-port",
            "0",
        ])
        .arg("--state-file")
        .arg(state)
        .arg("--addr-file")
        .arg(addr_file)
        .env("PORTCULLIS_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + STARTUP;
    let addrs: Value = loop {
        if let Ok(text) = std::fs::read_to_string(addr_file) {
            break serde_json::from_str(&text).unwrap();
        }
        assert!(Instant::now() < deadline, "portcullis serve did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    Process {
        child,
        xds: addrs["xds"].as_str().unwrap().into(),
        admin: addrs["admin"].as_str().unwrap().into(),
    }
}

/// Version of every dynamic resource Envoy holds, from its config dump.
async fn envoy_versions(gw: &Gateway) -> Vec<String> {
    let (_, body) = fetch(&gw.envoy.admin_url("/config_dump")).await.unwrap();
    let dump: Value = serde_json::from_str(&body).unwrap();
    let mut versions = Vec::new();
    collect_versions(&dump, &mut versions);
    versions.sort();
    versions
}

fn collect_versions(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "version_info" {
                    out.push(v.to_string());
                } else {
                    collect_versions(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_versions(i, out)),
        _ => {}
    }
}

/// Sends requests for `period`; returns (sent, failed).
async fn traffic(gw: &Gateway, period: Duration) -> (usize, usize) {
    let (mut sent, mut failed) = (0, 0);
    let started = Instant::now();
    while started.elapsed() < period {
        let reply = gw.get("x.test", "/svc/x").await;
        sent += 1;
        if reply.status != 200 || reply.backend.as_deref() != Some("svc") {
            failed += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (sent, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_survives_control_plane_loss_and_restart_changes_nothing() {
    survives_loss_and_restart(false).await;
}

/// Over Delta, the reconnecting Envoy names every version it holds, all current: it is
/// sent nothing for those types, and must still count as holding them (the node table,
/// `/debug/xds`, the console and `Programmed` read it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_delta_a_restart_changes_nothing_and_the_envoy_is_in_sync() {
    survives_loss_and_restart(true).await;
}

async fn survives_loss_and_restart(delta: bool) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    let manifests = service_yaml("svc", echo("svc").await)
        + &route_yaml(
            "r",
            "{match: {paths: [{prefix: /svc}]}, backends: [{service: svc}]}",
        );
    write_atomic(&config.join("all.yaml"), &manifests);
    let state = dir.path().join("state.json");
    let addr_file = dir.path().join("addrs.json");

    let mut plane = start_binary(&config, &state, "127.0.0.1:0", &addr_file).await;
    let gw = Gateway::start(plane.xds.parse().unwrap(), "restart", delta).await;
    let debug_url = format!("http://{}/debug/xds", plane.admin);
    wait_synced(&debug_url, None, STARTUP).await;
    let before = envoy_versions(&gw).await;
    assert!(!before.is_empty());
    let counters = [
        "listener_manager.listener_modified",
        "listener_manager.listener_removed",
        "cluster_manager.cluster_modified",
        "cluster_manager.cluster_removed",
    ];
    let mut stats_before = Vec::new();
    for c in counters {
        stats_before.push(gw.stat(c).await);
    }

    plane.child.kill().await.unwrap();
    let (sent, failed) = traffic(&gw, Duration::from_secs(10)).await;
    assert_eq!(
        gw.stat("control_plane.connected_state").await,
        0,
        "Envoy should notice the control plane is gone"
    );
    assert!(sent > 100, "only {sent} requests in 10s");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed while the control plane was down"
    );

    // Same state file, same xDS port: Envoy reconnects on its own.
    let plane2 = start_binary(&config, &state, &plane.xds, &addr_file).await;
    let deadline = Instant::now() + STARTUP;
    while gw.stat("control_plane.connected_state").await != 1 {
        assert!(Instant::now() < deadline, "Envoy did not reconnect");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_synced(&format!("http://{}/debug/xds", plane2.admin), None, STARTUP).await;
    let (sent, failed) = traffic(&gw, Duration::from_millis(500)).await;
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed after the restart"
    );
    assert_eq!(
        envoy_versions(&gw).await,
        before,
        "the restart changed Envoy's config versions"
    );
    for (c, b) in counters.iter().zip(stats_before) {
        assert_eq!(gw.stat(c).await, b, "{c} changed across the restart");
    }
}
