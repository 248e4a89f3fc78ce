//! Editing the watched directory: good edits reach Envoy quickly, bad ones are reported
//! and change nothing that is serving.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_reaches_envoy_within_2s() {
    let services = service_yaml("one", echo("one").await) + &service_yaml("two", echo("two").await);
    let dir = tempfile::tempdir().unwrap();
    write_atomic(&dir.path().join("services.yaml"), &services);
    let route = |svc: &str| {
        route_yaml(
            "r",
            &format!("{{match: {{paths: [{{exact: /x}}]}}, backends: [{{service: {svc}}}]}}"),
        )
    };
    write_atomic(&dir.path().join("route.yaml"), &route("one"));
    let plane = Plane::start(dir.path(), None).await;
    let gw = Gateway::start(plane.xds, "edit", false).await;
    plane.wait_synced(None, STARTUP).await;
    assert_eq!(gw.get("x.test", "/x").await.backend.as_deref(), Some("one"));

    let edited = Instant::now();
    write_atomic(&dir.path().join("route.yaml"), &route("two"));
    // Wait (bounded) for the change to show through Envoy; the bound is the assertion.
    let bound = Duration::from_secs(2);
    loop {
        let reply = gw.get("x.test", "/x").await;
        assert_eq!(
            reply.status, 200,
            "no request may fail during an edit: {:?}",
            reply.body
        );
        if reply.backend.as_deref() == Some("two") {
            break;
        }
        assert!(
            edited.elapsed() < bound,
            "edit not served after {:?}",
            edited.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    plane.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manifests_are_reported_and_nothing_serving_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let services = service_yaml("one", echo("one").await) + &service_yaml("two", echo("two").await);
    write_atomic(&dir.path().join("services.yaml"), &services);
    let good = route_yaml(
        "r1",
        "{match: {paths: [{prefix: /one}]}, backends: [{service: one}]}",
    ) + &route_yaml(
        "r2",
        "{match: {paths: [{prefix: /two}]}, backends: [{service: two}]}",
    );
    write_atomic(&dir.path().join("routes.yaml"), &good);
    let plane = Plane::start(dir.path(), None).await;
    let gw = Arc::new(Gateway::start(plane.xds, "bad-input", false).await);
    plane.wait_synced(None, STARTUP).await;

    // Traffic on both routes for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = tokio::spawn({
        let (gw, stop, sent, failed) = (gw.clone(), stop.clone(), sent.clone(), failed.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                for (path, want) in [("/one/a", "one"), ("/two/b", "two")] {
                    let reply = gw.get("x.test", path).await;
                    sent.fetch_add(1, Ordering::Relaxed);
                    if reply.status != 200 || reply.backend.as_deref() != Some(want) {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    });

    // 1. r1 edited to an invalid timeout and r2 to point at a missing Service,
    // 2. a file that is not YAML at all, 3. a new Route with an unknown field.
    let broken = route_yaml(
        "r1",
        "{match: {paths: [{prefix: /one}]}, backends: [{service: one}], timeout: 90s}",
    ) + &route_yaml(
        "r2",
        "{match: {paths: [{prefix: /two}]}, backends: [{service: nope}]}",
    );
    write_atomic(&dir.path().join("routes.yaml"), &broken);
    write_atomic(
        &dir.path().join("garbage.yaml"),
        "kind: Route\nspec: [unclosed\n",
    );
    write_atomic(
        &dir.path().join("typo.yaml"),
        &route_yaml(
            "r3",
            "{match: {paths: [{prefix: /three}]}, backend: [{service: one}]}",
        ),
    );

    let deadline = Instant::now() + STARTUP;
    let objects = loop {
        let objects = plane.objects().await;
        if objects["file_errors"].as_array().map_or(0, Vec::len) >= 2 {
            break objects;
        }
        assert!(
            Instant::now() < deadline,
            "errors not reported: {objects:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Keep the traffic going a little past the reload.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    let text = objects.to_string();
    for expected in [
        "garbage.yaml: document 0: not valid YAML",
        "typo.yaml: document 0 (Route r3): spec.backend: unknown field `backend`, expected one of",
        "spec.timeout: 90s is over the 60s maximum; set it to 60s or less",
        "spec.backends[0].service: Service e2e/nope does not exist",
        "the last accepted version of this object is still being served",
    ] {
        assert!(
            text.contains(expected),
            "missing {expected:?} in {objects:#}"
        );
    }
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(sent > 50, "only {sent} requests were sent");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed while bad manifests were applied"
    );
    plane.stop().await;
}
