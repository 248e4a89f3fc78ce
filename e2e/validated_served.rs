//! "Validated ⇒ served", as a property: for generated manifest sets (valid and not,
//! with every field at and past its bounds), whatever `validate` accepts translates
//! without a panic and a real Envoy ACKs it.
//!
//! `make test` runs a few hundred cases; `PORTCULLIS_PROPTEST_CASES=10000 make proptest`
//! runs the long version (docs/robustness.md has the figures). A failure prints the
//! manifests; it becomes a unit test of the rule that was missing.
use std::{
    cell::Cell,
    time::{Duration, Instant},
};

use portcullis_api::{
    Document, Objects,
    isolate::INTERNAL_FIELD,
    parse_documents,
    validate::{Rules, validate_with},
};
use portcullis_translate::{Options, translate};
use portcullis_xds::Cache;
use proptest::{
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::harness::*;

fn one_of<T: Clone + std::fmt::Debug + 'static>(items: &[T]) -> BoxedStrategy<T> {
    proptest::sample::select(items.to_vec()).boxed()
}

/// Mostly `valid`, sometimes one of the `edge` values: each field is right most of the
/// time, so generated sets are mostly served, and every bound is still probed.
fn mostly<T: std::fmt::Debug + 'static>(
    valid: BoxedStrategy<T>,
    edge: BoxedStrategy<T>,
) -> BoxedStrategy<T> {
    prop_oneof![19 => valid, 1 => edge].boxed()
}

fn opt<S: Strategy + 'static>(s: S) -> BoxedStrategy<Option<S::Value>> {
    proptest::option::weighted(0.3, s).boxed()
}

fn duration() -> BoxedStrategy<String> {
    mostly(
        prop_oneof![
            one_of(&["250ms", "1s", "2s", "5s", "10s", "30s"]).prop_map(String::from),
            (1u64..20_000).prop_map(|n| format!("{n}ms")),
        ]
        .boxed(),
        one_of(&[
            "0s",
            "1ms",
            "250ms",
            "999ms",
            "1s",
            "2s",
            "10s",
            "30s",
            "31s",
            "60s",
            "61s",
            "5m",
            "1h",
            "24h",
            "25h",
            "366d",
            "367d",
            "2000000000000000000s",
            "1.5s",
        ])
        .prop_map(String::from)
        .boxed(),
    )
}

fn count() -> BoxedStrategy<u64> {
    mostly(
        (1u64..6).boxed(),
        one_of(&[0u64, 6, 10, 11, 100, 1_000_000, 1_000_001, 4_294_967_295]),
    )
}

fn path() -> BoxedStrategy<String> {
    mostly(
        "/[a-zA-Z0-9._~-]{0,6}(/[a-zA-Z0-9_-]{1,6}){0,3}/?".boxed(),
        one_of(&[
            "/",
            "/a",
            "/api",
            "/API",
            "/a/b",
            "/a/",
            "/x%20y",
            "/%61",
            "/a;b",
            "/a//b",
            "/a/../b",
            "/é",
            "/a%2Fb",
            "/a%zz",
            "api",
            "",
            "/v1/items/",
            "/a?b",
        ])
        .prop_map(String::from)
        .boxed(),
    )
}

fn header() -> BoxedStrategy<Value> {
    let name = mostly(
        "x-[a-z][a-z0-9-]{0,8}".boxed(),
        one_of(&["X-B", "host", ":path", "x_under", ""])
            .prop_map(String::from)
            .boxed(),
    );
    let regex = mostly(
        one_of(&[
            "[0-9]+",
            "(a|b)*",
            r"\d+",
            "x{1,5}y{1,5}",
            "[a-z0-9-]{1,8}",
            ".*",
            "v[0-9]",
        ]),
        one_of(&[
            "a{100}",
            "(?=x)",
            "(",
            r"\p{Greek}",
            "(ab|cd|ef|gh){20}",
            "",
        ]),
    );
    let value = prop_oneof![
        one_of(&["v", "", "1", "true"]).prop_map(String::from),
        "[ -~]{0,8}"
    ];
    (name, 0u8..4, value, regex)
        .prop_map(|(name, kind, value, regex)| match kind {
            0 => json!({"name": name, "exact": value}),
            1 => json!({"name": name, "prefix": value}),
            2 => json!({"name": name, "regex": regex}),
            _ => json!({"name": name}),
        })
        .boxed()
}

fn host() -> BoxedStrategy<String> {
    mostly(
        one_of(&[
            "a.example.com",
            "b.example.com",
            "*.example.com",
            "x.test",
            "*.b.example.com",
        ]),
        one_of(&["API.x", "", "a..b", "*.com", "localhost", "*"]),
    )
    .prop_map(String::from)
    .boxed()
}

fn retry() -> BoxedStrategy<Value> {
    (
        count(),
        opt(duration()),
        proptest::collection::vec(
            mostly(
                one_of(&[
                    "5xx",
                    "reset",
                    "connect-failure",
                    "gateway-error",
                    "retriable-status-codes",
                ]),
                one_of(&["bogus"]),
            ),
            0..3,
        ),
        proptest::collection::vec(
            mostly(
                one_of(&[500u32, 502, 503, 504]),
                one_of(&[0u32, 100, 599, 600]),
            ),
            0..3,
        ),
        opt((opt(duration()), opt(duration()))),
        opt(any::<bool>()),
    )
        .prop_map(|(attempts, per_try, on, codes, backoff, non_idem)| {
            let mut r = json!({"attempts": attempts, "on": on, "statusCodes": codes});
            if let Some(t) = per_try {
                r["perTryTimeout"] = json!(t);
            }
            if let Some((base, max)) = backoff {
                r["backoff"] = json!({});
                if let Some(b) = base {
                    r["backoff"]["base"] = json!(b);
                }
                if let Some(m) = max {
                    r["backoff"]["max"] = json!(m);
                }
            }
            if let Some(n) = non_idem {
                r["nonIdempotent"] = json!(n);
            }
            r
        })
        .boxed()
}

fn rate_limit() -> BoxedStrategy<Value> {
    (
        mostly(
            one_of(&["per-ip", "per-key", "burst"]),
            one_of(&["Bad Name", "per-ip"]),
        ),
        proptest::collection::vec(
            mostly(
                one_of(&["clientIP", "route", "method", "header:x-team"]),
                one_of(&["header:", "ip", "apiKey", "user"]),
            ),
            1..2,
        ),
        (
            count(),
            mostly(
                one_of(&["1s", "1m", "1h"]).prop_map(String::from).boxed(),
                duration(),
            ),
        )
            .prop_map(|w| vec![w]),
        opt(any::<bool>()),
        opt(one_of(&["allow", "deny"])),
    )
        .prop_map(|(name, by, windows, shadow, failure)| {
            let limits: Vec<Value> = windows
                .into_iter()
                .map(|(n, per)| json!({"requests": n, "per": per}))
                .collect();
            let mut l = json!({"name": name, "by": by, "limits": limits});
            if let Some(s) = shadow {
                l["shadow"] = json!(s);
            }
            if let Some(f) = failure {
                l["onStoreFailure"] = json!(f);
            }
            l
        })
        .boxed()
}

fn route(i: usize) -> BoxedStrategy<Value> {
    let paths = proptest::collection::vec(
        (any::<bool>(), path()).prop_map(|(exact, p)| {
            if exact {
                json!({"exact": p})
            } else {
                json!({"prefix": p})
            }
        }),
        1..4,
    );
    let backends = (
        mostly(
            proptest::sample::subsequence(vec!["s0", "s1", "s2"], 1..3).boxed(),
            Just(vec!["missing"]).boxed(),
        ),
        opt(count()),
    )
        .prop_map(|(names, w)| {
            names
                .into_iter()
                .map(|s| match w {
                    Some(w) => json!({"service": s, "weight": w}),
                    None => json!({"service": s}),
                })
                .collect::<Vec<_>>()
        });
    let auth = opt((
        opt(any::<bool>()),
        proptest::collection::vec(
            mostly(one_of(&["read", "admin", "write"]), one_of(&["a b", ""])),
            0..3,
        ),
        opt(any::<bool>()),
        opt(any::<bool>()),
    ));
    (
        proptest::collection::vec(host(), 0..3),
        mostly(
            proptest::sample::subsequence(vec!["GET", "POST", "DELETE", "PUT"], 0..3).boxed(),
            one_of(&[vec!["get"], vec!["FOO"], vec!["GET", "GET"]]),
        ),
        paths,
        proptest::collection::vec(header(), 0..2),
        backends,
        (opt(duration()), opt(duration())),
        (opt(retry()), opt(any::<bool>())),
        auth,
        proptest::collection::vec(rate_limit(), 0..2),
        opt(mostly(one_of(&[0.0f64, 0.5, 100.0]), one_of(&[101.0, -1.0]))),
    )
        .prop_map(move |(hosts, methods, paths, headers, backends, (timeout, idle), (retry, hedge), auth, limits, sampling)| {
            let mut spec = json!({
                "hosts": hosts,
                "match": {"methods": methods, "paths": paths, "headers": headers},
                "backends": backends,
                "rateLimits": limits,
            });
            if let Some(t) = timeout {
                spec["timeout"] = json!(t);
            }
            if let Some(t) = idle {
                spec["idleTimeout"] = json!(t);
            }
            if let Some(r) = retry {
                spec["retry"] = r;
            }
            // Hedging needs a per-try timeout: mostly generate it consistent.
            if let Some(h) = hedge {
                spec["hedge"] = json!({"onPerTryTimeout": h});
                if h && spec["retry"]["perTryTimeout"].is_null() && !sampling.is_some_and(|p| p > 100.0) {
                    spec["retry"] = json!({"attempts": 1, "perTryTimeout": "100ms"});
                }
            }
            if let Some((required, scopes, shadow, forward)) = auth {
                let mut a = json!({"scopes": scopes});
                if let Some(r) = required {
                    a["required"] = json!(r);
                }
                if let Some(s) = shadow {
                    a["shadow"] = json!(s);
                }
                if let Some(f) = forward {
                    a["forwardCredential"] = json!(f);
                }
                spec["auth"] = a;
            }
            if let Some(p) = sampling {
                spec["tracing"] = json!({"samplingPercent": p});
            }
            json!({
                "apiVersion": "portcullis.dev/v1alpha1", "kind": "Route",
                "metadata": {"name": format!("r{i}"), "namespace": "p", "creationTimestamp": format!("2026-01-01T00:00:0{i}Z")},
                "spec": spec,
            })
        })
        .boxed()
}

fn service(i: usize) -> BoxedStrategy<Value> {
    let destination = (
        mostly(one_of(&["a", "b"]), one_of(&["B!"])),
        mostly(
            one_of(&[
                "10.0.0.1:80",
                "127.0.0.1:8080",
                "[::1]:80",
                "api.internal:443",
                "10.0.0.2:65535",
                "[fd00::1]:8443",
            ]),
            one_of(&["169.254.169.254:80", "host:0", "nohost"]),
        ),
        opt(count()),
        opt(mostly(one_of(&["eu", "us"]), one_of(&["Bad"]))),
        opt(any::<bool>()),
    )
        .prop_map(|(name, address, weight, region, failover)| {
            let mut d = json!({"name": name, "address": address});
            if let Some(w) = weight {
                d["weight"] = json!(w);
            }
            if let Some(r) = region {
                d["region"] = json!(r);
            }
            if let Some(f) = failover {
                d["failover"] = json!(f);
            }
            d
        });
    let pool = opt((count(), count(), count(), opt(duration()), opt(duration())));
    let short = mostly(
        one_of(&["100ms", "500ms", "1s"])
            .prop_map(String::from)
            .boxed(),
        duration(),
    );
    let health = opt((
        path(),
        opt(duration()),
        opt(short.clone()),
        opt(count()),
        opt(short),
    ));
    let outlier = opt((
        opt(any::<bool>()),
        count(),
        count(),
        opt(duration()),
        opt(duration()),
        count(),
        opt(one_of(&[0.0f64, 1.9, -1.0, 1e12])),
    ));
    (
        proptest::collection::vec(destination, 1..3),
        (opt(duration()), opt(duration())),
        one_of(&["http1", "http2"]),
        opt((one_of(&["weightedRandom", "roundRobin", "leastRequest", "ringHash", "maglev"]), opt(one_of(&["header", "cookie", "sourceIP"])))),
        pool,
        opt(mostly(one_of(&[1.0f64, 20.0, 100.0]), one_of(&[0.0f64, 150.0]))),
        health,
        outlier,
    )
        .prop_map(move |(destinations, (timeout, connect), protocol, lb, pool, budget, health, outlier)| {
            let mut spec = json!({"destinations": destinations, "protocol": protocol});
            if let Some(t) = timeout {
                spec["timeout"] = json!(t);
            }
            if let Some(t) = connect {
                spec["connectTimeout"] = json!(t);
            }
            if let Some((policy, hash)) = lb {
                spec["loadBalancer"] = json!({"policy": policy});
                match hash {
                    Some("header") => spec["loadBalancer"]["hashOn"] = json!({"header": "x-user"}),
                    Some("cookie") => spec["loadBalancer"]["hashOn"] = json!({"cookie": "sid"}),
                    Some(_) => spec["loadBalancer"]["hashOn"] = json!({"sourceIP": true}),
                    None => {}
                }
            }
            if let Some((c, p, r, idle, life)) = pool {
                spec["connectionPool"] = json!({"maxConnections": c, "maxPendingRequests": p, "maxRequests": r});
                if let Some(t) = idle {
                    spec["connectionPool"]["idleTimeout"] = json!(t);
                }
                if let Some(t) = life {
                    spec["connectionPool"]["maxConnectionDuration"] = json!(t);
                }
            }
            if let Some(p) = budget {
                spec["retryBudget"] = json!({"percent": p});
            }
            if let Some((path, interval, timeout, threshold, jitter)) = health {
                let mut h = json!({"path": path});
                if let Some(t) = interval {
                    h["interval"] = json!(t);
                }
                if let Some(t) = timeout {
                    h["timeout"] = json!(t);
                }
                if let Some(n) = threshold {
                    h["unhealthyThreshold"] = json!(n);
                }
                if let Some(t) = jitter {
                    h["jitter"] = json!(t);
                }
                spec["healthCheck"] = h;
            }
            if let Some((enabled, c5, cg, interval, eject, percent, stdev)) = outlier {
                let mut o = json!({"consecutive5xx": c5, "consecutiveGatewayFailures": cg, "maxEjectionPercent": percent});
                if let Some(e) = enabled {
                    o["enabled"] = json!(e);
                }
                if let Some(t) = interval {
                    o["interval"] = json!(t);
                }
                if let Some(t) = eject {
                    o["baseEjectionTime"] = json!(t);
                }
                if let Some(s) = stdev {
                    o["successRate"] = json!({"stdevFactor": s});
                }
                spec["outlierDetection"] = o;
            }
            json!({
                "apiVersion": "portcullis.dev/v1alpha1", "kind": "Service",
                "metadata": {"name": format!("s{i}"), "namespace": "p"},
                "spec": spec,
            })
        })
        .boxed()
}

/// 3 Services and 1–5 Routes as one multi-document manifest.
fn manifests() -> BoxedStrategy<String> {
    let services = (service(0), service(1), service(2)).prop_map(|(a, b, c)| vec![a, b, c]);
    let routes = (route(0), route(1), route(2), route(3), route(4), 1usize..=5)
        .prop_map(|(a, b, c, d, e, n)| [a, b, c, d, e].into_iter().take(n).collect::<Vec<_>>());
    (services, routes)
        .prop_map(|(s, r)| {
            s.iter()
                .chain(&r)
                .map(|v| serde_json::to_string(v).unwrap())
                .collect::<Vec<_>>()
                .join("\n---\n")
        })
        .boxed()
}

/// Pushes `snapshot` and waits for the Envoy's answer on every type: `Err` with
/// Envoy's message on a NACK.
async fn push(cache: &Cache, snapshot: portcullis_xds::Snapshot) -> Result<(), String> {
    let mut status = cache.status_rx();
    cache.set_snapshot(snapshot);
    let want = cache.snapshot();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let nodes = cache.nodes();
        let envoy = nodes.iter().find(|n| n.id == "proptest");
        let mut done = envoy.is_some();
        for url in want
            .type_urls()
            .filter(|u| u.starts_with("type.googleapis.com/envoy."))
        {
            let version = want.type_version(url);
            let t = envoy.and_then(|n| n.types.get(url));
            if let Some(nack) = t.and_then(|t| t.nack.as_ref())
                && Some(nack.version.as_str()) == version
            {
                return Err(format!("{url}: {}", nack.message));
            }
            if t.and_then(|t| t.acked.as_deref()) != version {
                done = false;
            }
        }
        if done {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("no ACK or NACK within 20s: {:#?}", nodes));
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), status.changed()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whatever_validate_accepts_envoy_accepts() {
    let registry = prometheus::Registry::new();
    let cache = Cache::new(&registry);
    let xds = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let xds_addr = xds.local_addr().unwrap();
    tokio::spawn(portcullis_xds::serve(
        xds,
        cache.clone(),
        std::future::pending(),
    ));
    // Every optional filter on, so their per-route pieces are exercised too.
    let options = Options {
        listen_address: "127.0.0.1".into(),
        listen_port: 0,
        authz: Some("127.0.0.1:1".into()),
        ratelimit: Some("127.0.0.1:2".into()),
        access_log_service: Some("127.0.0.1:3".into()),
        otlp_collector: Some("127.0.0.1:4".into()),
        ..Default::default()
    };
    let empty = portcullis_api::Model::default();
    cache.set_snapshot(portcullis_plane::publish::to_snapshot(&translate(
        &empty, &options,
    )));
    let _gw = Gateway::start(xds_addr, "proptest", false).await;

    let cases: u32 = std::env::var("PORTCULLIS_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let handle = tokio::runtime::Handle::current();
    let started = Instant::now();
    let stats = tokio::task::spawn_blocking(move || {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            max_shrink_iters: 200,
            ..Config::default()
        });
        let (served_sets, served_routes) = (Cell::new(0usize), Cell::new(0usize));
        let result = runner.run(&manifests(), |text| {
            let docs: Vec<Document> = parse_documents(&text).into_iter().flatten().collect();
            let objects = Objects::from_documents(&docs);
            let outcome = validate_with(&objects.routes, &objects.services, &Rules::file_mode());
            for r in &outcome.reports {
                prop_assert!(
                    r.errors.iter().all(|e| e.field != INTERNAL_FIELD),
                    "validation panicked: {:?}\n{text}",
                    r.errors
                );
            }
            let resources = translate(&outcome.model, &options);
            prop_assert!(
                resources.failed.is_empty(),
                "translation panicked: {:?}\n{text}",
                resources.failed
            );
            if !outcome.model.routes.is_empty() {
                served_sets.set(served_sets.get() + 1);
                served_routes.set(served_routes.get() + outcome.model.routes.len());
            }
            let snapshot = portcullis_plane::publish::to_snapshot(&resources);
            handle.block_on(push(&cache, snapshot)).map_err(|e| {
                TestCaseError::fail(format!(
                    "Envoy rejected what validate accepted: {e}\n{text}"
                ))
            })?;
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
        (served_sets.get(), served_routes.get())
    })
    .await
    .unwrap();
    eprintln!(
        "{cases} generated manifest sets in {:?}: {} had served Routes ({} entries), 0 NACKs",
        started.elapsed(),
        stats.0,
        stats.1
    );
    assert!(
        stats.0 > 0,
        "no generated set was valid: the generator is too wild"
    );
}
