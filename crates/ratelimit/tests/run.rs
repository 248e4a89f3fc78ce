//! The whole process as `portcullis ratelimit` runs it: flags, a standalone
//! envoyproxy-format file, gRPC, health, /metrics, shutdown.
mod common;

use std::time::Duration;

use clap::{CommandFactory, Parser};
use common::*;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor::Entry,
};
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use portcullis_ratelimit::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn flags_are_consistent() {
    Args::command().debug_assert();
    let a = Args::try_parse_from(["ratelimit"]).unwrap();
    assert_eq!(a.store_timeout, Duration::from_millis(20));
    assert!(
        Args::try_parse_from(["ratelimit", "--xds-addr", "http://x", "--config-file", "f"])
            .is_err()
    );
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_standalone_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(
        &file,
        "domain: edge\ndescriptors:\n  - key: remote_address\n    rate_limit: {unit: minute, requests_per_unit: 2}\n",
    )
    .unwrap();
    let args =
        Args::try_parse_from(["ratelimit", "--config-file", file.to_str().unwrap()]).unwrap();
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(portcullis_ratelimit::run(args, grpc, http, async {
        let _ = stopped.await;
    }));

    let mut client = RateLimitServiceClient::connect(format!("http://{grpc_addr}"))
        .await
        .unwrap();
    let req = RateLimitRequest {
        domain: "edge".into(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![Entry {
                key: "remote_address".into(),
                value: "10.0.0.1".into(),
            }],
            ..Default::default()
        }],
        hits_addend: 0,
    };
    let results: Vec<bool> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(is_ok(&call(&mut client, req.clone()).await));
        }
        v
    };
    assert_eq!(results, [true, true, false]);

    let mut health = tonic_health::pb::health_client::HealthClient::new(
        tonic::transport::Channel::from_shared(format!("http://{grpc_addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "envoy.service.ratelimit.v3.RateLimitService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    assert!(http_get(http_addr, "/healthz").await.ends_with("ok"));
    let metrics = http_get(http_addr, "/metrics").await;
    assert!(metrics.contains("portcullis_ratelimit_decisions_total{limit=\"edge.remote_address\",outcome=\"over_limit\"} 1"), "{metrics}");
    assert!(
        metrics.contains("portcullis_ratelimit_config_version_info{source=\"file\""),
        "{metrics}"
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("stops")
        .unwrap()
        .unwrap();
}
