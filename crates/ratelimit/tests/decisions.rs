//! The service's decisions over real gRPC, one body per scenario run against every
//! store: memory, Redis, and a 3-master Redis Cluster (each started by the test).
mod common;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use portcullis_ratelimit::store::{MemoryStore, RedisStore, RedisTarget};
use portcullis_ratelimit::{Limiter, Store};

type Guard = Box<dyn Any + Send>;

async fn memory() -> (Arc<dyn Store>, Guard) {
    (Arc::new(MemoryStore::new()), Box::new(()))
}

async fn redis() -> (Arc<dyn Store>, Guard) {
    let r = Redis::start();
    let store = connected(RedisStore::connect(RedisTarget::Single(r.url()))).await;
    (store, Box::new(r))
}

async fn redis_cluster() -> (Arc<dyn Store>, Guard) {
    let c = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap();
    let store = connected(RedisStore::connect(RedisTarget::Cluster(c.urls()))).await;
    (store, Box::new(c))
}

/// A generous store timeout: these tests are about decisions, not latency, and the
/// machine runs many tests at once.
fn limiter(
    configs: &[portcullis_ratelimit::pb::RateLimitConfig],
    store: Arc<dyn Store>,
) -> Limiter {
    Limiter::builder(mk_table(configs))
        .store(store)
        .store_timeout(Duration::from_secs(2))
        .build()
}

async fn per_key_limit(store: Arc<dyn Store>) {
    let mut svc = serve(limiter(
        &[mk_config("ns/r/per-key", &["apiKey"], &[(10, 1)])],
        store,
    ))
    .await;
    let key = |k: &str| mk_request(vec![mk_descriptor("ns/r/per-key", &[("apiKey", k)])]);
    for i in 0..10 {
        let r = call(&mut svc.client, key("k1")).await;
        assert!(is_ok(&r), "request {i} of 10 is admitted");
        assert_eq!(header(&r, "RateLimit-Limit"), Some("10"));
    }
    let r = call(&mut svc.client, key("k1")).await;
    assert!(!is_ok(&r), "the 11th is over");
    let retry: u64 = header(&r, "Retry-After")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert_eq!(header(&r, "RateLimit-Remaining"), Some("0"));
    let r = call(&mut svc.client, key("k2")).await;
    assert!(is_ok(&r), "a second key is unaffected");
    assert_eq!(header(&r, "RateLimit-Remaining"), Some("9"));
}

async fn office(store: Arc<dyn Store>) {
    let configs = [
        mk_config("ns/r/per-user", &["user"], &[(10, 60)]),
        mk_config("ns/r/per-ip", &["clientIP"], &[(100, 60)]),
    ];
    let mut svc = serve(limiter(&configs, store)).await;
    let req = |user: &str, ip: &str| {
        mk_request(vec![
            mk_descriptor("ns/r/per-user", &[("user", user)]),
            mk_descriptor("ns/r/per-ip", &[("clientIP", ip)]),
        ])
    };
    // 12 colleagues behind one NAT, 8 requests each: 96 < 100, each user under 10.
    for round in 0..8 {
        for u in 0..12 {
            let r = call(&mut svc.client, req(&format!("office-{u}"), "203.0.113.7")).await;
            assert!(is_ok(&r), "office user {u}, round {round}");
        }
    }
    // A flood from one IP over many accounts: the per-IP limit stops it at 100.
    let mut admitted = 0;
    for i in 0..150 {
        if is_ok(&call(&mut svc.client, req(&format!("bot-{i}"), "198.51.100.9")).await) {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 100);
}

async fn shadow(store: Arc<dyn Store>) {
    let mut c = mk_config("ns/r/shadow", &["user"], &[(3, 60)]);
    c.shadow = true;
    let mut svc = serve(limiter(&[c], store)).await;
    for _ in 0..20 {
        let r = call(
            &mut svc.client,
            mk_request(vec![mk_descriptor("ns/r/shadow", &[("user", "u")])]),
        )
        .await;
        assert!(is_ok(&r), "shadow never blocks");
        assert_eq!(header(&r, "Retry-After"), None);
    }
}

async fn burst_and_sustained(store: Arc<dyn Store>) {
    // 5/s and 20/min on one key, real time: 5 now, then the burst window refuses; after
    // it slides, more are admitted until the minute window refuses too.
    let mut svc = serve(limiter(
        &[mk_config("ns/r/both", &["user"], &[(5, 1), (20, 60)])],
        store,
    ))
    .await;
    let req = || mk_request(vec![mk_descriptor("ns/r/both", &[("user", "u")])]);
    let mut admitted = 0;
    for _ in 0..8 {
        if is_ok(&call(&mut svc.client, req()).await) {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 5, "the burst window");
    let r = call(&mut svc.client, req()).await;
    assert_eq!(header(&r, "RateLimit-Limit"), Some("5"));
    // 2.1 s later the previous second is empty again: a fresh burst of 5, until the
    // minute window (20) refuses. A minute boundary during the test may return up to
    // 20·(elapsed fraction) ≈ 2 requests of minute quota, hence the range.
    let mut total = admitted;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let mut this_round = 0;
        for _ in 0..8 {
            if is_ok(&call(&mut svc.client, req()).await) {
                this_round += 1;
            }
        }
        assert!(this_round <= 5, "the burst window: {this_round}");
        total += this_round;
    }
    assert!(
        (20..=22).contains(&total),
        "the minute window caps the total: {total}"
    );
}

macro_rules! against_every_store {
    ($($scenario:ident),*) => {
        mod memory_store {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                let (store, _guard) = memory().await;
                super::$scenario(store).await;
            })*
        }
        mod redis_store {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                let (store, _guard) = redis().await;
                super::$scenario(store).await;
            })*
        }
        mod redis_cluster_store {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                let (store, _guard) = redis_cluster().await;
                super::$scenario(store).await;
            })*
        }
    };
}

against_every_store!(per_key_limit, office, shadow, burst_and_sustained);
