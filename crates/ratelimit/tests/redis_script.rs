//! The Redis store's batch script against a real `redis-server`: requests waiting at
//! the same moment leave as one script call, so one request's bad counter (another
//! type, or not a number) must not fail the others, every counter it creates must expire, and a Redis that lost the
//! script must get it again.
mod common;

use common::*;
use portcullis_ratelimit::store::{Check, RedisStore, RedisTarget};
use portcullis_ratelimit::{Algorithm, Counting, Store, Window};

/// A fixed clock: 500 ms into a 1 s bucket.
const NOW_MS: u64 = 1_000_000_500;
const BUCKET: u64 = NOW_MS / 1000;

fn check(client: &str, algorithm: Algorithm) -> Check {
    Check {
        key: format!("prl:{{{client}}}:1000"),
        window: Window {
            requests: 10,
            per_ms: 1000,
            algorithm,
        },
        hits: 1,
        enforce: true,
        quota_group: 0,
    }
}

/// Every call is made in one poll of `join_all` on this one-thread runtime, so all of
/// them are queued before the batch writer runs: they leave as one script call.
async fn decide_together(
    store: &RedisStore,
    checks: &[Check],
) -> Vec<Result<bool, portcullis_ratelimit::StoreError>> {
    let calls = checks.iter().map(|c| async move {
        store
            .check_and_count(NOW_MS, std::slice::from_ref(c), Counting::Admitted)
            .await
            .map(|r| r.admitted())
    });
    futures::future::join_all(calls).await
}

#[tokio::test(flavor = "current_thread")]
async fn a_counter_of_another_type_fails_only_its_own_request_in_a_batch() {
    let r = Redis::start();
    let store = connected(RedisStore::connect(RedisTarget::Single(r.url()))).await;
    // A key a careless neighbour on the same Redis made a hash, where the bad
    // request's current bucket lives.
    r.cli(&["HSET", &format!("prl:{{bad}}:1000:{BUCKET}"), "f", "v"])
        .expect("HSET");
    // And one made a counter a string that is not a number.
    r.cli(&["SET", &format!("prl:{{nan}}:1000:{BUCKET}"), "many"])
        .expect("SET");
    let mut checks: Vec<Check> = (0..20)
        .map(|i| check(&format!("good-{i}"), Algorithm::Sliding))
        .collect();
    checks.insert(7, check("bad", Algorithm::Fixed));
    checks.insert(15, check("nan", Algorithm::Sliding));
    let answers = decide_together(&store, &checks).await;
    for (i, a) in answers.iter().enumerate() {
        match (i, a) {
            (7, Err(e)) => assert!(e.to_string().contains("another type"), "{e}"),
            (15, Err(e)) => assert!(e.to_string().contains("not a number"), "{e}"),
            (7 | 15, Ok(_)) => panic!("request {i}, whose counter is not a number, was decided"),
            (_, Ok(admitted)) => assert!(admitted, "request {i} refused"),
            (_, Err(e)) => panic!("request {i} failed with its batch: {e}"),
        }
    }
    for i in [0, 7, 13, 19] {
        let got = r.cli(&["GET", &format!("prl:{{good-{i}}}:1000:{BUCKET}")]);
        assert_eq!(got.as_deref().map(str::trim), Some("1"), "good-{i}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn every_counter_the_script_creates_expires_after_its_window() {
    let r = Redis::start();
    let store = connected(RedisStore::connect(RedisTarget::Single(r.url()))).await;
    let checks = [
        check("sliding", Algorithm::Sliding),
        check("fixed", Algorithm::Fixed),
    ];
    // Twice: the second hit finds the counter and must leave its deadline alone.
    for _ in 0..2 {
        for a in decide_together(&store, &checks).await {
            assert!(a.expect("decided"), "refused");
        }
    }
    // The window ends in 500 ms; then a second of grace, and a sliding counter is
    // read as the previous bucket for one more window.
    for (client, most) in [("sliding", 2500), ("fixed", 1500)] {
        let key = format!("prl:{{{client}}}:1000:{BUCKET}");
        let ttl: i64 = r.cli(&["PTTL", &key]).unwrap().trim().parse().unwrap();
        assert!(
            ttl > 0 && ttl <= most,
            "{key}: PTTL {ttl} ms, want 1..={most}"
        );
        let count = r.cli(&["GET", &key]).unwrap();
        assert_eq!(count.trim(), "2", "{key}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_redis_that_lost_the_script_gets_it_again_and_counts_once() {
    let r = Redis::start();
    let store = connected(RedisStore::connect(RedisTarget::Single(r.url()))).await;
    let checks: Vec<Check> = (0..5)
        .map(|i| check(&format!("c{i}"), Algorithm::Sliding))
        .collect();
    for a in decide_together(&store, &checks).await {
        assert!(a.expect("decided"));
    }
    r.cli(&["SCRIPT", "FLUSH"]).expect("SCRIPT FLUSH");
    for a in decide_together(&store, &checks).await {
        assert!(a.expect("decided after SCRIPT FLUSH"));
    }
    // The batch that met NOSCRIPT counted nothing before it was sent again.
    for i in 0..5 {
        let got = r.cli(&["GET", &format!("prl:{{c{i}}}:1000:{BUCKET}")]);
        assert_eq!(got.as_deref().map(str::trim), Some("2"), "c{i}");
    }
}
