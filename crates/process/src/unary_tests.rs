//! The small-buffer server through a real tonic client on a loopback port.
use super::*;
use prost_types::Any;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

/// Echoes what it is sent, so a large request also makes a large answer.
#[derive(Clone)]
struct Echo;

impl UnaryMethod for Echo {
    const SERVICE: &'static str = "test.Echo";
    const METHOD: &'static str = "Say";
    type Request = Any;
    type Response = Any;

    async fn call(&self, request: Request<Any>) -> Result<Response<Any>, Status> {
        Ok(Response::new(request.into_inner()))
    }
}

/// A server on 127.0.0.1:0 and a gRPC client connected to it.
async fn start() -> (
    tonic::client::Grpc<Channel>,
    tokio::sync::oneshot::Sender<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(UnaryServer(Echo))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (tonic::client::Grpc::new(channel), stop)
}

async fn call(
    grpc: &mut tonic::client::Grpc<Channel>,
    path: &'static str,
    value: Vec<u8>,
) -> Result<Any, Status> {
    grpc.ready().await.unwrap();
    let request = Any {
        type_url: "t".into(),
        value,
    };
    grpc.unary::<_, Any, _>(
        Request::new(request),
        PathAndQuery::from_static(path),
        ProstCodec::default(),
    )
    .await
    .map(Response::into_inner)
}

#[tokio::test]
async fn calls_smaller_and_much_larger_than_the_buffers_come_back_whole() {
    let (mut grpc, _stop) = start().await;
    for len in [0, 10, CALL_BUFFER, 64 * 1024, 1 << 20] {
        let sent: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let got = call(&mut grpc, "/test.Echo/Say", sent.clone())
            .await
            .unwrap();
        assert_eq!((got.type_url.as_str(), got.value.len()), ("t", len));
        assert!(got.value == sent, "{len} bytes came back changed");
    }
}

#[tokio::test]
async fn other_paths_and_oversized_messages_get_the_generated_servers_statuses() {
    let (mut grpc, _stop) = start().await;
    for path in ["/test.Echo/Nope", "/test.EchoX/Say", "/other.Service/Say"] {
        let e = call(&mut grpc, path, vec![1]).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unimplemented, "{path}: {e:?}");
    }
    // Above tonic's default 4 MiB decoding limit.
    let e = call(&mut grpc, "/test.Echo/Say", vec![7; 5 << 20])
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::OutOfRange, "{e:?}");
    // The connection still serves.
    let got = call(&mut grpc, "/test.Echo/Say", vec![3; 3]).await.unwrap();
    assert_eq!(got.value, vec![3; 3]);
}

#[test]
fn only_the_exact_method_path_is_the_method() {
    assert!(is_method::<Echo>("/test.Echo/Say"));
    for path in [
        "test.Echo/Say",
        "/test.Echo/Say/",
        "//test.Echo/Say",
        "/test.Echo//Say",
        "/test.Echo/SayX",
        "/test.EchoX/Say",
        "/test.Echo",
        "/",
        "",
    ] {
        assert!(!is_method::<Echo>(path), "{path:?}");
    }
    assert_eq!(
        <UnaryServer<Echo> as tonic::server::NamedService>::NAME,
        "test.Echo"
    );
}
