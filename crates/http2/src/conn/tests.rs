//! The connection task driven directly, for what a socket test cannot arrange: a task
//! that first runs, or runs again, long after it should have.
use std::convert::Infallible;
use std::future::Ready;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body_util::Empty;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tower::Service;

use super::Conn;
use crate::frame::{self, Head};
use crate::{Limits, RecvBody};

#[derive(Clone)]
struct Nothing;

impl Service<Request<RecvBody>> for Nothing {
    type Response = Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<RecvBody>) -> Self::Future {
        std::future::ready(Ok(Response::new(Empty::new())))
    }
}

/// A connection with a 1 s preface timeout over an in-memory pipe, not yet run, and
/// the client's end of the pipe.
fn connection() -> (Conn<DuplexStream, Nothing, Empty<Bytes>, ()>, DuplexStream) {
    let limits = Limits {
        preface_timeout: PREFACE_TIMEOUT,
        ..Limits::default()
    };
    let (server_io, client) = tokio::io::duplex(64 * 1024);
    let pending = Box::pin(std::future::pending());
    (Conn::new(server_io, Nothing, (), limits, pending), client)
}

const PREFACE_TIMEOUT: Duration = Duration::from_secs(1);

/// The client's preface, an empty SETTINGS and a PING carrying `payload`.
fn hello(payload: [u8; 8]) -> BytesMut {
    let mut hello = BytesMut::from(&frame::PREFACE[..]);
    frame::settings(&mut hello, &[]);
    frame::ping(&mut hello, false, payload);
    hello
}

/// The first PING ACK the client reads, or `None` if a GOAWAY or the close comes first.
async fn ping_answer(client: &mut DuplexStream) -> Option<Vec<u8>> {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let mut head = [0u8; 9];
            client.read_exact(&mut head).await.ok()?;
            let head = Head::parse(&head);
            let mut payload = vec![0; head.len];
            client.read_exact(&mut payload).await.ok()?;
            if head.kind == frame::GOAWAY {
                return None;
            }
            if head.kind == frame::PING && head.has(frame::ACK) {
                return Some(payload);
            }
        }
    })
    .await
    .expect("the connection answers in time")
}

#[tokio::test]
async fn a_preface_that_came_while_the_task_waited_past_its_deadline_is_read_first() {
    // The task ran once (nothing there yet), then waited past the preface deadline for
    // its next turn while the preface arrived: a starved server, not a silent peer.
    let (mut conn, mut client) = connection();
    let first = std::future::poll_fn(|cx| Poll::Ready(conn.poll_conn(cx).is_pending())).await;
    assert!(first, "nothing to read yet: the connection waits");
    tokio::time::sleep(PREFACE_TIMEOUT * 2).await;
    client.write_all(&hello(*b"late-run")).await.unwrap();
    let task = tokio::spawn(conn.run());
    assert_eq!(
        ping_answer(&mut client).await.as_deref(),
        Some(&b"late-run"[..])
    );
    task.abort();
}

#[tokio::test]
async fn the_preface_timeout_counts_from_the_tasks_first_run_not_from_the_accept() {
    // In a storm of connections a task may first run seconds after its accept, with the
    // peer's preface already waiting. That wait is the server's, not a silent peer's.
    let (conn, mut client) = connection();
    client.write_all(&hello(*b"still-up")).await.unwrap();
    tokio::time::sleep(PREFACE_TIMEOUT * 2).await;
    let task = tokio::spawn(conn.run());
    let answer = ping_answer(&mut client).await;
    assert_eq!(
        answer.as_deref(),
        Some(&b"still-up"[..]),
        "the PING is answered, not the connection closed as if the peer were silent"
    );
    task.abort();
}
