//! The whole process as `portcullis ratelimit` runs it: flags, standalone files (one
//! file, envoyproxy's runtime directory with symlink swaps, Limitador's limits),
//! gRPC, health, /metrics, shutdown.
mod common;

use std::collections::HashMap;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser};
use common::*;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor::Entry,
};
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use portcullis_ratelimit::{Args, EnvoyEnv, Listeners};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

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

/// The service on loopback ports; stops on drop of the sender.
struct Service {
    client: RateLimitServiceClient<Channel>,
    grpc_addr: std::net::SocketAddr,
    http: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Service {
    async fn start(args: Args) -> Service {
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(portcullis_ratelimit::run(
            args,
            Listeners::new(grpc, http),
            async {
                let _ = stopped.await;
            },
        ));
        let client = RateLimitServiceClient::connect(format!("http://{grpc_addr}"))
            .await
            .unwrap();
        Service {
            client,
            grpc_addr,
            http: http_addr,
            stop: Some(stop),
            server,
        }
    }

    async fn call(&mut self, domain: &str, entries: &[(&str, &str)]) -> bool {
        is_ok(&call(&mut self.client, request(domain, entries)).await)
    }

    async fn admitted(&mut self, domain: &str, entries: &[(&str, &str)], n: usize) -> usize {
        let mut ok = 0;
        for _ in 0..n {
            ok += usize::from(self.call(domain, entries).await);
        }
        ok
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.server)
            .await
            .expect("stops")
            .unwrap()
            .unwrap();
    }
}

fn request(domain: &str, entries: &[(&str, &str)]) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.into(),
        descriptors: vec![RateLimitDescriptor {
            entries: entries
                .iter()
                .map(|(k, v)| Entry {
                    key: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            ..Default::default()
        }],
        hits_addend: 0,
    }
}

/// The service on a standalone file: `per_minute` requests per remote address in
/// domain `edge`. The directory holds the file while the service runs.
async fn per_address(per_minute: u32) -> (tempfile::TempDir, Service) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(
        &file,
        format!("domain: edge\ndescriptors:\n  - key: remote_address\n    rate_limit: {{unit: minute, requests_per_unit: {per_minute}}}\n"),
    )
    .unwrap();
    let args =
        Args::try_parse_from(["ratelimit", "--config-file", file.to_str().unwrap()]).unwrap();
    (dir, Service::start(args).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_standalone_file() {
    let (_dir, mut svc) = per_address(2).await;
    assert_eq!(
        svc.admitted("edge", &[("remote_address", "10.0.0.1")], 3)
            .await,
        2
    );

    let channel = Channel::from_shared(format!("http://{}", svc.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = tonic_health::pb::health_client::HealthClient::new(channel)
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

    assert!(http_get(svc.http, "/healthz").await.ends_with("ok"));
    assert!(http_get(svc.http, "/healthcheck").await.ends_with("OK"));
    let metrics = http_get(svc.http, "/metrics").await;
    assert!(metrics.contains("portcullis_ratelimit_decisions_total{limit=\"edge.remote_address\",outcome=\"over_limit\"} 1"), "{metrics}");
    assert!(
        metrics.contains("portcullis_ratelimit_config_version_info{source=\"file\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("ratelimit_service_rate_limit_over_limit{domain=\"edge\",key1=\"remote_address\",key2=\"\"} 1"),
        "{metrics}"
    );
    svc.stop().await;
}

/// Writes version `v` of the runtime tree under `base` and points `current` at it with
/// an atomic rename, as envoyproxy deployments swap RUNTIME_ROOT.
fn publish(base: &Path, v: &str, files: &[(&str, &str)]) {
    let app = base.join(v).join("ratelimit/config");
    std::fs::create_dir_all(&app).unwrap();
    for (name, text) in files {
        std::fs::write(app.join(name), text).unwrap();
    }
    let tmp = base.join(format!("current.{v}"));
    symlink(base.join(v), &tmp).unwrap();
    std::fs::rename(&tmp, base.join("current")).unwrap();
}

const EDGE: &str =
    "domain: edge\ndescriptors:\n  - key: ip\n    rate_limit: {unit: hour, requests_per_unit: 3}\n";
const API_2: &str = "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 2}\n";
const API_5: &str = "domain: api\ndescriptors:\n  - key: user\n    rate_limit: {unit: hour, requests_per_unit: 5}\n";

/// envoyproxy's environment, a runtime directory, and a symlink swap: the new limits
/// apply within 2 s, and counters of limits the swap left alone are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_directory_symlink_swap_applies_within_2s_and_keeps_counters() {
    let base = tempfile::tempdir().unwrap();
    publish(
        base.path(),
        "v1",
        &[("edge.yaml", EDGE), ("api.yaml", API_2)],
    );
    let env: HashMap<&str, String> = [
        (
            "RUNTIME_ROOT",
            base.path().join("current").display().to_string(),
        ),
        ("RUNTIME_SUBDIRECTORY", "ratelimit".into()),
        ("RUNTIME_WATCH_ROOT", "true".into()),
        ("USE_STATSD", "false".into()),
    ]
    .into();
    let mut args = Args::try_parse_from(["ratelimit"]).unwrap();
    args.envoy = EnvoyEnv::from_lookup(|k| env.get(k).cloned()).unwrap();
    let mut svc = Service::start(args).await;

    assert_eq!(svc.admitted("edge", &[("ip", "1.2.3.4")], 2).await, 2);
    assert_eq!(svc.admitted("api", &[("user", "u")], 3).await, 2);

    // v2 raises the api limit and leaves edge.yaml as it was.
    let swapped = Instant::now();
    publish(
        base.path(),
        "v2",
        &[("edge.yaml", EDGE), ("api.yaml", API_5)],
    );
    for n in 0.. {
        // A new user per probe: v1 admits 2 of 6, v2 5.
        let user = format!("probe-{n}");
        if svc.admitted("api", &[("user", &user)], 6).await == 5 {
            break;
        }
        assert!(
            swapped.elapsed() < Duration::from_secs(2),
            "the swap did not apply within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("symlink swap applied after {:?}", swapped.elapsed());
    // Counters kept: edge had 2 of 3, api's "u" 2 of the raised 5.
    assert_eq!(svc.admitted("edge", &[("ip", "1.2.3.4")], 3).await, 1);
    assert_eq!(svc.admitted("api", &[("user", "u")], 5).await, 3);

    // A broken v3 is refused and v2 keeps serving.
    publish(
        base.path(),
        "v3",
        &[(
            "edge.yaml",
            "domain: edge\ndescriptors:\n  - key: ip\n    rate_limit: {unit: fortnight}\n",
        )],
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !svc.call("edge", &[("ip", "1.2.3.4")]).await,
        "still v2's edge limit, still over"
    );
    let metrics = http_get(svc.http, "/metrics").await;
    assert!(
        metrics.contains("ratelimit_service_config_load_error 1"),
        "{metrics}"
    );
    svc.stop().await;
}

/// Limitador's limits file, served as is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_limitador_limits_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("limits.yaml");
    std::fs::write(
        &file,
        "- namespace: shop\n  max_value: 2\n  seconds: 60\n  conditions: [\"descriptors[0]['req.method'] == 'POST'\"]\n  variables: [\"descriptors[0]['user_id']\"]\n",
    )
    .unwrap();
    let args =
        Args::try_parse_from(["ratelimit", "--config-file", file.to_str().unwrap()]).unwrap();
    let mut svc = Service::start(args).await;
    let post = |u: &'static str| [("req.method", "POST"), ("user_id", u)];
    assert_eq!(svc.admitted("shop", &post("a"), 3).await, 2);
    assert_eq!(svc.admitted("shop", &post("b"), 1).await, 1);
    assert_eq!(
        svc.admitted("shop", &[("req.method", "GET"), ("user_id", "a")], 5)
            .await,
        5
    );
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_stops_the_start_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(
        &file,
        "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second}\n",
    )
    .unwrap();
    let args =
        Args::try_parse_from(["ratelimit", "--config-file", file.to_str().unwrap()]).unwrap();
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = portcullis_ratelimit::run(args, Listeners::new(grpc, http), std::future::pending())
        .await
        .unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("config.yaml") && e.contains("rate_limit.requests_per_unit"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_face_grows_past_its_small_buffers_and_refuses_what_tonic_refuses() {
    use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
    let (_dir, mut svc) = per_address(1).await;

    // 60 descriptors: a request and an answer of a few KiB, well past the 512-byte
    // buffers each call starts with. Each is decided on its own.
    let mut req = request("edge", &[("remote_address", "10.0.0.0")]);
    req.descriptors = (0..60)
        .map(|i| RateLimitDescriptor {
            entries: vec![Entry {
                key: "remote_address".into(),
                value: format!("10.0.{i}.{}", "1".repeat(40)),
            }],
            ..Default::default()
        })
        .collect();
    assert!(prost::Message::encoded_len(&req) > 2048);
    let first = call(&mut svc.client, req.clone()).await;
    assert_eq!(first.statuses.len(), 60);
    assert!(is_ok(&first), "{first:?}");
    let second = call(&mut svc.client, req).await;
    assert_eq!(second.statuses.len(), 60);
    assert!(!is_ok(&second), "every address is over its limit of 1");

    // An unknown method and a request above tonic's 4 MiB decoding limit get the
    // statuses the generated server gives.
    let channel = Channel::from_shared(format!("http://{}", svc.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    let raw = |path: &'static str, req: RateLimitRequest| {
        let mut grpc = grpc.clone();
        async move {
            grpc.ready().await.unwrap();
            grpc.unary::<_, RateLimitResponse, _>(
                tonic::Request::new(req),
                tonic::codegen::http::uri::PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::default(),
            )
            .await
        }
    };
    let nope = raw(
        "/envoy.service.ratelimit.v3.RateLimitService/Nope",
        request("edge", &[("remote_address", "10.9.9.9")]),
    )
    .await
    .unwrap_err();
    assert_eq!(nope.code(), tonic::Code::Unimplemented, "{nope:?}");
    let huge = request("edge", &[("remote_address", &"9".repeat(5 << 20))]);
    let refused = raw(
        "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
        huge,
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused:?}");
    grpc.ready().await.unwrap();
    assert!(svc.call("edge", &[("remote_address", "10.8.8.8")]).await);
    svc.stop().await;
}

/// `body` posted to ShouldRateLimit over a raw HTTP/2 connection, with `extra`
/// headers: the gRPC status the service answers (from headers or trailers).
async fn raw_grpc_status(
    addr: std::net::SocketAddr,
    extra: &[(&str, &str)],
    body: Vec<u8>,
) -> String {
    use http_body_util::BodyExt;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::post(format!(
        "http://{addr}/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let req = req
        .body(http_body_util::Full::new(prost::bytes::Bytes::from(body)))
        .unwrap();
    let response = send.send_request(req).await.unwrap();
    if let Some(s) = response.headers().get("grpc-status") {
        return s.to_str().unwrap().to_owned();
    }
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    trailers
        .get("grpc-status")
        .map(|s| s.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_face_refuses_compressed_and_truncated_calls_and_keeps_deciding() {
    let (_dir, mut svc) = per_address(5).await;
    let frame = |flag: u8, declared: u32, payload: &[u8]| {
        let mut f = vec![flag];
        f.extend_from_slice(&declared.to_be_bytes());
        f.extend_from_slice(payload);
        f
    };
    let valid = prost::Message::encode_to_vec(&request("edge", &[("remote_address", "10.1.1.1")]));
    // The control: the same raw path decides a well-formed call.
    let ok = raw_grpc_status(svc.grpc_addr, &[], frame(0, valid.len() as u32, &valid)).await;
    assert_eq!(ok, "0");
    // A compression the service does not accept: Unimplemented, as tonic answers.
    let gzip = raw_grpc_status(
        svc.grpc_addr,
        &[("grpc-encoding", "gzip")],
        frame(1, 4, b"junk"),
    )
    .await;
    assert_eq!(gzip, "12");
    // The compressed flag without a grpc-encoding, and a frame cut short: not OK.
    for body in [
        frame(1, 4, b"junk"),
        frame(0, 100, &valid[..valid.len().min(10)]),
    ] {
        let status = raw_grpc_status(svc.grpc_addr, &[], body).await;
        assert!(!status.is_empty() && status != "0", "{status}");
    }
    // Garbage that is not a RateLimitRequest.
    let garbage = raw_grpc_status(svc.grpc_addr, &[], frame(0, 3, &[0xff, 0xff, 0xff])).await;
    assert!(!garbage.is_empty() && garbage != "0", "{garbage}");
    assert!(svc.call("edge", &[("remote_address", "10.2.2.2")]).await);
    svc.stop().await;
}
