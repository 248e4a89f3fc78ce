//! An ADS client that writes and reads HTTP/2 frames itself: what the connection-storm
//! row times, so that the figure is the server's and not the benchmark's own clients'.
//!
//! Why: the tonic clients of `ads_clients` decode every frame and buffer each ~1 MiB
//! response whole before reading three of its fields; a thousand of them in the
//! benchmark's process share the two cores with the server they measure. Here a client
//! is one task with one socket: it reads frames in bulk, skips the resources as they
//! stream past (`ads_wire::Responses`), and writes requests assembled from bytes
//! encoded once. Like Envoy it opens one stream, asks for CDS, EDS (by name), LDS and
//! RDS, ACKs every response, and grants the server Envoy's default windows (256 MiB).
//!
//! What it leaves out: TLS, decoding response headers (a stream the server ends, resets
//! or GOAWAYs is an error, whatever its status), and any request but ACKs after the first.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use envoy_types::pb::envoy::config::core::v3::Node;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::ads_wire::{Answer, Requests, Responses};
use crate::h2_wire::{
    DEFAULT_WINDOW, MAX_WINDOW, PREFACE, frame, next_frame, request_block, unpadded, window_update,
};

/// Envoy's default stream and connection windows for an xDS cluster.
const WINDOW: u32 = 256 << 20;
/// Our receive windows are refilled once this much has arrived.
const REFILL: u32 = 1 << 20;
const STREAM: u32 = 1;

/// An open stream whose later responses a task goes on ACKing, as Envoy does;
/// dropping it ends the task and closes the stream.
pub struct Held(tokio::task::JoinHandle<()>);

impl Held {
    pub fn new(task: tokio::task::JoinHandle<()>) -> Held {
        Held(task)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Connects to `addr`, opens an ADS stream at `path`, sends a first request for each of
/// `types` (the node on the first) and ACKs every response; returns once each type was
/// answered, leaving a task that goes on ACKing until the handle is dropped.
pub async fn subscribe(
    addr: SocketAddr,
    path: &'static str,
    node: Node,
    types: &[&str],
    requests: Arc<Requests>,
) -> anyhow::Result<Held> {
    let sock = tokio::time::timeout(Duration::from_secs(30), TcpStream::connect(addr))
        .await
        .context("connecting took over 30 s")??;
    sock.set_nodelay(true)?;
    let mut c = Conn::new(sock, requests);
    c.output.extend_from_slice(PREFACE);
    // No push; Envoy's windows, so the server is never held back by ours.
    let mut settings = vec![0, 2, 0, 0, 0, 0, 0, 4];
    settings.extend_from_slice(&WINDOW.to_be_bytes());
    frame(&mut c.output, 4, 0, 0, &settings);
    window_update(&mut c.output, 0, WINDOW - DEFAULT_WINDOW);
    frame(
        &mut c.output,
        1,
        0x4,
        STREAM,
        &request_block(path, &addr.to_string()),
    );
    for (k, t) in types.iter().enumerate() {
        c.requests
            .first(&mut c.unsent, t, (k == 0).then_some(&node));
    }
    let mut waiting: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
    let (ready, answered) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut ready = Some(ready);
        let result = c.run(&mut waiting, &mut ready).await;
        if let (Some(ready), Err(e)) = (ready, result) {
            let _ = ready.send(Err(e));
        }
    });
    let held = Held(task);
    answered.await.context("the client task ended")??;
    Ok(held)
}

struct Conn {
    sock: TcpStream,
    requests: Arc<Requests>,
    input: Vec<u8>,
    output: Vec<u8>,
    /// gRPC bytes of requests not yet sent as DATA (flow control may hold them).
    unsent: Vec<u8>,
    responses: Responses,
    answers: Vec<Answer>,
    conn_window: i64,
    stream_window: i64,
    /// The server's SETTINGS_INITIAL_WINDOW_SIZE, so a change applies its difference.
    initial_window: i64,
    max_frame: usize,
    unacknowledged: u32,
}

impl Conn {
    fn new(sock: TcpStream, requests: Arc<Requests>) -> Conn {
        Conn {
            sock,
            requests,
            input: Vec::with_capacity(64 * 1024),
            output: Vec::with_capacity(16 * 1024),
            unsent: Vec::new(),
            responses: Responses::default(),
            answers: Vec::new(),
            conn_window: i64::from(DEFAULT_WINDOW),
            stream_window: i64::from(DEFAULT_WINDOW),
            initial_window: i64::from(DEFAULT_WINDOW),
            max_frame: 16_384,
            unacknowledged: 0,
        }
    }

    /// Reads and writes until the connection fails; `ready` is told once every type in
    /// `waiting` was answered.
    async fn run(
        &mut self,
        waiting: &mut Vec<String>,
        ready: &mut Option<oneshot::Sender<anyhow::Result<()>>>,
    ) -> anyhow::Result<()> {
        loop {
            self.send_unsent();
            let interest = if self.output.is_empty() {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            let state = self.sock.ready(interest).await?;
            if state.is_readable() {
                if self.input.capacity() - self.input.len() < 16 * 1024 {
                    self.input.reserve(64 * 1024);
                }
                match self.sock.try_read_buf(&mut self.input) {
                    Ok(0) => bail!("the server closed the connection"),
                    Ok(_) => self.read_frames()?,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
                for a in std::mem::take(&mut self.answers) {
                    waiting.retain(|t| *t != a.type_url);
                    self.requests.ack(&mut self.unsent, &a);
                }
                if waiting.is_empty()
                    && let Some(ready) = ready.take()
                {
                    let _ = ready.send(Ok(()));
                }
            }
            if state.is_writable() && !self.output.is_empty() {
                match self.sock.try_write(&self.output) {
                    Ok(n) => {
                        self.output.drain(..n);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }

    /// Moves request bytes into DATA frames as far as the server's windows allow.
    fn send_unsent(&mut self) {
        let mut at = 0;
        while at < self.unsent.len() {
            let room = self.conn_window.min(self.stream_window).max(0) as usize;
            let n = (self.unsent.len() - at).min(self.max_frame).min(room);
            if n == 0 {
                break;
            }
            frame(&mut self.output, 0, 0, STREAM, &self.unsent[at..at + n]);
            self.conn_window -= n as i64;
            self.stream_window -= n as i64;
            at += n;
        }
        self.unsent.drain(..at);
    }

    fn read_frames(&mut self) -> anyhow::Result<()> {
        // Taken out while its frames are handled, which change the rest of `self`.
        let input = std::mem::take(&mut self.input);
        let mut at = 0;
        let mut result = Ok(());
        while let Some((f, used)) = next_frame(&input[at..]) {
            at += used;
            result = self.on_frame(f.kind, f.flags, f.stream, f.payload);
            if result.is_err() {
                break;
            }
        }
        self.input = input;
        self.input.drain(..at);
        if self.unacknowledged >= REFILL {
            window_update(&mut self.output, 0, self.unacknowledged);
            window_update(&mut self.output, STREAM, self.unacknowledged);
            self.unacknowledged = 0;
        }
        result
    }

    fn on_frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> anyhow::Result<()> {
        let end_stream = flags & 0x1 != 0;
        match kind {
            // DATA: response bytes.
            0 => {
                ensure!(stream == STREAM, "DATA on stream {stream}");
                self.unacknowledged += payload.len() as u32;
                self.responses
                    .feed(unpadded(flags, payload)?, &mut self.answers)?;
                ensure!(!end_stream, "the server ended the stream");
            }
            // HEADERS: the response's headers, or trailers that end the stream.
            1 => ensure!(!end_stream, "the server ended the stream (trailers)"),
            3 => bail!("the server reset the stream"),
            // SETTINGS (not an ACK): windows and frame size; acknowledged.
            4 if flags & 0x1 == 0 => {
                for s in payload.chunks_exact(6) {
                    let value = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
                    match u16::from_be_bytes([s[0], s[1]]) {
                        4 => {
                            self.stream_window += i64::from(value) - self.initial_window;
                            self.initial_window = i64::from(value);
                        }
                        5 => self.max_frame = value as usize,
                        _ => {}
                    }
                }
                frame(&mut self.output, 4, 0x1, 0, &[]);
            }
            6 if flags & 0x1 == 0 => frame(&mut self.output, 6, 0x1, 0, payload),
            7 => bail!(
                "GOAWAY from the server: {}",
                String::from_utf8_lossy(payload.get(8..).unwrap_or_default())
            ),
            8 if payload.len() == 4 => {
                let n = i64::from(
                    u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                        & MAX_WINDOW,
                );
                match stream {
                    0 => self.conn_window += n,
                    STREAM => self.stream_window += n,
                    _ => {}
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "ads_frames_tests.rs"]
mod tests;
