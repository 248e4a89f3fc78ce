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

/// The Check server starts each call with small buffers: a Check of several KiB (an
/// Envoy forwarding many headers) is decided whole, and what the generated server
/// refuses (another method, a message over 4 MiB) is refused with its statuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_check_is_decided_whole_and_other_methods_are_unimplemented() {
    use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};
    let dir = tempfile::tempdir().unwrap();
    let mut svc = start(&["--keys-file", &keys(dir.path())]).await;
    let filler: Vec<(String, String)> = (0..60)
        .map(|i| (format!("x-filler-{i}"), "v".repeat(100)))
        .collect();
    let mut headers: Vec<(&str, &str)> = filler
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    headers.push(("x-api-key", "alice-key"));
    let ext = [("portcullis.auth.scopes", "read")];
    let big = check_request(&headers, &ext);
    assert!(prost::Message::encoded_len(&big) > 6 * 1024);
    let ok = svc.client.check(big).await.unwrap().into_inner();
    assert_eq!(http_status(&ok), 200, "{ok:?}");
    headers.pop();
    headers.push(("x-api-key", "mallory-key"));
    let denied = svc
        .client
        .check(check_request(&headers, &ext))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(http_status(&denied), 401);

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", svc.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let grpc = tonic::client::Grpc::new(channel);
    let raw = |path: &'static str, req: CheckRequest| {
        let mut grpc = grpc.clone();
        async move {
            grpc.ready().await.unwrap();
            grpc.unary::<_, CheckResponse, _>(
                tonic::Request::new(req),
                tonic::codegen::http::uri::PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::default(),
            )
            .await
        }
    };
    for path in [
        "/envoy.service.auth.v3.Authorization/Nope",
        "/envoy.service.auth.v2.Authorization/Check",
        "/envoy.service.auth.v3.Authorization/Check/",
    ] {
        let e = raw(path, check_request(&[("x-api-key", "alice-key")], &ext))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unimplemented, "{path}: {e:?}");
    }
    let huge = "h".repeat(5 << 20);
    let e = raw(
        "/envoy.service.auth.v3.Authorization/Check",
        check_request(&[("x-huge", &huge)], &ext),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), tonic::Code::OutOfRange, "{e:?}");
    let again = svc
        .client
        .check(check_request(&[("x-api-key", "alice-key")], &ext))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(http_status(&again), 200);
}
