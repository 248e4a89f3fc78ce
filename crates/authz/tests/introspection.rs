//! The introspection key store against real HTTP servers started here: coalescing,
//! TTL caching, the circuit breaker and hedging, all through the service's gRPC Check.
mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;

const EXT: [(&str, &str); 1] = [("portcullis.route", "ns/r")];

fn config(dir: &std::path::Path, endpoints: &[&str], extra: &str) -> String {
    let list = endpoints
        .iter()
        .map(|e| format!("'{e}'"))
        .collect::<Vec<_>>()
        .join(", ");
    write(
        dir,
        "authz.yaml",
        &format!("keyStore:\n  introspection:\n    endpoints: [{list}]\n{extra}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_checks_for_one_cold_token_make_one_lookup() {
    let idp = idp(Duration::from_millis(100), &["tok"]).await;
    let dir = tempfile::tempdir().unwrap();
    let svc = start(&["--config", &config(dir.path(), &[&idp.url], "")]).await;
    let bearer = [("authorization", "Bearer tok")];

    let checks = (0..1000).map(|_| {
        let mut client = svc.client.clone();
        async move {
            let r = client.check(check_request(&bearer, &EXT)).await.unwrap();
            http_status(r.get_ref())
        }
    });
    let statuses = futures::future::join_all(checks).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        idp.calls.load(Ordering::SeqCst),
        1,
        "one lookup for 1,000 concurrent checks"
    );
    let miss = metric(&svc, r#"portcullis_authz_cache_total{outcome="miss"}"#).await;
    let coalesced = metric(&svc, r#"portcullis_authz_cache_total{outcome="coalesced"}"#).await;
    let hit = metric(&svc, r#"portcullis_authz_cache_total{outcome="hit"}"#).await;
    assert_eq!(miss, 1.0);
    assert_eq!(miss + coalesced + hit, 1000.0);
    assert_eq!(
        metric(&svc, "portcullis_authz_cache_entries").await,
        1.0,
        "one token, one cache entry"
    );
    assert!(
        coalesced > 0.0,
        "some checks must have waited on the lookup"
    );

    let mut client = svc.client.clone();
    for _ in 0..1000 {
        let r = client.check(check_request(&bearer, &EXT)).await.unwrap();
        assert_eq!(http_status(r.get_ref()), 200);
    }
    assert_eq!(
        idp.calls.load(Ordering::SeqCst),
        1,
        "1,000 sequential checks within the TTL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tokens_are_cached_negatively() {
    let idp = idp(Duration::ZERO, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut svc = start(&["--config", &config(dir.path(), &[&idp.url], "")]).await;
    for _ in 0..50 {
        let r = svc
            .client
            .check(check_request(&[("authorization", "Bearer nope")], &EXT))
            .await
            .unwrap();
        assert_eq!(http_status(r.get_ref()), 401);
    }
    assert_eq!(idp.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_answers_fast_and_a_probe_closes_it() {
    let idp = idp(Duration::from_millis(200), &["tok"]).await;
    idp.fail.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let extra =
        "    retries: 0\n    timeout: 1s\n    breaker: {failureThreshold: 3, openFor: 1s}\n";
    let mut svc = start(&["--config", &config(dir.path(), &[&idp.url], extra)]).await;
    let bearer = [("authorization", "Bearer tok")];
    let breaker = format!(
        r#"portcullis_authz_breaker_state{{endpoint="{}"}}"#,
        idp.url
    );

    // Three failures, each waiting on the slow failing backend: 503 (fail closed).
    for _ in 0..3 {
        let started = Instant::now();
        let r = svc
            .client
            .check(check_request(&bearer, &EXT))
            .await
            .unwrap();
        assert_eq!(http_status(r.get_ref()), 503);
        assert!(started.elapsed() >= Duration::from_millis(200));
    }
    assert_eq!(metric(&svc, &breaker).await, 2.0, "open");

    // Open: answered without calling the backend.
    let calls = idp.calls.load(Ordering::SeqCst);
    let mut took = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let r = svc
            .client
            .check(check_request(&bearer, &EXT))
            .await
            .unwrap();
        took.push(started.elapsed());
        assert_eq!(http_status(r.get_ref()), 503);
    }
    took.sort();
    assert_eq!(
        idp.calls.load(Ordering::SeqCst),
        calls,
        "no backend call while open"
    );
    assert!(
        took[10] < Duration::from_millis(5),
        "median {:?} (all: {took:?})",
        took[10]
    );

    // Recovery: after openFor one probe goes through, succeeds, and closes the breaker.
    idp.fail.store(false, Ordering::SeqCst);
    idp.delay_ms.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = svc
        .client
        .check(check_request(&bearer, &EXT))
        .await
        .unwrap();
    assert_eq!(http_status(r.get_ref()), 200);
    assert_eq!(idp.calls.load(Ordering::SeqCst), calls + 1);
    assert_eq!(metric(&svc, &breaker).await, 0.0, "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_region_is_hedged_to_the_next() {
    let tokens: Vec<String> = (0..100).map(|i| format!("t{i}")).collect();
    let valid: Vec<&str> = tokens.iter().map(String::as_str).collect();
    // The slow region answers after 800 ms; a hedged lookup must finish far sooner. The
    // bound is generous (a busy 2-core machine) but well under the slow region's time.
    let slow = idp(Duration::from_millis(800), &valid).await;
    let fast = idp(Duration::from_millis(5), &valid).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = "    hedgeDelay: 20ms\n    timeout: 2s\n";
    let mut svc = start(&[
        "--config",
        &config(dir.path(), &[&slow.url, &fast.url], extra),
    ])
    .await;

    let mut took = Vec::new();
    for t in &tokens {
        let bearer = format!("Bearer {t}");
        let started = Instant::now();
        let r = svc
            .client
            .check(check_request(&[("authorization", &bearer)], &EXT))
            .await
            .unwrap();
        took.push(started.elapsed());
        assert_eq!(http_status(r.get_ref()), 200);
    }
    took.sort();
    let p99 = took[98];
    assert!(
        p99 < Duration::from_millis(400),
        "p99 {p99:?}; all {took:?}"
    );
    assert!(
        took[0] >= Duration::from_millis(20),
        "the hedge waited its delay"
    );
    assert_eq!(fast.calls.load(Ordering::SeqCst), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_region_fails_over_and_stale_identities_cover_an_outage() {
    let down = idp(Duration::ZERO, &[]).await;
    down.fail.store(true, Ordering::SeqCst);
    let up = idp(Duration::ZERO, &["tok"]).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = "    hedgeDelay: 1s\ncache: {ttl: 1s, serveStaleFor: 1m}\n";
    let mut svc = start(&[
        "--config",
        &config(dir.path(), &[&down.url, &up.url], extra),
    ])
    .await;
    let bearer = [("authorization", "Bearer tok")];
    let started = Instant::now();
    let r = svc
        .client
        .check(check_request(&bearer, &EXT))
        .await
        .unwrap();
    assert_eq!(http_status(r.get_ref()), 200);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "failover does not wait for the hedge delay"
    );

    // Both regions down past the TTL: the cached identity is served within the grace.
    up.fail.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = svc
        .client
        .check(check_request(&bearer, &EXT))
        .await
        .unwrap();
    assert_eq!(http_status(r.get_ref()), 200);
    assert_eq!(
        metric(&svc, r#"portcullis_authz_cache_total{outcome="stale"}"#).await,
        1.0
    );
}
