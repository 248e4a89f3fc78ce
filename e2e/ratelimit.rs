//! Rate limits through real Envoy, with the real `portcullis serve` and `portcullis
//! ratelimit --store redis` processes and a real redis-server (see ratelimit_stack.rs).
use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::harness::*;
use crate::ratelimit_stack::*;

fn limited_route(name: &str, limit: &str) -> String {
    route_yaml(
        name,
        &format!(
            "{{match: {{paths: [{{prefix: /{name}}}]}}, backends: [{{service: echo}}], rateLimits: [{limit}]}}"
        ),
    )
}

fn header<'a>(r: &'a Reply, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

async fn get(s: &Limited, path: &str, client: &str) -> Reply {
    s.gw.request("GET", "x.test", path, &[("x-client", client)])
        .await
}

/// `n` requests at once; the number admitted.
async fn burst(s: &Limited, path: &str, client: &str, n: usize) -> usize {
    let replies = join_all((0..n).map(|_| get(s, path, client))).await;
    for r in &replies {
        assert!(matches!(r.status, 200 | 429), "{} {:?}", r.status, r.body);
    }
    replies.iter().filter(|r| r.status == 200).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_11th_request_in_a_second_gets_429_with_retry_after() {
    let s = Limited::start(
        &limited_route(
            "a",
            "{name: per-client, by: ['header:x-client'], limits: [{requests: 10, per: 1s}]}",
        ),
        "rl-per-client",
    )
    .await;
    // Early in a second, so the 11 requests share one window of the wall clock.
    at_second(Duration::from_millis(20)).await;
    for i in 0..10 {
        let r = get(&s, "/a", "alice").await;
        assert_eq!(r.status, 200, "request {} of 10: {:?}", i + 1, r.body);
        assert_eq!(header(&r, "ratelimit-limit"), Some("10"));
        assert_eq!(
            header(&r, "ratelimit-remaining"),
            Some((9 - i).to_string().as_str())
        );
    }
    let r = get(&s, "/a", "alice").await;
    assert_eq!(r.status, 429, "the 11th: {:?}", r.body);
    let retry: u64 = header(&r, "retry-after")
        .expect("Retry-After on the 429")
        .parse()
        .unwrap();
    assert!(retry >= 1, "Retry-After {retry}");
    assert_eq!(header(&r, "ratelimit-limit"), Some("10"));
    assert_eq!(header(&r, "ratelimit-remaining"), Some("0"));
    let reset: u64 = header(&r, "ratelimit-reset").unwrap().parse().unwrap();
    assert!(reset >= 1, "RateLimit-Reset {reset}");

    let other = get(&s, "/a", "bob").await;
    assert_eq!(other.status, 200, "another client is unaffected");
    assert_eq!(header(&other, "ratelimit-remaining"), Some("9"));
    // Without the dimension there is nothing to count by: not limited.
    assert_eq!(s.gw.get("x.test", "/a").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_and_sustained_windows_are_both_enforced() {
    let s = Limited::start(
        &limited_route(
            "both",
            "{name: per-client, by: ['header:x-client'], limits: [{requests: 5, per: 1s}, {requests: 20, per: 1m}]}",
        ),
        "rl-burst-sustained",
    )
    .await;
    // One round per other second: the second before each round is empty, so only the
    // 5/s window limits a round until the 20/min window is spent.
    let mut total = 0;
    let mut minute_refusal = None;
    for round in 0..6 {
        at_second(Duration::from_millis(20)).await;
        let mut admitted = 0;
        for _ in 0..8 {
            let r = get(&s, "/both", "carol").await;
            match r.status {
                200 => admitted += 1,
                429 if header(&r, "ratelimit-limit") == Some("20") => {
                    minute_refusal.get_or_insert(header(&r, "retry-after").unwrap().to_owned());
                }
                429 => assert_eq!(header(&r, "ratelimit-limit"), Some("5")),
                other => panic!("status {other}: {:?}", r.body),
            }
        }
        if round == 0 {
            assert_eq!(admitted, 5, "the burst window admits 5 of 8");
        }
        assert!(admitted <= 5, "round {round}: {admitted} > 5 in a second");
        total += admitted;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // 6 rounds × 5 would be 30. A minute boundary during the test may return up to
    // 20·(elapsed share of the minute) ≈ 2 requests of the minute's quota.
    assert!(
        (20..=22).contains(&total),
        "the minute window caps the total: {total}"
    );
    let retry: u64 = minute_refusal
        .expect("a 429 from the 20/min window")
        .parse()
        .unwrap();
    assert!(retry >= 1, "Retry-After {retry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_limit_applies_within_2s_without_restarts() {
    let limit = |n: u32| {
        limited_route(
            "edit",
            &format!(
                "{{name: per-client, by: ['header:x-client'], limits: [{{requests: {n}, per: 1m}}]}}"
            ),
        )
    };
    let mut s = Limited::start(&limit(3), "rl-edit").await;
    let before = s.wait_rate_limits_acked(None, STARTUP).await;
    let mut admitted = 0;
    for _ in 0..5 {
        admitted += usize::from(get(&s, "/edit", "dave").await.status == 200);
    }
    assert_eq!(admitted, 3);

    let edited = Instant::now();
    s.write_routes(&limit(6));
    let took = {
        s.wait_rate_limits_acked(Some(&before), Duration::from_secs(2))
            .await;
        edited.elapsed()
    };
    eprintln!("edit applied by the rate-limit service after {took:?}");
    assert!(
        took <= Duration::from_secs(2),
        "edit applied after {took:?}"
    );
    // Raised: the counter is kept, so 3 more (not 6) are admitted.
    let mut admitted = 0;
    for _ in 0..5 {
        admitted += usize::from(get(&s, "/edit", "dave").await.status == 200);
    }
    assert_eq!(admitted, 3, "3 of the raised limit of 6 were already used");
    assert!(s.still_running(), "nothing was restarted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_limit_counts_but_never_blocks() {
    let s = Limited::start(
        &limited_route(
            "shadow",
            "{name: per-client, by: ['header:x-client'], limits: [{requests: 3, per: 1s}], shadow: true}",
        ),
        "rl-shadow",
    )
    .await;
    for _ in 0..20 {
        let r = get(&s, "/shadow", "erin").await;
        assert_eq!(r.status, 200, "shadow never blocks");
        assert_eq!(header(&r, "retry-after"), None);
    }
    let name = "e2e/shadow/per-client";
    let (ok, over) = (
        s.decisions(name, "ok").await,
        s.decisions(name, "shadow_over_limit").await,
    );
    assert_eq!(
        ok + over,
        20,
        "every request is counted: ok {ok}, over {over}"
    );
    assert!(over >= 1, "the shadow limit reports what it would refuse");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_burst_straddling_a_second_boundary_is_refused() {
    let s = Limited::start(
        &limited_route(
            "slide",
            "{name: per-client, by: ['header:x-client'], limits: [{requests: 10, per: 1s}]}",
        ),
        "rl-sliding",
    )
    .await;
    // 10 at the end of one second, 10 at the start of the next: a fixed window
    // would admit all 20.
    at_second(Duration::from_millis(800)).await;
    let first_sent = Instant::now();
    let first = burst(&s, "/slide", "frank", 10).await;
    at_second(Duration::from_millis(50)).await;
    let second = burst(&s, "/slide", "frank", 10).await;
    let span = first_sent.elapsed();
    assert_eq!(first, 10, "the first burst fits the limit");
    // Over any span d ≤ 1 s the sliding window admits at most 10·(1 + d/1s).
    let bound = (10.0 * (1.0 + span.as_secs_f64())).floor() as usize;
    eprintln!("admitted {first} + {second} within {span:?} (bound {bound})");
    assert!(
        first + second <= bound && second < 10,
        "admitted {first} + {second} within {span:?} (bound {bound})"
    );
}
