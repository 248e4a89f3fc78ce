use std::sync::Arc;

use http_body_util::BodyExt;
use kube::core::DeserializeGuard;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::{
    fixtures::{mk_route, mk_service},
    index::SharedIndex,
    metrics::KubeMetrics,
    webhook::server,
};

fn live_index() -> Arc<SharedIndex> {
    let index = SharedIndex::new();
    index.apply(DeserializeGuard(Ok(mk_service("team", "echo"))));
    index.apply(DeserializeGuard(Ok(mk_route(
        "team",
        "items",
        0,
        "/v1/items",
        "echo",
    ))));
    index
}

fn review_of(operation: &str, object: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "portcullis.dev", "version": "v1alpha1", "kind": object["kind"]},
            "resource": {"group": "portcullis.dev", "version": "v1alpha1", "resource": "routes"},
            "name": object["metadata"]["name"], "namespace": "team",
            "operation": operation,
            "userInfo": {"username": "dev"},
            "object": object,
        },
    })
}

fn route(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "Route",
        "metadata": {"name": name, "namespace": "team", "creationTimestamp": "2026-11-22T12:00:00Z", "generation": 1},
        "spec": spec,
    })
}

fn decide_json(index: &Index, review: Value) -> Value {
    let review = serde_json::from_value(review).unwrap();
    serde_json::to_value(super::review(index, review)).unwrap()["response"].clone()
}

#[test]
fn a_route_conflicting_with_an_older_one_is_denied_naming_it() {
    let index = live_index();
    let r = decide_json(
        &index.read(),
        review_of(
            "CREATE",
            route(
                "items-v2",
                json!({"match": {"paths": [{"exact": "/v1/items"}]}, "backends": [{"service": "echo"}]}),
            ),
        ),
    );
    assert_eq!(r["allowed"], false);
    assert_eq!(r["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(msg.starts_with("Route team/items-v2: spec.match: host * method * exact /v1/items is already served by the older Route team/items"), "{msg}");
}

#[test]
fn invalid_fields_and_values_are_denied_with_the_validate_message() {
    let index = live_index();
    let r = decide_json(
        &index.read(),
        review_of(
            "CREATE",
            route(
                "slow",
                json!({"match": {"paths": [{"exact": "/slow"}]}, "backends": [{"service": "echo"}], "timeout": "90s"}),
            ),
        ),
    );
    assert_eq!(r["allowed"], false);
    assert_eq!(
        r["status"]["message"],
        "Route team/slow: spec.timeout: 90s is over the 60s maximum; set it to 60s or less (long-running work belongs behind an async API)"
    );
    let r = decide_json(
        &index.read(),
        review_of(
            "CREATE",
            route(
                "typo",
                json!({"match": {"paths": [{"exact": "/t"}]}, "backend": [{"service": "echo"}]}),
            ),
        ),
    );
    assert_eq!(r["allowed"], false);
    assert!(
        r["status"]["message"].as_str().unwrap().contains("backend"),
        "{r}"
    );
}

#[test]
fn valid_objects_pass_and_missing_services_only_warn() {
    let index = live_index();
    let r = decide_json(
        &index.read(),
        review_of(
            "CREATE",
            route(
                "orders",
                json!({"match": {"paths": [{"exact": "/v1/orders"}]}, "backends": [{"service": "orders"}]}),
            ),
        ),
    );
    assert_eq!(r["allowed"], true, "{r}");
    assert!(
        r["warnings"][0]
            .as_str()
            .unwrap()
            .contains("Service team/orders does not exist"),
        "{r}"
    );
    // Updating the owner itself is no conflict with itself.
    let r = decide_json(
        &index.read(),
        review_of(
            "UPDATE",
            route(
                "items",
                json!({"match": {"paths": [{"exact": "/v1/items"}]}, "backends": [{"service": "echo"}], "timeout": "5s"}),
            ),
        ),
    );
    assert_eq!(r["allowed"], true, "{r}");
    let r = decide_json(
        &index.read(),
        review_of("DELETE", route("items", json!({}))),
    );
    assert_eq!(r["allowed"], true, "{r}");
}

#[tokio::test]
async fn the_http_handler_answers_an_admission_review() {
    let router = server::router(live_index(), KubeMetrics::unregistered());
    let body = review_of(
        "CREATE",
        route(
            "items-v2",
            json!({"match": {"paths": [{"exact": "/v1/items"}]}, "backends": [{"service": "echo"}]}),
        ),
    );
    let response = router
        .oneshot(
            http::Request::post(server::VALIDATE_PATH)
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let review: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    assert_eq!(review["response"]["allowed"], false);
    assert!(
        review["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("already served by the older Route team/items")
    );
}

#[test]
fn a_route_that_would_hide_an_authenticated_path_behind_a_public_one_is_denied() {
    let index = live_index();
    index.apply(DeserializeGuard(Ok({
        let mut admin = mk_route("team", "admin", 0, "/admin", "echo");
        admin.spec.auth = Some(portcullis_api::policy::Auth::default());
        admin
    })));
    // A host catch-all would take /admin on api.example.com without auth.
    let r = decide_json(
        &index.read(),
        review_of(
            "CREATE",
            route(
                "site",
                json!({"hosts": ["api.example.com"], "match": {"paths": [{"prefix": "/"}]}, "backends": [{"service": "echo"}]}),
            ),
        ),
    );
    assert_eq!(r["allowed"], false, "{r}");
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("Route team/admin: spec.match.paths[0].exact: exact /admin never matches on api.example.com")
            && msg.contains("(AuthBypassed)"),
        "{msg}"
    );
    // The same catch-all with auth is allowed, with the shadowing as a warning on the
    // hidden Route (not on this one).
    let r = decide_json(
        &index.read(),
        review_of(
            "CREATE",
            route(
                "site",
                json!({"hosts": ["api.example.com"], "match": {"paths": [{"prefix": "/"}]}, "backends": [{"service": "echo"}], "auth": {"required": true}}),
            ),
        ),
    );
    assert_eq!(r["allowed"], true, "{r}");
}

async fn post_review(router: &axum::Router, body: String) -> Value {
    let response = router
        .clone()
        .oneshot(
            http::Request::post(server::VALIDATE_PATH)
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn reviews_are_counted_by_verdict_with_labels_a_caller_cannot_invent() {
    let metrics = KubeMetrics::unregistered();
    let router = server::router(live_index(), metrics.clone());
    let count = |kind: &str, op: &str, verdict: &str| {
        metrics
            .webhook_reviews
            .with_label_values(&[kind, op, verdict])
            .get()
    };
    let conflicting = route(
        "items-v2",
        json!({"match": {"paths": [{"exact": "/v1/items"}]}, "backends": [{"service": "echo"}]}),
    );
    let r = post_review(&router, review_of("CREATE", conflicting).to_string()).await;
    assert_eq!(r["response"]["allowed"], false);
    let unresolved = route(
        "orders",
        json!({"match": {"paths": [{"exact": "/v1/orders"}]}, "backends": [{"service": "orders"}]}),
    );
    let r = post_review(&router, review_of("UPDATE", unresolved).to_string()).await;
    assert_eq!(r["response"]["allowed"], true);
    post_review(
        &router,
        review_of("DELETE", route("items", json!({}))).to_string(),
    )
    .await;
    // Anyone who reaches the port can send any kind: it must not become a new series.
    let mut odd = review_of("CREATE", route("odd", json!({})));
    odd["request"]["kind"]["kind"] = json!("x".repeat(10_000));
    post_review(&router, odd.to_string()).await;
    // A review without a request cannot be answered for any object.
    let r = post_review(
        &router,
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).to_string(),
    )
    .await;
    assert_eq!(r["response"]["allowed"], false);
    assert_eq!(
        [
            count("Route", "CREATE", "denied"),
            count("Route", "UPDATE", "warned"),
            count("Route", "DELETE", "allowed"),
            count("other", "CREATE", "denied"),
            count("other", "other", "invalid"),
        ],
        [1, 1, 1, 1, 1]
    );
    assert_eq!(metrics.webhook_review_seconds.get_sample_count(), 5);
    let series: usize = prometheus::core::Collector::collect(&metrics.webhook_reviews)
        .iter()
        .map(|f| f.get_metric().len())
        .sum();
    assert_eq!(series, 5);
}

#[test]
fn a_host_naming_another_namespaces_secret_or_files_is_denied() {
    let index = live_index();
    let host = |tls: Value| {
        json!({
            "apiVersion": "portcullis.dev/v1alpha1", "kind": "Host",
            "metadata": {"name": "api", "namespace": "team", "generation": 1},
            "spec": {"hostname": "api.example.com", "tls": tls},
        })
    };
    for (tls, field) in [
        (
            json!({"secretName": "other/api-tls"}),
            "spec.tls.secretName",
        ),
        (
            json!({"certificateFile": "/etc/ssl/a.crt", "keyFile": "/etc/ssl/a.key"}),
            "spec.tls",
        ),
    ] {
        let r = decide_json(&index.read(), review_of("CREATE", host(tls)));
        assert_eq!(r["allowed"], false, "{r}");
        let message = r["status"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{message}");
    }
    // Its own namespace's Secret, not there yet: allowed (cert-manager creates it later).
    let r = decide_json(
        &index.read(),
        review_of("CREATE", host(json!({"secretName": "api-tls"}))),
    );
    assert_eq!(r["allowed"], true, "{r}");
}
