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
