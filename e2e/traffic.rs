//! Traffic policy through real Envoy, against backends the tests control.
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::harness::*;

/// Sends `n` GETs with `concurrency` in flight; returns (status, backend, latency).
async fn load(
    gw: &Gateway,
    path: &str,
    n: usize,
    concurrency: usize,
) -> Vec<(u16, Option<String>, Duration)> {
    futures::stream::iter(0..n)
        .map(|_| async move {
            let started = Instant::now();
            let r = gw.get("x.test", path).await;
            (r.status, r.backend, started.elapsed())
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

fn share(replies: &[(u16, Option<String>, Duration)], name: &str) -> f64 {
    replies
        .iter()
        .filter(|r| r.1.as_deref() == Some(name))
        .count() as f64
        * 100.0
        / replies.len() as f64
}

fn p99(mut latencies: Vec<Duration>) -> Duration {
    latencies.sort();
    latencies[(latencies.len() * 99).div_ceil(100) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_regions_follow_health_checks() {
    let (a, a_ctl) = backend("nyc").await;
    let (b, _) = backend("ams").await;
    let svc = service_spec_yaml(
        "regions",
        &format!(
            "{{destinations: [{{name: nyc, address: '{a}', weight: 90, region: nyc}}, {{name: ams, address: '{b}', weight: 10, region: ams}}], healthCheck: {{path: /health, interval: 1s, timeout: 500ms, unhealthyThreshold: 2, healthyThreshold: 1, jitter: 100ms}}}}"
        ),
    );
    let route = route_yaml(
        "r",
        "{match: {paths: [{prefix: /}]}, backends: [{service: regions}]}",
    );
    let s = stack(&(svc + &route), "regions").await;

    let replies = load(&s.gw, "/x", 4000, 16).await;
    assert!(replies.iter().all(|r| r.0 == 200));
    let nyc = share(&replies, "nyc");
    assert!(
        (87.0..=93.0).contains(&nyc),
        "nyc got {nyc:.1}% of 4000, want 90 ± 3"
    );

    // nyc's health check fails: within interval × threshold + 1 s (+ jitter) it gets
    // nothing. Traffic keeps flowing meanwhile; every request must still succeed.
    a_ctl.set_healthy(false);
    let flipped = Instant::now();
    let bound = Duration::from_millis(2 * 1000 + 1000 + 200);
    let mut last_nyc = Duration::ZERO;
    while flipped.elapsed() < bound + Duration::from_secs(1) {
        let r = s.gw.get("x.test", "/x").await;
        assert_eq!(r.status, 200);
        if r.backend.as_deref() == Some("nyc") {
            last_nyc = flipped.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        last_nyc <= bound,
        "nyc still got traffic {last_nyc:?} after failing its health check (bound {bound:?})"
    );
    let after = load(&s.gw, "/x", 200, 8).await;
    assert_eq!(share(&after, "nyc"), 0.0);

    // Recovery: one passing check (healthyThreshold 1) brings it back.
    a_ctl.set_healthy(true);
    let recovered = Instant::now();
    loop {
        if s.gw.get("x.test", "/x").await.backend.as_deref() == Some("nyc") {
            break;
        }
        assert!(
            recovered.elapsed() < Duration::from_secs(5),
            "nyc did not get traffic back after recovering"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_destination_only_while_primary_is_down() {
    let (a, a_ctl) = backend("primary").await;
    let (b, _) = backend("standby").await;
    let svc = service_spec_yaml(
        "fo",
        &format!(
            "{{destinations: [{{name: primary, address: '{a}'}}, {{name: standby, address: '{b}', failover: true}}], healthCheck: {{path: /health, interval: 1s, timeout: 500ms, unhealthyThreshold: 1, healthyThreshold: 1, jitter: 100ms}}}}"
        ),
    );
    let route = route_yaml(
        "r",
        "{match: {paths: [{prefix: /}]}, backends: [{service: fo}]}",
    );
    let s = stack(&(svc + &route), "failover").await;

    assert_eq!(share(&load(&s.gw, "/x", 300, 8).await, "primary"), 100.0);
    a_ctl.set_healthy(false);
    let started = Instant::now();
    while s.gw.get("x.test", "/x").await.backend.as_deref() != Some("standby") {
        if started.elapsed() > Duration::from_secs(5) {
            let (_, stats) = fetch(&s.gw.envoy.admin_url("/stats?filter=health_check"))
                .await
                .unwrap();
            let (_, dump) = fetch(
                &s.gw
                    .envoy
                    .admin_url("/config_dump?resource=dynamic_active_clusters"),
            )
            .await
            .unwrap();
            panic!("traffic never failed over: {stats}\n{dump}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        share(&load(&s.gw, "/x", 300, 8).await, "standby"),
        100.0,
        "primary is down: all on standby"
    );
    a_ctl.set_healthy(true);
    let started = Instant::now();
    while s.gw.get("x.test", "/x").await.backend.as_deref() != Some("primary") {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "traffic never came back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        share(&load(&s.gw, "/x", 300, 8).await, "primary"),
        100.0,
        "primary is back: standby idle"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_hide_flaky_backends_within_a_budget() {
    // Half of the Service's capacity fails every request with 503 (one of two hosts);
    // retries go to another host, so clients see (almost) no failures. Outlier
    // detection is off so the test measures retries alone.
    let (good, _) = backend("good").await;
    let (bad, bad_ctl) = backend("bad").await;
    bad_ctl.set_fail(1);
    let (broken, broken_ctl) = backend("broken").await;
    broken_ctl.set_fail(1);
    let manifests = service_spec_yaml(
        "flaky",
        &format!(
            "{{destinations: [{{name: good, address: '{good}'}}, {{name: bad, address: '{bad}'}}], outlierDetection: {{enabled: false}}}}"
        ),
    ) + &service_spec_yaml(
        "broken",
        &format!(
            "{{destinations: [{{name: d, address: '{broken}'}}], outlierDetection: {{enabled: false}}, retryBudget: {{percent: 20, minConcurrency: 1}}}}"
        ),
    ) + &route_yaml(
        "flaky",
        "{match: {paths: [{prefix: /flaky}]}, backends: [{service: flaky}], retry: {attempts: 2, on: [5xx], backoff: {base: 1ms, max: 5ms}}}",
    ) + &route_yaml(
        "broken",
        "{match: {paths: [{prefix: /broken}]}, backends: [{service: broken}], retry: {attempts: 3, on: [5xx], backoff: {base: 20ms, max: 50ms}}}",
    );
    let s = stack(&manifests, "retries").await;

    let replies = load(&s.gw, "/flaky", 500, 8).await;
    let ok = replies.iter().filter(|r| r.0 == 200).count();
    assert!(
        bad_ctl.hits() > 100,
        "the failing host was not tried: {}",
        bad_ctl.hits()
    );
    assert!(
        ok * 100 >= 500 * 99,
        "{ok}/500 succeeded with 2 retries while half the hosts fail"
    );

    // Always failing, under concurrency: without a budget each request would cost 4
    // attempts; the 20% budget caps retries in flight.
    let n = 400;
    let replies = load(&s.gw, "/broken", n, 40).await;
    assert!(replies.iter().all(|r| r.0 == 503));
    let attempts = broken_ctl.hits();
    println!(
        "always-failing backend: {n} requests, {attempts} upstream attempts (4 × {n} = {} without a budget)",
        4 * n
    );
    assert!(
        attempts <= n * 2,
        "{attempts} attempts for {n} requests: the retry budget did not hold"
    );
    assert!(
        s.gw.stat("cluster.e2e/broken.upstream_rq_retry_overflow")
            .await
            > 0,
        "the budget never refused a retry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedging_cuts_the_tail() {
    let (slow, slow_ctl) = backend("slow").await;
    let (fast, fast_ctl) = backend("fast").await;
    slow_ctl.set_delay(500);
    fast_ctl.set_delay(10);
    let svc = service_spec_yaml(
        "hedged",
        &format!(
            "{{destinations: [{{name: slow, address: '{slow}', region: a}}, {{name: fast, address: '{fast}', region: b}}], outlierDetection: {{enabled: false}}}}"
        ),
    );
    let manifests = svc
        + &route_yaml(
            "hedge",
            "{match: {paths: [{prefix: /hedge}]}, backends: [{service: hedged}], retry: {attempts: 1, perTryTimeout: 50ms, on: [gateway-error, reset]}, hedge: {onPerTryTimeout: true}}",
        )
        + &route_yaml(
            "plain",
            "{match: {paths: [{prefix: /plain}]}, backends: [{service: hedged}]}",
        );
    let s = stack(&manifests, "hedging").await;

    let with = load(&s.gw, "/hedge", 100, 10).await;
    let without = load(&s.gw, "/plain", 100, 10).await;
    assert!(with.iter().chain(&without).all(|r| r.0 == 200));
    let (p_with, p_without) = (
        p99(with.iter().map(|r| r.2).collect()),
        p99(without.iter().map(|r| r.2).collect()),
    );
    println!("p99 with hedging: {p_with:?}, without: {p_without:?}");
    assert!(p_with < Duration::from_millis(150), "hedged p99 {p_with:?}");
    assert!(
        p_without >= Duration::from_millis(500),
        "unhedged p99 {p_without:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlier_detection_ejects_a_failing_host() {
    let mut dests = Vec::new();
    let mut ctls = Vec::new();
    for name in ["h1", "h2", "h3"] {
        let (addr, ctl) = backend(name).await;
        dests.push(format!("{{name: {name}, address: '{addr}'}}"));
        ctls.push(ctl);
    }
    ctls[2].set_fail(1);
    let svc = service_spec_yaml(
        "od",
        &format!(
            "{{destinations: [{}], outlierDetection: {{consecutive5xx: 3, interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 50}}}}",
            dests.join(", ")
        ),
    );
    let s = stack(
        &(svc
            + &route_yaml(
                "r",
                "{match: {paths: [{prefix: /}]}, backends: [{service: od}]}",
            )),
        "outlier",
    )
    .await;

    let started = Instant::now();
    while s
        .gw
        .stat("cluster.e2e/od.outlier_detection.ejections_active")
        .await
        != 1
    {
        let _ = s.gw.get("x.test", "/x").await;
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "h3 was never ejected"
        );
    }
    let before = ctls[2].hits();
    let replies = load(&s.gw, "/x", 300, 8).await;
    assert_eq!(ctls[2].hits(), before, "the ejected host still got traffic");
    assert!(replies.iter().all(|r| r.0 == 200));
    assert!(share(&replies, "h1") > 30.0 && share(&replies, "h2") > 30.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breaker_fails_fast_instead_of_queueing() {
    let (slow, slow_ctl) = backend("slow").await;
    slow_ctl.set_delay(1000);
    let svc = service_spec_yaml(
        "cb",
        &format!(
            "{{destinations: [{{name: d, address: '{slow}'}}], connectionPool: {{maxConnections: 1, maxPendingRequests: 1, maxRequests: 1}}}}"
        ),
    );
    let s = stack(
        &(svc
            + &route_yaml(
                "r",
                "{match: {paths: [{prefix: /}]}, backends: [{service: cb}]}",
            )),
        "breaker",
    )
    .await;

    let replies = load(&s.gw, "/x", 10, 10).await;
    let overflow: Vec<_> = replies.iter().filter(|r| r.0 == 503).collect();
    assert!(
        overflow.len() >= 7,
        "only {} of 10 overflowed: {:?}",
        overflow.len(),
        replies.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    assert!(
        replies.iter().any(|r| r.0 == 200),
        "the request within the limits is served"
    );
    for r in &overflow {
        assert!(
            r.2 < Duration::from_millis(300),
            "an overflowing request waited {:?} (backend takes 1s)",
            r.2
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_answers_504_on_time() {
    let (slow, slow_ctl) = backend("slow").await;
    slow_ctl.set_delay(5000);
    let manifests = service_yaml("slow", slow)
        + &route_yaml(
            "r",
            "{match: {paths: [{prefix: /}]}, backends: [{service: slow}], timeout: 1s}",
        );
    let s = stack(&manifests, "timeouts").await;
    let started = Instant::now();
    let reply = s.gw.get("x.test", "/x").await;
    let took = started.elapsed();
    assert_eq!(reply.status, 504);
    assert!(
        (Duration::from_millis(800)..=Duration::from_millis(1200)).contains(&took),
        "504 after {took:?}, want 1s ± 20%"
    );
}
