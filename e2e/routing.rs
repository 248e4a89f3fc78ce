//! Requests through Envoy reach the backend the precedence rules pick, over SotW and
//! Delta ADS; weighted backends split traffic as declared.
use std::time::Duration;

use futures::StreamExt;

use crate::harness::*;

/// (method, host, path, extra headers, expected backend or None for 404)
type Case<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    Option<&'a str>,
);

/// Routes registered in two rounds, so "registered before" is real: the older round
/// holds a short prefix that must not shadow the longer one registered after it.
async fn precedence_through_envoy(delta: bool) {
    let mut services = String::new();
    for name in ["a", "b", "c", "d", "e", "f"] {
        services += &service_yaml(name, echo(name).await);
    }
    let dir = tempfile::tempdir().unwrap();
    let older = [
        route_yaml(
            "api",
            "{match: {paths: [{prefix: /api}]}, backends: [{service: a}]}",
        ),
        route_yaml(
            "special",
            "{match: {paths: [{exact: /api/v2/special}]}, backends: [{service: c}]}",
        ),
    ]
    .concat();
    write_atomic(&dir.path().join("1-older.yaml"), &(services + &older));
    let plane = Plane::start(dir.path(), None).await;
    let gw = Gateway::start(plane.xds, "routing", delta).await;
    plane.wait_synced(None, STARTUP).await;

    let newer = [
        route_yaml("api-v2", "{match: {paths: [{prefix: /api/v2}]}, backends: [{service: b}]}"),
        route_yaml("api-post", "{match: {methods: [POST], paths: [{prefix: /api}]}, backends: [{service: d}]}"),
        route_yaml("host", "{hosts: [api.example.com], match: {paths: [{prefix: /}]}, backends: [{service: e}]}"),
        route_yaml("wild", "{hosts: ['*.example.com'], match: {paths: [{exact: /wild}]}, backends: [{service: c}]}"),
        route_yaml(
            "canary",
            "{match: {paths: [{prefix: /api}], headers: [{name: x-canary, exact: 'true'}]}, backends: [{service: f}]}",
        ),
        // Same match as the older "special": Conflicted, not served.
        route_yaml("takeover", "{match: {paths: [{exact: /api/v2/special}]}, backends: [{service: f}]}"),
    ]
    .concat();
    write_atomic(&dir.path().join("2-newer.yaml"), &newer);
    // Wait for the control plane to see the new file, then for Envoy to ACK it.
    plane.wait_objects(14).await;
    plane.wait_synced(None, STARTUP).await;

    let cases: &[Case] = &[
        // longer prefix registered later beats the older shorter one
        ("GET", "x.test", "/api/v2/items", &[], Some("b")),
        ("GET", "x.test", "/api/items", &[], Some("a")),
        // prefixes match whole segments
        ("GET", "x.test", "/apix", &[], None),
        // exact before any prefix; the Conflicted newer copy does not take it over
        ("GET", "x.test", "/api/v2/special", &[], Some("c")),
        ("GET", "x.test", "/api/v2/special/more", &[], Some("b")),
        // the longer path wins whatever methods the shorter one names...
        ("POST", "x.test", "/api/v2/items", &[], Some("b")),
        // ...and on the same path, a Route naming the method wins
        ("POST", "x.test", "/api/items", &[], Some("d")),
        // paths match without regard to case, so /API cannot slip past /api's Route
        ("GET", "x.test", "/API/V2/items", &[], Some("b")),
        // a host makes a Route specific, for that host only
        ("GET", "api.example.com", "/api/v2/items", &[], Some("e")),
        ("GET", "api.example.com:8080", "/anything", &[], Some("e")),
        // wildcard hosts cover subdomains...
        ("GET", "shop.example.com", "/wild", &[], Some("c")),
        // ...but a host's own Routes come first on it (the wildcard Route is Shadowed there)
        ("GET", "api.example.com", "/wild", &[], Some("e")),
        ("GET", "example.com", "/wild", &[], None),
        // header matchers win over the same path without them
        (
            "GET",
            "x.test",
            "/api/items",
            &[("x-canary", "true")],
            Some("f"),
        ),
        // nothing matches
        ("GET", "x.test", "/nothing", &[], None),
        // normalized before routing: dot segments, repeated slashes, %-encoded letters
        ("GET", "x.test", "/x/../api/%76%32//items", &[], Some("b")),
    ];
    for (method, host, path, headers, want) in cases {
        let reply = gw.request(method, host, path, headers).await;
        // `explain` must name the backend Envoy actually used.
        let explained = plane.explain(method, host, path, headers).await;
        let explained_backend = explained["served"]["backends"][0]["service"]
            .as_str()
            .map(|s| s.trim_start_matches("e2e/").to_string());
        assert_eq!(
            explained_backend,
            reply.backend.clone(),
            "{method} {host}{path}: explain says {explained:#} but Envoy answered {} from {:?}",
            reply.status,
            reply.backend
        );
        match want {
            Some(name) => {
                assert_eq!(reply.status, 200, "{method} {host}{path}: {:?}", reply.body);
                assert_eq!(
                    reply.backend.as_deref(),
                    Some(*name),
                    "{method} {host}{path} went to the wrong backend"
                );
            }
            None => assert_eq!(
                reply.status, 404,
                "{method} {host}{path} should not match: {:?}",
                reply.body
            ),
        }
    }
    let objects = plane.objects().await;
    let takeover = objects["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["object"] == "Route e2e/takeover")
        .unwrap();
    assert_eq!(takeover["served"], false);
    let conflicted = takeover["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Conflicted")
        .unwrap();
    assert_eq!(conflicted["status"], "True");
    assert!(
        conflicted["message"]
            .as_str()
            .unwrap()
            .contains("Route e2e/special"),
        "{conflicted}"
    );
    plane.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precedence_over_sotw() {
    precedence_through_envoy(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precedence_over_delta() {
    precedence_through_envoy(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_backends_split_80_20() {
    let services =
        service_yaml("main", echo("main").await) + &service_yaml("canary", echo("canary").await);
    let route = route_yaml(
        "split",
        "{match: {paths: [{prefix: /}]}, backends: [{service: main, weight: 80}, {service: canary, weight: 20}]}",
    );
    let dir = tempfile::tempdir().unwrap();
    write_atomic(&dir.path().join("split.yaml"), &(services + &route));
    let plane = Plane::start(dir.path(), None).await;
    let gw = Gateway::start(plane.xds, "weights", false).await;
    plane.wait_synced(None, STARTUP).await;

    const N: usize = 2000;
    let replies: Vec<Option<String>> = futures::stream::iter(0..N)
        .map(|i| {
            let gw = &gw;
            async move { gw.get("x.test", &format!("/r/{i}")).await.backend }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let main = replies
        .iter()
        .filter(|b| b.as_deref() == Some("main"))
        .count();
    let canary = replies
        .iter()
        .filter(|b| b.as_deref() == Some("canary"))
        .count();
    assert_eq!(main + canary, N, "every request reaches a backend");
    let share = main as f64 * 100.0 / N as f64;
    assert!(
        (75.0..=85.0).contains(&share),
        "main got {share:.1}% of {N}, want 80 ± 5"
    );
    plane.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_generated_forwarded_and_returned() {
    let manifests = service_yaml("echo", echo("echo").await)
        + &route_yaml(
            "r",
            "{match: {paths: [{prefix: /}]}, backends: [{service: echo}]}",
        );
    let s = stack(&manifests, "request-id").await;
    let reply =
        s.gw.request(
            "GET",
            "x.test",
            "/",
            &[
                ("x-request-id", "client-chosen"),
                ("x-portcullis-user", "forged"),
            ],
        )
        .await;
    assert_eq!(reply.status, 200);
    let returned = reply.headers["x-request-id"].to_str().unwrap();
    assert_ne!(
        returned, "client-chosen",
        "a client's request id is not trusted at the edge"
    );
    assert_eq!(
        reply.body["headers"]["x-request-id"], returned,
        "the backend sees the id the client gets back"
    );
    assert!(
        reply.body["headers"].get("x-portcullis-user").is_none(),
        "client-sent identity headers never reach a backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_has_one_scrubbed_json_record_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let manifests = service_yaml("echo", echo("echo").await)
        + &route_yaml(
            "logged",
            "{match: {paths: [{prefix: /}]}, backends: [{service: echo}]}",
        );
    write_atomic(&dir.path().join("all.yaml"), &manifests);
    let options = portcullis_translate::Options {
        listen_address: "127.0.0.1".into(),
        listen_port: 0,
        access_log: Some(log.display().to_string()),
        ..Default::default()
    };
    let plane = Plane::start_with(dir.path(), None, options).await;
    let gw = Gateway::start(plane.xds, "access-log", false).await;
    plane.wait_synced(None, STARTUP).await;
    let reply = gw
        .request(
            "GET",
            "x.test",
            "/orders?api_key=sekrit-query",
            &[
                ("authorization", "Bearer sekrit-token"),
                ("cookie", "session=sekrit-cookie"),
            ],
        )
        .await;
    let id = reply.headers["x-request-id"].to_str().unwrap().to_owned();

    // Envoy flushes its access log asynchronously (about every second).
    let deadline = std::time::Instant::now() + STARTUP;
    let record = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(&id)) {
            assert!(
                !text.contains("sekrit"),
                "a secret reached the access log: {text}"
            );
            break serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no access log record for {id}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(record["request_id"], id.as_str());
    assert_eq!(record["route"], "e2e/logged/0");
    assert_eq!(record["service"], "e2e/echo");
    assert_eq!(record["status"], 200);
    assert_eq!(record["method"], "GET");
    assert_eq!(record["path"], "/orders");
    plane.stop().await;
}

/// Over Delta, removing a Service makes Envoy drop its cluster and unsubscribe its
/// endpoints, which sends nothing back (the stream then holds a snapshot reference
/// again, not a list: `delta::settle`). Adding it back must subscribe it anew and
/// deliver its endpoints, and the Service that stayed serves throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_removed_and_added_back_over_delta_is_served_again() {
    let stays = service_yaml("a", echo("a").await)
        + &route_yaml(
            "a",
            "{match: {paths: [{prefix: /a}]}, backends: [{service: a}]}",
        );
    let goes = service_yaml("b", echo("b").await)
        + &route_yaml(
            "b",
            "{match: {paths: [{prefix: /b}]}, backends: [{service: b}]}",
        );
    let dir = tempfile::tempdir().unwrap();
    write_atomic(&dir.path().join("a.yaml"), &stays);
    write_atomic(&dir.path().join("b.yaml"), &goes);
    let plane = Plane::start(dir.path(), None).await;
    let gw = Gateway::start(plane.xds, "delta-readd", true).await;
    plane.wait_synced(None, STARTUP).await;
    assert_eq!(gw.get("x.test", "/b").await.backend.as_deref(), Some("b"));

    std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
    plane.wait_objects(2).await;
    plane.wait_synced(None, STARTUP).await;
    let gone = gw.get("x.test", "/b").await;
    assert_eq!(
        (gone.status, gone.backend),
        (404, None),
        "b is still routed"
    );
    assert_eq!(gw.get("x.test", "/a").await.backend.as_deref(), Some("a"));

    write_atomic(&dir.path().join("b.yaml"), &goes);
    plane.wait_objects(4).await;
    plane.wait_synced(None, STARTUP).await;
    let back = gw.get("x.test", "/b").await;
    assert_eq!(
        (back.status, back.backend.as_deref()),
        (200, Some("b")),
        "b's endpoints did not come back: {:?}",
        back.body
    );
    assert_eq!(gw.get("x.test", "/a").await.backend.as_deref(), Some("a"));
    plane.stop().await;
}
