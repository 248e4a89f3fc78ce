//! An echo gRPC service served by `portcullis_http2`, for the tests: each request
//! message `m` is answered with `m` repeated as many times as its first byte says.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use portcullis_http2::{Limits, RecvBody};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

pub const PATH: &str = "/test.Echo/Stream";

#[derive(Clone)]
pub struct Echo;

struct Method;

type Replies = Pin<Box<dyn Stream<Item = Result<Vec<u8>, Status>> + Send>>;

impl tonic::server::StreamingService<Vec<u8>> for Method {
    type Response = Vec<u8>;
    type ResponseStream = Replies;
    type Future = std::future::Ready<Result<Response<Replies>, Status>>;

    fn call(&mut self, request: Request<Streaming<Vec<u8>>>) -> Self::Future {
        let replies = request.into_inner().map(|m| {
            let m = m?;
            let times = usize::from(m.first().copied().unwrap_or(1));
            Ok(m.repeat(times))
        });
        std::future::ready(Ok(Response::new(Box::pin(replies) as Replies)))
    }
}

impl Service<http::Request<RecvBody>> for Echo {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<RecvBody>) -> Self::Future {
        if req.uri().path() != PATH {
            return Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) });
        }
        Box::pin(async move {
            let codec = ProstCodec::<Vec<u8>, Vec<u8>>::default();
            let mut grpc = tonic::server::Grpc::new(codec)
                .apply_max_message_size_config(Some(16 << 20), Some(64 << 20));
            Ok(grpc.streaming(Method, req).await)
        })
    }
}

pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<()>,
}

impl Server {
    pub async fn start(limits: Limits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let incoming = Box::pin(tokio_stream::wrappers::TcpListenerStream::new(listener));
        let task = tokio::spawn(portcullis_http2::serve(
            incoming,
            Echo,
            limits,
            |s: &tokio::net::TcpStream| s.peer_addr().ok(),
            async {
                let _ = stopped.await;
            },
        ));
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub async fn channel(addr: SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap()
}

/// Opens an echo stream on `channel`, sending `requests`.
pub async fn echo(
    channel: tonic::transport::Channel,
    requests: impl Stream<Item = Vec<u8>> + Send + 'static,
) -> Result<Streaming<Vec<u8>>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    grpc.ready().await.unwrap();
    let codec = ProstCodec::<Vec<u8>, Vec<u8>>::default();
    let path = http::uri::PathAndQuery::from_static(PATH);
    Ok(grpc
        .streaming(Request::new(requests), path, codec)
        .await?
        .into_inner())
}
