use std::net::SocketAddr;
use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;

use super::*;
use crate::h2load::grpc_frame;

/// tonic's health service on a free port; `max_streams` as it announces in SETTINGS.
async fn health_server(max_streams: Option<u32>) -> SocketAddr {
    let (_, service) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .max_concurrent_streams(max_streams)
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

fn load(addr: SocketAddr, service: &str, rate: u32) -> Load {
    Load {
        addr,
        path: HEALTH_PATH,
        bodies: vec![grpc_frame(&HealthCheckRequest {
            service: service.into(),
        })],
        rate,
        connections: 2,
        duration: Duration::from_secs(1),
        accept: serving,
    }
}

#[tokio::test]
async fn sends_the_rate_asked_and_reads_every_answer() {
    let addr = health_server(None).await;
    let out = open_loop(load(addr, "", 2_000)).await.unwrap();
    assert_eq!(out.sampled.calls, 2_000, "one call each 500 µs for 1 s");
    assert_eq!(out.sampled.failed, 0);
    assert!(
        (1_900.0..=2_000.0).contains(&out.sent_per_sec),
        "{}",
        out.sent_per_sec
    );
    assert!(out.sampled.p50 <= out.sampled.p99);
    assert!(
        out.sampled.p99 < Duration::from_secs(1),
        "{:?}",
        out.sampled.p99
    );
}

/// tonic-health answers an unknown service with a trailers-only NOT_FOUND: no message.
#[tokio::test]
async fn an_answer_without_an_accepted_message_is_a_failure() {
    let addr = health_server(None).await;
    let out = open_loop(load(addr, "no-such-service", 500)).await.unwrap();
    assert_eq!(out.sampled.calls, 500);
    assert_eq!(out.sampled.failed, 500);
}

/// With one stream allowed, the four calls each tick makes due wait their turn
/// instead of being refused (RST_STREAM): none fails.
#[tokio::test]
async fn keeps_to_the_servers_stream_limit() {
    let addr = health_server(Some(1)).await;
    let out = open_loop(Load {
        connections: 1,
        ..load(addr, "", 4_000)
    })
    .await
    .unwrap();
    assert_eq!((out.sampled.calls, out.sampled.failed), (4_000, 0));
}

/// A server that is not there is an error, not an empty result.
#[tokio::test]
async fn a_refused_connection_is_an_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    assert!(open_loop(load(addr, "", 100)).await.is_err());
}

/// Each round's pair comes back as (a, b), whichever of them went first.
#[tokio::test]
async fn alternating_rounds_keep_each_sides_runs_apart() {
    let addr = health_server(None).await;
    let short = |service: &str| Load {
        duration: Duration::from_millis(200),
        ..load(addr, service, 500)
    };
    let rounds = alternating(2, || short(""), || short("no-such-service"))
        .await
        .unwrap();
    assert_eq!(rounds.len(), 2);
    for (a, b) in &rounds {
        assert_eq!((a.sampled.calls, a.sampled.failed), (100, 0));
        assert_eq!((b.sampled.calls, b.sampled.failed), (100, 100));
    }
}

/// A server that answers nothing and, once 50 calls have arrived, sends GOAWAY: the
/// connection's open calls fail unanswered, and no more are sent on it.
#[tokio::test]
async fn a_goaway_mid_run_fails_the_open_calls_and_stops_the_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut out = Vec::new();
        crate::h2_wire::frame(&mut out, 4, 0, 0, &[]);
        sock.write_all(&out).await.unwrap();
        let mut buf = Vec::new();
        let mut headers = 0;
        while headers < 50 {
            if sock.read_buf(&mut buf).await.unwrap() == 0 {
                return;
            }
            // After the preface, frames: count HEADERS.
            let mut at = if buf.starts_with(crate::h2_wire::PREFACE) {
                crate::h2_wire::PREFACE.len()
            } else {
                0
            };
            while let Some((f, used)) = crate::h2_wire::next_frame(&buf[at..]) {
                headers += usize::from(f.kind == 1);
                at += used;
            }
            buf.drain(..at);
        }
        out.clear();
        crate::h2_wire::frame(&mut out, 7, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 0xb]);
        sock.write_all(&out).await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    let out = open_loop(Load {
        connections: 1,
        ..load(addr, "", 1_000)
    })
    .await
    .unwrap();
    assert!(out.took.is_empty(), "{} calls answered", out.took.len());
    assert_eq!(out.sampled.failed, out.sampled.calls);
    assert!(out.sampled.calls >= 50, "{} calls", out.sampled.calls);
    // A second of calls was due; sending stopped at the GOAWAY.
    assert!(out.sent_per_sec < 1_000.0, "{} sent/s", out.sent_per_sec);
}

/// A peer that accepts and then says nothing (after 10 s) or hangs up is an error
/// that says so, before any call is sent.
#[tokio::test]
async fn a_server_that_never_sends_its_settings_is_an_error() {
    use tokio::io::AsyncReadExt;
    for hang_up in [false, true] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            if hang_up {
                return;
            }
            let mut buf = Vec::new();
            while sock.read_buf(&mut buf).await.is_ok_and(|n| n > 0) {}
        });
        let e = open_loop(load(addr, "", 100))
            .await
            .err()
            .expect("an error");
        let want = if hang_up {
            "closed before its SETTINGS"
        } else {
            "no SETTINGS from the server in 10 s"
        };
        assert!(format!("{e:#}").contains(want), "{e:#}");
    }
}
