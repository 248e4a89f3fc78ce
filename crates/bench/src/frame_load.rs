//! An open-loop gRPC load generator that writes HTTP/2 frames itself, on one thread
//! of its own.
//!
//! Why: at 20,000 calls/s the benchmark's tonic client took ~0.9 of this machine's
//! two cores (~45 µs of CPU per call, more than the service it measured), and h2load's
//! timers tick in whole milliseconds per connection, so it sends less than asked.
//! Here each connection sends the calls that fell due since its last tick in one
//! write, reads answers in bulk, and never decodes a response header block: a call's
//! outcome is its response message, which the caller judges. Measured here: about a
//! tenth of a core whatever the rate (its ticks and syscalls), 6 µs of CPU per call at
//! 20,000/s, so the figure is the server's, not the client's.
//!
//! What it leaves out: TLS, request messages over one frame, header decoding. A call
//! fails when it ends without a message the caller accepts: a trailers-only gRPC
//! error, RST_STREAM, GOAWAY, a closed connection, or no answer within the drain.
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::h2_wire::{
    DEFAULT_WINDOW, MAX_WINDOW, PREFACE, frame, next_frame, request_block, unpadded, window_update,
};
use crate::rpc_load::{Sampled, summarize};

/// How long calls still open when the run ends may take to be answered.
const DRAIN: Duration = Duration::from_secs(5);
/// Our receive window is refilled once this much has arrived.
const REFILL: u32 = 1 << 20;

pub struct Load {
    pub addr: SocketAddr,
    pub path: &'static str,
    /// gRPC-framed request messages (5-byte prefix included), sent in turn.
    pub bodies: Vec<Vec<u8>>,
    /// Calls per second, over all connections.
    pub rate: u32,
    pub connections: usize,
    pub duration: Duration,
    /// Whether a response message (without its gRPC prefix) is a success.
    pub accept: fn(&[u8]) -> bool,
}

pub struct Outcome {
    /// Latency of each answered call, timed from the tick that made it due.
    pub sampled: Sampled,
    /// Those latencies, sorted: for pooling runs.
    pub took: Vec<Duration>,
    /// Calls sent per second of the run: below the rate asked when the generator
    /// fell behind.
    pub sent_per_sec: f64,
    /// The generator thread's own CPU time per call, from /proc.
    pub cpu_per_call: Option<Duration>,
}

/// The gRPC health check, the baseline of every frame-level row.
pub const HEALTH_PATH: &str = "/grpc.health.v1.Health/Check";

/// Whether a HealthCheckResponse says SERVING.
pub fn serving(message: &[u8]) -> bool {
    use prost::Message;
    tonic_health::pb::HealthCheckResponse::decode(message).is_ok_and(|r| {
        r.status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    })
}

/// `rounds` rounds of one run of `a` and one of `b`, each going first in turn (`a`
/// in the first round), so a change in the shared machine's load lands on both
/// sides. Returns each round's (`a`, `b`).
pub async fn alternating(
    rounds: u32,
    a: impl Fn() -> Load,
    b: impl Fn() -> Load,
) -> anyhow::Result<Vec<(Outcome, Outcome)>> {
    let mut out = Vec::new();
    for r in 0..rounds {
        out.push(if r % 2 == 0 {
            let first = open_loop(a()).await?;
            (first, open_loop(b()).await?)
        } else {
            let first = open_loop(b()).await?;
            (open_loop(a()).await?, first)
        });
    }
    Ok(out)
}

/// Runs `load` on a thread of its own (a current-thread runtime), so the caller's
/// runtime neither slows it nor is slowed by it.
pub async fn open_loop(load: Load) -> anyhow::Result<Outcome> {
    ensure!(
        load.connections > 0 && load.rate > 0,
        "no connections or no rate"
    );
    ensure!(!load.bodies.is_empty(), "no request to send");
    ensure!(
        load.bodies.iter().all(|b| b.len() <= 16_384),
        "a request over one frame"
    );
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("frame-load".into())
        .spawn(move || {
            let r = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(run(&load)));
            let _ = tx.send(r);
        })?;
    rx.await.context("the load thread died")?
}

async fn run(load: &Load) -> anyhow::Result<Outcome> {
    let mut conns = Vec::new();
    for i in 0..load.connections {
        conns.push(Conn::open(load, i).await?);
    }
    let cpu_before = crate::gateway::cpu_time("/proc/thread-self/stat");
    let started = Instant::now();
    let per_conn = f64::from(load.rate) / load.connections as f64;
    let tallies =
        futures::future::try_join_all(conns.into_iter().map(|c| c.drive(load, started, per_conn)))
            .await?;
    let wall = started.elapsed();
    let cpu = crate::gateway::cpu_time("/proc/thread-self/stat")
        .zip(cpu_before)
        .map(|(a, b)| a.saturating_sub(b));
    let mut all = Tally::default();
    for t in tallies {
        all.took.extend(t.took);
        all.failed += t.failed;
        all.unanswered += t.unanswered;
        all.sent += t.sent;
    }
    let answered = all.took.len().max(1) as u32;
    all.took.sort();
    // Calls never answered are calls, and failed.
    let mut sampled = summarize(all.took.clone(), all.failed + all.unanswered, wall);
    sampled.calls += all.unanswered;
    Ok(Outcome {
        sampled,
        took: all.took,
        sent_per_sec: all.sent as f64 / load.duration.as_secs_f64(),
        cpu_per_call: cpu.map(|c| c / answered),
    })
}

#[derive(Default)]
struct Tally {
    /// Every answered call's latency.
    took: Vec<Duration>,
    /// Answered without a message the caller accepts.
    failed: usize,
    /// Reset, cut off by GOAWAY or a closed connection, or not answered in time.
    unanswered: usize,
    sent: usize,
}

struct Open {
    due: Instant,
    message: Vec<u8>,
}

struct Conn {
    index: usize,
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    block: Vec<u8>,
    input: Vec<u8>,
    output: Vec<u8>,
    next_stream: u32,
    open: HashMap<u32, Open>,
    waiting: VecDeque<Instant>,
    max_streams: usize,
    send_window: i64,
    unacknowledged: u32,
    closed: bool,
}

impl Conn {
    /// Connects and waits for the server's SETTINGS, so the run starts on
    /// connections that are ready and knows how many streams each may open.
    async fn open(load: &Load, index: usize) -> anyhow::Result<Conn> {
        let sock = TcpStream::connect(load.addr)
            .await
            .with_context(|| format!("connecting to {}", load.addr))?;
        sock.set_nodelay(true)?;
        let (rd, wr) = sock.into_split();
        let mut c = Conn {
            index,
            rd,
            wr,
            block: request_block(load.path, &load.addr.to_string()),
            input: Vec::with_capacity(64 * 1024),
            output: Vec::with_capacity(64 * 1024),
            next_stream: 1,
            open: HashMap::new(),
            waiting: VecDeque::new(),
            max_streams: usize::MAX,
            send_window: i64::from(DEFAULT_WINDOW),
            unacknowledged: 0,
            closed: false,
        };
        c.output.extend_from_slice(PREFACE);
        // No push; each stream may receive as much as it likes (answers are small),
        // and the connection's window is refilled as answers arrive.
        let mut settings = vec![0, 2, 0, 0, 0, 0, 0, 4];
        settings.extend_from_slice(&MAX_WINDOW.to_be_bytes());
        frame(&mut c.output, 4, 0, 0, &settings);
        window_update(&mut c.output, 0, MAX_WINDOW - DEFAULT_WINDOW);
        // A peer that hangs up at once fails the write or the read, whichever the
        // kernel reports first: the same error either way.
        let closed = || format!("{} closed before its SETTINGS", load.addr);
        c.flush().await.with_context(closed)?;
        let mut tally = Tally::default();
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.max_streams == usize::MAX {
            let n = tokio::time::timeout_at(deadline.into(), c.rd.read_buf(&mut c.input))
                .await
                .context("no SETTINGS from the server in 10 s")?
                .with_context(closed)?;
            ensure!(n > 0, closed());
            c.read_frames(&mut tally, load.accept)?;
        }
        c.flush().await.with_context(closed)?;
        Ok(c)
    }

    /// Sends calls as they fall due until the run ends, then waits (up to [`DRAIN`])
    /// for the answers still open.
    async fn drive(mut self, load: &Load, started: Instant, rate: f64) -> anyhow::Result<Tally> {
        let mut tally = Tally::default();
        let end = started + load.duration;
        let mut due = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut sending = true;
        let drain = tokio::time::sleep_until((end + DRAIN).into());
        tokio::pin!(drain);
        while !self.closed && (sending || !self.open.is_empty() || !self.waiting.is_empty()) {
            tokio::select! {
                biased;
                n = self.rd.read_buf(&mut self.input) => {
                    if n? == 0 {
                        self.closed = true;
                    }
                    self.read_frames(&mut tally, load.accept)?;
                }
                _ = tick.tick(), if sending => {
                    let now = Instant::now();
                    let by_now = ((now.min(end) - started).as_secs_f64() * rate) as u64;
                    self.waiting.extend((due..by_now).map(|_| now));
                    due = by_now;
                    sending = now < end;
                }
                _ = &mut drain => break,
            }
            self.send_waiting(load, &mut tally);
            self.flush().await?;
        }
        tally.unanswered += self.open.len() + self.waiting.len();
        Ok(tally)
    }

    /// Starts as many waiting calls as the server's stream limit and our send
    /// window allow; the rest wait, their clocks running.
    fn send_waiting(&mut self, load: &Load, tally: &mut Tally) {
        while self.open.len() < self.max_streams {
            let body =
                &load.bodies[(tally.sent * load.connections + self.index) % load.bodies.len()];
            if self.send_window < body.len() as i64 {
                break;
            }
            let Some(due) = self.waiting.pop_front() else {
                break;
            };
            let id = self.next_stream;
            self.next_stream += 2;
            // HEADERS with END_HEADERS, then DATA with END_STREAM.
            frame(&mut self.output, 1, 0x4, id, &self.block);
            frame(&mut self.output, 0, 0x1, id, body);
            self.send_window -= body.len() as i64;
            self.open.insert(
                id,
                Open {
                    due,
                    message: Vec::new(),
                },
            );
            tally.sent += 1;
        }
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        if !self.output.is_empty() {
            self.wr.write_all(&self.output).await?;
            self.output.clear();
        }
        Ok(())
    }

    /// Handles every whole frame read so far.
    fn read_frames(&mut self, tally: &mut Tally, accept: fn(&[u8]) -> bool) -> anyhow::Result<()> {
        // Taken out while its frames are handled, which change the rest of `self`.
        let mut input = std::mem::take(&mut self.input);
        let mut at = 0;
        while let Some((f, used)) = next_frame(&input[at..]) {
            at += used;
            self.on_frame(f.kind, f.flags, f.stream, f.payload, tally, accept)?;
        }
        input.drain(..at);
        self.input = input;
        if self.unacknowledged >= REFILL {
            window_update(&mut self.output, 0, self.unacknowledged);
            self.unacknowledged = 0;
        }
        Ok(())
    }

    fn on_frame(
        &mut self,
        kind: u8,
        flags: u8,
        stream: u32,
        payload: &[u8],
        tally: &mut Tally,
        accept: fn(&[u8]) -> bool,
    ) -> anyhow::Result<()> {
        let end_stream = flags & 0x1 != 0;
        match kind {
            // DATA: part of the answer's message.
            0 => {
                self.unacknowledged += payload.len() as u32;
                let data = unpadded(flags, payload)?;
                if let Some(o) = self.open.get_mut(&stream) {
                    o.message.extend_from_slice(data);
                }
                if end_stream {
                    self.finish(stream, tally, accept);
                }
            }
            // HEADERS: the answer's headers or trailers; only END_STREAM matters.
            1 if end_stream => self.finish(stream, tally, accept),
            // RST_STREAM: the call failed unanswered.
            3 if self.open.remove(&stream).is_some() => tally.unanswered += 1,
            // SETTINGS (not an ACK): the stream limit; acknowledged.
            4 if flags & 0x1 == 0 => {
                for s in payload.chunks_exact(6) {
                    let value = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
                    if u16::from_be_bytes([s[0], s[1]]) == 3 {
                        self.max_streams = value as usize;
                    }
                }
                if self.max_streams == usize::MAX {
                    // The server sets no limit: a large one, never "unknown".
                    self.max_streams = usize::MAX - 1;
                }
                frame(&mut self.output, 4, 0x1, 0, &[]);
            }
            // PING: answered.
            6 if flags & 0x1 == 0 => frame(&mut self.output, 6, 0x1, 0, payload),
            // GOAWAY: the calls still open fail; no more on this connection.
            7 => {
                self.closed = true;
                eprintln!(
                    "frame load: GOAWAY from the server: {}",
                    String::from_utf8_lossy(payload.get(8..).unwrap_or_default())
                );
            }
            // WINDOW_UPDATE on the connection: more we may send.
            8 if stream == 0 && payload.len() == 4 => {
                let n = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                self.send_window += i64::from(n & MAX_WINDOW);
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(&mut self, stream: u32, tally: &mut Tally, accept: fn(&[u8]) -> bool) {
        let Some(o) = self.open.remove(&stream) else {
            return;
        };
        tally.took.push(o.due.elapsed());
        let ok = match o.message.split_at_checked(5) {
            Some((prefix, message)) => {
                prefix[0] == 0
                    && u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize
                        == message.len()
                    && accept(message)
            }
            None => false,
        };
        tally.failed += usize::from(!ok);
    }
}

#[cfg(test)]
#[path = "frame_load_tests.rs"]
mod tests;
