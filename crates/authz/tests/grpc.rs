//! The service over its real gRPC server, with the hashed key file store.
mod common;

use common::*;
use portcullis_authz::Digest;

fn keys(dir: &std::path::Path) -> String {
    write(
        dir,
        "keys.yaml",
        &format!(
            "keys:\n- {{id: k1, sha256: {}, user: alice, account: acme, scopes: [read]}}\n",
            Digest::of(b"alice-key").hex()
        ),
    )
}

#[tokio::test]
async fn check_answers_allow_401_and_403_and_serves_health() {
    let dir = tempfile::tempdir().unwrap();
    let mut svc = start(&["--keys-file", &keys(dir.path())]).await;
    let ext = [
        ("portcullis.route", "ns/r"),
        ("portcullis.auth.scopes", "read"),
    ];
    let ok = svc
        .client
        .check(check_request(&[("x-api-key", "alice-key")], &ext))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(http_status(&ok), 200, "{ok:?}");
    let none = svc
        .client
        .check(check_request(&[], &ext))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(http_status(&none), 401);
    let ext_w = [("portcullis.auth.scopes", "write")];
    let forbidden = svc
        .client
        .check(check_request(&[("x-api-key", "alice-key")], &ext_w))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(http_status(&forbidden), 403);

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", svc.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "envoy.service.auth.v3.Authorization".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    assert_eq!(
        metric(
            &svc,
            r#"portcullis_authz_decisions_total{result="allowed",shadow="false"}"#
        )
        .await,
        1.0
    );
}

/// An attacker cycling through random API keys: every one is looked up once and
/// remembered as a "no", but the cache never holds more than `maxEntries`, and the
/// valid key keeps working throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_random_keys_keeps_the_cache_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "authz.yaml",
        &format!(
            "cache: {{maxEntries: 500}}\nkeyStore: {{file: {{path: {}}}}}\n",
            keys(dir.path())
        ),
    );
    let svc = start(&["--config", &config]).await;
    let ext = [("portcullis.auth.scopes", "read")];
    let flood = futures::stream::iter(0..5_000u32).map(|i| {
        let mut client = svc.client.clone();
        async move {
            let key = format!("random-key-{i}");
            let r = client
                .check(check_request(&[("x-api-key", &key)], &ext))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(http_status(&r), 401);
            if i % 100 == 0 {
                let r = client
                    .check(check_request(&[("x-api-key", "alice-key")], &ext))
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(http_status(&r), 200, "the valid key stopped working");
            }
        }
    });
    use futures::StreamExt;
    flood.buffer_unordered(32).collect::<Vec<()>>().await;
    let entries = metric(&svc, "portcullis_authz_cache_entries").await;
    assert!(
        entries > 0.0 && entries <= 500.0,
        "{entries} entries for maxEntries 500"
    );
    let misses = metric(&svc, r#"portcullis_authz_cache_total{outcome="miss"}"#).await;
    assert!(misses >= 5_000.0, "each random key looked up: {misses}");
}
