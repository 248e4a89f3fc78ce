//! Limits that need no identity run before authentication, and a limit that must fail
//! closed does, through real Envoy, `portcullis authz` (counting key-store lookups on
//! a real introspection server), `portcullis ratelimit` and Redis.
use std::{
    net::IpAddr,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use futures::StreamExt;

use crate::auth::{Authz, introspection};
use crate::harness::*;
use crate::ratelimit_stack::Limited;

/// A client whose requests come from `ip` (any 127.0.0.0/8 address is this machine).
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from(ip))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn status(client: &reqwest::Client, port: u16, path: &str, key: &str) -> u16 {
    client
        .get(format!("http://127.0.0.1:{port}{path}"))
        .header("host", "x.test")
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_made_up_keys_from_one_address_is_stopped_before_the_key_store() {
    let idp = introspection(Duration::ZERO).await;
    idp.valid.lock().push("good-token".into());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("authz.yaml");
    write_atomic(
        &config,
        &format!(
            "cache: {{ttl: 60s, negativeTtl: 60s}}\nkeyStore:\n  introspection: {{endpoints: ['{}']}}\n",
            idp.url
        ),
    );
    let authz = Authz::start(&["--config", config.to_str().unwrap()]).await;
    const PER_IP: usize = 50;
    let routes = route_yaml(
        "api",
        &format!(
            "{{match: {{paths: [{{prefix: /api}}]}}, auth: {{}}, backends: [{{service: echo}}], rateLimits: [{{name: per-ip, by: [clientIP], limits: [{{requests: {PER_IP}, per: 1h}}]}}]}}"
        ),
    );
    let s = Limited::start_with_authz(&routes, "limits-first", Some(authz.grpc)).await;
    let port = s.gw.port;
    let (attacker, colleague) = (client_from([127, 0, 0, 1]), client_from([127, 0, 0, 2]));

    // The colleague's valid token, looked up once and cached.
    assert_eq!(status(&colleague, port, "/api/x", "good-token").await, 200);
    let before = idp.calls.load(Ordering::SeqCst);
    assert_eq!(before, 1);

    const FLOOD: usize = 10_000;
    let started = Instant::now();
    let attack = futures::stream::iter(0..FLOOD)
        .map(|i| {
            let attacker = &attacker;
            async move { status(attacker, port, "/api/x", &format!("made-up-{i}")).await }
        })
        .buffer_unordered(32)
        .collect::<Vec<u16>>();
    // The colleague keeps working while the flood runs.
    let colleague_side = async {
        let mut codes = Vec::new();
        for _ in 0..20 {
            codes.push(status(&colleague, port, "/api/x", "good-token").await);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        codes
    };
    let (flood, colleague_codes) = tokio::join!(attack, colleague_side);
    let took = started.elapsed();

    let refused_by_limit = flood.iter().filter(|c| **c == 429).count();
    let unauthenticated = flood.iter().filter(|c| **c == 401).count();
    let lookups = idp.calls.load(Ordering::SeqCst) - before;
    eprintln!(
        "{FLOOD} made-up keys in {took:?}: {refused_by_limit} × 429, {unauthenticated} × 401, {lookups} key-store lookups"
    );
    assert!(
        lookups <= PER_IP,
        "{lookups} key-store lookups for {FLOOD} made-up keys from one address; the per-IP limit ({PER_IP}) must stop the rest before authz"
    );
    assert_eq!(
        unauthenticated, lookups,
        "every admitted made-up key is a 401"
    );
    assert_eq!(refused_by_limit + unauthenticated, FLOOD, "{flood:?}");
    assert!(
        colleague_codes.iter().all(|c| *c == 200),
        "a valid cached token from another address failed during the flood: {colleague_codes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_limit_fails_closed_when_the_rate_limit_service_is_gone() {
    let routes = [
        route_yaml(
            "strict",
            "{match: {paths: [{prefix: /strict}]}, backends: [{service: echo}], rateLimits: [{name: per-ip, by: [clientIP], onStoreFailure: deny, limits: [{requests: 1000, per: 1s}]}]}",
        ),
        route_yaml(
            "lenient",
            "{match: {paths: [{prefix: /lenient}]}, backends: [{service: echo}], rateLimits: [{name: per-ip, by: [clientIP], limits: [{requests: 1000, per: 1s}]}]}",
        ),
    ]
    .concat();
    let mut s = Limited::start(&routes, "fail-closed").await;
    assert_eq!(s.gw.get("x.test", "/strict").await.status, 200);
    assert_eq!(s.gw.get("x.test", "/lenient").await.status, 200);

    s.ratelimit.kill().await.unwrap();
    s.ratelimit.wait().await.unwrap();
    let strict = s.gw.get("x.test", "/strict").await;
    assert_eq!(
        strict.status, 503,
        "a deny limit admitted a request with the rate-limit service down: {:?}",
        strict.body
    );
    assert_eq!(
        s.gw.get("x.test", "/lenient").await.status,
        200,
        "an allow limit fails open"
    );
    // A route without limits never calls the service.
    assert_eq!(s.gw.get("x.test", "/probe-nothing").await.status, 404);
}
