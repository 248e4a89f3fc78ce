//! tonic's client (hyper's HTTP/2) against `portcullis_http2`: large messages both
//! ways through the flow-control windows, many streams at once, a refused method, and
//! a graceful shutdown.
mod common;

use std::time::Duration;

use common::{Server, channel, echo};
use futures::StreamExt;
use portcullis_http2::Limits;

#[tokio::test]
async fn large_messages_cross_both_windows_intact() {
    let server = Server::start(Limits::default()).await;
    // 3 MiB up (three times the stream window), 12 MiB down (the client's window is
    // hyper's default, so the server waits on its WINDOW_UPDATEs).
    let mut up: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
    up[0] = 4;
    let expect = up.repeat(4);
    let mut replies = echo(
        channel(server.addr).await,
        futures::stream::iter([up.clone(), up]),
    )
    .await
    .unwrap();
    for _ in 0..2 {
        let got = replies.next().await.unwrap().unwrap();
        assert_eq!(got.len(), expect.len());
        assert!(got == expect, "the echoed bytes differ");
    }
}

#[tokio::test]
async fn many_streams_on_one_connection_each_get_their_own_answers() {
    let server = Server::start(Limits::default()).await;
    let ch = channel(server.addr).await;
    let calls = (1..=24u8).map(|i| {
        let ch = ch.clone();
        async move {
            let msg = vec![i; 1000 * usize::from(i)];
            let mut r = echo(ch, futures::stream::iter([msg.clone()]))
                .await
                .unwrap();
            let got = r.next().await.unwrap().unwrap();
            assert_eq!(got, msg.repeat(usize::from(i)), "stream {i}");
            assert!(r.next().await.is_none(), "stream {i} ends after its answer");
        }
    });
    futures::future::join_all(calls).await;
}

#[tokio::test]
async fn an_unknown_method_is_answered_unimplemented_in_the_headers_alone() {
    let server = Server::start(Limits::default()).await;
    let mut grpc = tonic::client::Grpc::new(channel(server.addr).await);
    grpc.ready().await.unwrap();
    let status = grpc
        .unary::<Vec<u8>, Vec<u8>, _>(
            tonic::Request::new(vec![1]),
            tonic::codegen::http::uri::PathAndQuery::from_static("/test.Echo/Other"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    assert_eq!(status.message(), "no such method");
}

#[tokio::test]
async fn shutdown_sends_goaway_and_closes_connections_whose_streams_stay_open() {
    let mut server = Server::start(Limits {
        drain_timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    tx.send(vec![1, 2]).await.unwrap();
    let mut replies = echo(
        channel(server.addr).await,
        tokio_stream::wrappers::ReceiverStream::new(rx),
    )
    .await
    .unwrap();
    assert_eq!(replies.next().await.unwrap().unwrap(), vec![1, 2]);
    server.stop();
    // The echo stream never ends by itself: the drain timeout closes the connection,
    // and the server returns.
    tokio::time::timeout(Duration::from_secs(20), &mut server.task)
        .await
        .expect("serve returns after the drain timeout")
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(20), replies.next())
        .await
        .expect("the stream ends");
    assert!(matches!(next, Some(Err(_)) | None), "{next:?}");
    drop(tx);
}
