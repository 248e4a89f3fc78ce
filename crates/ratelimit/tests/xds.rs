//! The xDS client against the control plane's own ADS server (portcullis-xds).
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use envoy_types::pb::google::protobuf::Any;
use portcullis_ratelimit::{
    Defaults, LimitTable, Limiter, Metrics, TYPE_URL, XdsClientConfig, pb, run_xds_client,
};
use portcullis_xds::{Cache, Resource, Snapshot};
use prost::Message;
use tokio::sync::oneshot;

fn snapshot(configs: &[pb::RateLimitConfig]) -> Snapshot {
    Snapshot::new(configs.iter().map(|c| {
        Resource::new(
            c.name.clone(),
            Any {
                type_url: TYPE_URL.into(),
                value: c.encode_to_vec(),
            },
        )
    }))
}

/// An ADS server on `port` (0: any); returns its port and a stopper.
async fn ads(cache: Cache, port: u16) -> (u16, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(portcullis_xds::serve(listener, cache, async {
        let _ = rx.await;
    }));
    (port, tx)
}

async fn wait_version(table: &LimitTable, pred: impl Fn(&str) -> bool) {
    let mut rx = table.version_rx();
    tokio::time::timeout(
        Duration::from_secs(2),
        rx.wait_for(|v| v.as_deref().is_some_and(&pred)),
    )
    .await
    .expect("config applied within 2 s")
    .unwrap();
}

async fn admitted(limiter: &Limiter, user: &str, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        let r = limiter
            .should_rate_limit(&mk_request(vec![mk_descriptor(
                "ns/r/a",
                &[("user", user)],
            )]))
            .await;
        ok += usize::from(is_ok(&r));
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_apply_live_survive_the_control_plane_and_bad_ones_are_nacked() {
    let cache = Cache::new(&prometheus::Registry::new());
    cache.set_snapshot(snapshot(&[mk_config("ns/r/a", &["user"], &[(2, 60)])]));
    let (port, stop_server) = ads(cache.clone(), 0).await;

    let table = Arc::new(LimitTable::default());
    let mut cfg = XdsClientConfig::new(
        format!("http://127.0.0.1:{port}"),
        "rl-test",
        Defaults::default(),
    );
    cfg.base_backoff = Duration::from_millis(50);
    cfg.max_backoff = Duration::from_millis(200);
    let (stop_client, client_stopped) = oneshot::channel::<()>();
    tokio::spawn(run_xds_client(
        cfg,
        table.clone(),
        Metrics::unregistered(),
        async {
            let _ = client_stopped.await;
        },
    ));
    let limiter = Limiter::builder(table.clone()).build();

    // Applied.
    wait_version(&table, |_| true).await;
    let v1 = table.version().unwrap();
    assert_eq!(admitted(&limiter, "u1", 5).await, 2);

    // Updated live: the limit is raised, the counter kept.
    cache.set_snapshot(snapshot(&[mk_config("ns/r/a", &["user"], &[(4, 60)])]));
    wait_version(&table, |v| v != v1).await;
    let v2 = table.version().unwrap();
    assert_eq!(admitted(&limiter, "u1", 5).await, 2);

    // Refused: the client NACKs and the last good config stays.
    let nacks = cache.nacks_total();
    cache.set_snapshot(snapshot(&[mk_config("ns/r/a", &["user"], &[(4, 0)])]));
    eventually(Duration::from_secs(2), "a NACK", || {
        cache.nacks_total() > nacks
    })
    .await;
    assert_eq!(table.version().as_deref(), Some(v2.as_str()));

    // Control plane away: the last config keeps serving.
    let _ = stop_server.send(());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(table.version().as_deref(), Some(v2.as_str()));
    assert_eq!(admitted(&limiter, "u2", 5).await, 4);

    // And back, with a new config: the client reconnects by itself.
    cache.set_snapshot(snapshot(&[mk_config("ns/r/a", &["user"], &[(1, 60)])]));
    let (_, _stop_again) = ads(cache.clone(), port).await;
    let mut rx = table.version_rx();
    tokio::time::timeout(
        Duration::from_secs(5),
        rx.wait_for(|v| v.as_deref() != Some(v2.as_str())),
    )
    .await
    .expect("reconnected and applied")
    .unwrap();
    assert_eq!(admitted(&limiter, "u3", 3).await, 1);
    let _ = stop_client.send(());
}
