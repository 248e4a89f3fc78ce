//! The xDS port's HTTP/2 server (`portcullis_http2`) on any bytes a client sends after
//! the preface and an empty SETTINGS: frames of every kind, flag and length, header
//! blocks that do not decode, windows pushed anywhere. The service reads each request
//! body to its end and answers 100 KB, so flow control runs both ways.
//!
//! Beyond not panicking: the connection always ends (time is paused and advances by
//! itself, so a stuck connection runs into its timeouts), and the server returns.
#![no_main]

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Answer = std::pin::Pin<
    Box<dyn Future<Output = Result<http::Response<Full<Bytes>>, std::convert::Infallible>> + Send>,
>;

fn answer(req: http::Request<portcullis_http2::RecvBody>) -> Answer {
    Box::pin(async move {
        let _ = req.into_body().collect().await;
        Ok(http::Response::new(Full::new(Bytes::from(vec![7u8; 100_000]))))
    })
}

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let incoming = futures::stream::iter([Ok(server)]).chain(futures::stream::pending());
        let serve = portcullis_http2::serve(
            incoming,
            tower::service_fn(answer),
            portcullis_http2::Limits::default(),
            |_| (),
            async {
                let _ = finished.await;
            },
        );
        let talk = async move {
            let (mut r, mut w) = tokio::io::split(client);
            let write = async {
                let _ = w.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").await;
                let _ = w.write_all(data).await;
                let _ = w.shutdown().await;
            };
            let read = async {
                let mut sink = Vec::new();
                let _ = r.read_to_end(&mut sink).await;
            };
            futures::join!(write, read);
            let _ = done.send(());
        };
        tokio::time::timeout(Duration::from_secs(24 * 3600), async {
            futures::join!(serve, talk);
        })
        .await
        .expect("the connection and the server end");
    });
});
