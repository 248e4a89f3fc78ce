//! A small HTTP/2 server (RFC 9113, server side only) for long-lived gRPC streams: the
//! xDS port's transport.
//!
//! Why not hyper's: every connection there holds h2's buffers for as long as it lives
//! (a 16 KiB write buffer, a read buffer grown to the largest frame, a 4 KiB HPACK
//! buffer, frame and stream slabs, a task per stream), ~37 KiB per Envoy, none of it
//! sized by a setting. Here a connection is one task whose buffers exist only while a
//! frame is being read or written (see `conn`), so an idle Envoy costs a few KiB.
//!
//! What it leaves out, on purpose: server push, priorities (read and ignored), CONNECT,
//! HTTP/1.1 and h2c upgrades. What it bounds, since any peer may be hostile: frame
//! size (16 KiB), header block and list size, concurrent streams, unread request data
//! (the flow-control windows), queued output (it stops reading while the peer does not
//! read), streams reset by the peer, empty DATA frames, the time to the first SETTINGS,
//! and unanswered keep-alive PINGs.
#![forbid(unsafe_code)]

mod body;
mod conn;
mod frame;
mod hpack;

use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::Service;

pub use body::{RecvBody, RecvError};

/// What one connection may use and ask for.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Streams open at once (SETTINGS_MAX_CONCURRENT_STREAMS); more are refused.
    pub max_concurrent_streams: u32,
    /// Request bytes a stream may have unread (SETTINGS_INITIAL_WINDOW_SIZE).
    pub stream_window: u32,
    /// Request bytes all streams together may have unread.
    pub connection_window: u32,
    /// Largest header block and decoded field list (SETTINGS_MAX_HEADER_LIST_SIZE).
    pub max_header_list: usize,
    /// Streams the peer may reset before the connection is closed (ENHANCE_YOUR_CALM).
    pub max_resets: u32,
    /// Time from accepting to the peer's preface and first SETTINGS.
    pub preface_timeout: Duration,
    /// Time between keep-alive PINGs, and how long one may go unanswered.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// After shutdown, how long open streams have to end before the connection closes.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent_streams: 32,
            stream_window: 1024 * 1024,
            connection_window: 2 * 1024 * 1024,
            max_header_list: 16 * 1024,
            max_resets: 100,
            preface_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves every connection `incoming` yields with `service` until `shutdown` resolves,
/// then sends each GOAWAY and waits (up to the drain timeout) for their streams to end.
/// `info` says who is on a connection; it goes into every request's extensions.
pub async fn serve<I, IO, F, E, S, B>(
    mut incoming: I,
    service: S,
    limits: Limits,
    info: F,
    shutdown: impl Future<Output = ()>,
) where
    I: Stream<Item = io::Result<IO>> + Unpin,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(&IO) -> E,
    E: Clone + Send + Sync + 'static,
    S: Service<Request<RecvBody>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Unpin + Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            next = incoming.next() => match next {
                Some(Ok(io)) => {
                    let ext = info(&io);
                    let mut stop = stop_rx.clone();
                    let signal = Box::pin(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    });
                    let conn = conn::Conn::new(io, service.clone(), ext, limits, signal);
                    connections.spawn(conn.run());
                }
                Some(Err(e)) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                None => break,
            },
        }
    }
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.drain_timeout + Duration::from_secs(2), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "HTTP/2 connections still open after the drain timeout; closing them"
        );
        connections.abort_all();
    }
}
