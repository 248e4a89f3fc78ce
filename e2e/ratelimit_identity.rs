//! Rate limits on identities through real Envoy: `portcullis authz` turns API keys into
//! users and writes them as dynamic metadata, Envoy's rate-limit actions read it, and
//! `portcullis ratelimit` counts per user / per key / per client IP in real Redis.
use crate::auth::{Authz, keys_yaml};
use crate::harness::*;
use crate::ratelimit_stack::Limited;

async fn keyed_stack(routes: &str, node: &str) -> (Limited, Authz, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<(String, String, String)> = (0..13)
        .map(|i| (format!("id-{i}"), format!("key-{i}"), format!("user-{i}")))
        .collect();
    let refs: Vec<(&str, &str, &str, &str)> = keys
        .iter()
        .map(|(id, k, u)| (id.as_str(), k.as_str(), u.as_str(), ""))
        .collect();
    let path = dir.path().join("keys.yaml");
    write_atomic(&path, &keys_yaml(&refs));
    let authz = Authz::start(&["--keys-file", path.to_str().unwrap()]).await;
    let s = Limited::start_with_authz(routes, node, Some(authz.grpc)).await;
    (s, authz, dir)
}

async fn get(s: &Limited, path: &str, key: &str) -> Reply {
    s.gw.request("GET", "x.test", path, &[("x-api-key", key)])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_key_limit_refuses_the_11th_and_spares_other_keys() {
    let routes = route_yaml(
        "keyed",
        "{match: {paths: [{prefix: /keyed}]}, auth: {}, backends: [{service: echo}], rateLimits: [{name: per-key, by: [apiKey], limits: [{requests: 10, per: 1h}]}]}",
    );
    let (s, _authz, _dir) = keyed_stack(&routes, "rl-keyed").await;
    for i in 0..10 {
        assert_eq!(get(&s, "/keyed", "key-0").await.status, 200, "request {i}");
    }
    let r = get(&s, "/keyed", "key-0").await;
    assert_eq!(r.status, 429);
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "Retry-After {retry}");
    assert_eq!(
        get(&s, "/keyed", "key-1").await.status,
        200,
        "another key is unaffected"
    );
    assert_eq!(
        get(&s, "/keyed", "nope").await.status,
        401,
        "auth runs before the limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_office_behind_one_ip_is_served_while_a_flood_from_it_is_stopped() {
    // Per user 5, per client IP 40 (all tests come from 127.0.0.1).
    let routes = route_yaml(
        "office",
        "{match: {paths: [{prefix: /office}]}, auth: {}, backends: [{service: echo}], rateLimits: [{name: per-user, by: [user], limits: [{requests: 5, per: 1h}]}, {name: per-ip, by: [clientIP], limits: [{requests: 40, per: 1h}]}]}",
    );
    let (s, _authz, _dir) = keyed_stack(&routes, "rl-office").await;
    // Twelve colleagues, three requests each: 36 from one IP, each user under 5.
    for round in 0..3 {
        for u in 0..12 {
            let r = get(&s, "/office", &format!("key-{u}")).await;
            assert_eq!(r.status, 200, "user {u}, round {round}");
            assert_eq!(r.body["headers"]["x-portcullis-user"], format!("user-{u}"));
        }
    }
    // One user's own limit still applies.
    assert_eq!(get(&s, "/office", "key-12").await.status, 200);
    // A flood from the same IP spread over the users: the per-IP limit (40) stops it
    // although no user is over 5: 37 admitted so far, so 3 more pass.
    let mut admitted = 0;
    for u in 0..12 {
        if get(&s, "/office", &format!("key-{u}")).await.status == 200 {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 3, "the per-IP limit admits exactly up to 40");
}
