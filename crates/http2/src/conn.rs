//! One HTTP/2 connection, driven by one task: it reads frames, runs each stream's
//! service future and response body in place (no task per stream), and writes what
//! they produce within the peer's flow-control windows.
//!
//! Memory is the point: an idle connection holds no read or write buffer. A frame's
//! payload is read into a buffer of its own size and handed on (DATA goes to the
//! stream's body as it is); what is written is queued as the pieces that make it up
//! (a response chunk is the body's own bytes) and the queue is let go once written.
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};
use tower::Service;

use crate::Limits;
use crate::body::{Inbox, RecvBody, SharedInbox, lock};
use crate::frame::{self, Code, Head};

mod recv;
mod send;
#[cfg(test)]
mod tests;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Bytes queued for writing past which no more is read or produced until the peer reads.
const OUT_HIGH: usize = 64 * 1024;
/// Zero-length DATA frames without END_STREAM a connection may send; they cost work
/// and carry nothing.
const MAX_EMPTY_DATA: u32 = 1024;
/// Frames read in one round before the streams and the writer get their turn.
const FRAMES_PER_ROUND: usize = 256;
/// Rounds of reading, running and writing before the task yields to others.
const ROUNDS_PER_POLL: usize = 32;
/// The keep-alive PING's payload, to tell its ACK from an answer to anything else.
const KEEPALIVE: [u8; 8] = *b"portcull";

/// The service a connection runs: the bounds every `impl Conn` block needs, named once.
pub(crate) trait Handler<B>:
    Service<Request<RecvBody>, Response = Response<B>, Future: Unpin, Error: Into<BoxError>>
{
}

impl<T, B> Handler<B> for T where
    T: Service<Request<RecvBody>, Response = Response<B>, Future: Unpin, Error: Into<BoxError>>
{
}

/// A response body a connection writes.
pub(crate) trait ResponseBody: Body<Data = Bytes, Error: Into<BoxError>> + Unpin {}

impl<T: Body<Data = Bytes, Error: Into<BoxError>> + Unpin> ResponseBody for T {}

/// Why a connection ended early.
pub(crate) enum Fail {
    Io(io::Error),
    /// A connection error: GOAWAY with this code.
    Conn(Code, &'static str),
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        Fail::Io(e)
    }
}

enum ReadState {
    Preface(usize),
    Head(usize),
    Payload(Head, Vec<u8>, usize),
}

/// A header block waiting for its CONTINUATION frames.
struct Block {
    stream: u32,
    end_stream: bool,
    bytes: Vec<u8>,
}

enum Output<F, B> {
    /// The service is working out the response head.
    Head(F),
    /// The body is being written; `chunk` is what is left of its last DATA.
    Body { body: B, chunk: Option<Bytes> },
}

struct Stream<F, B> {
    id: u32,
    inbox: SharedInbox,
    /// The peer may still send (no END_STREAM or reset yet).
    recv_open: bool,
    /// How much more the peer may send on this stream.
    recv_window: i64,
    /// Bytes read (or dropped) but not yet credited back with WINDOW_UPDATE.
    recv_credit: usize,
    send: Output<F, B>,
    send_window: i64,
}

impl<F, B> Drop for Stream<F, B> {
    fn drop(&mut self) {
        // A body still held elsewhere learns that nothing more will come.
        lock(&self.inbox).close();
    }
}

/// What a stream's send side did when polled.
enum Sent {
    Waiting,
    /// Its last frame is queued (or it was reset): the stream can go.
    Done,
}

pub(crate) struct Conn<IO, S, B, E>
where
    S: Service<Request<RecvBody>>,
{
    io: IO,
    service: S,
    ext: E,
    limits: Limits,
    read: ReadState,
    head: [u8; 24],
    read_closed: bool,
    decoder: loona_hpack::Decoder<'static>,
    block: Option<Block>,
    streams: Vec<Stream<S::Future, B>>,
    last_stream: u32,
    /// Whether the peer's first SETTINGS came.
    settled: bool,
    /// Frames waiting to be written, and their size.
    out: VecDeque<Bytes>,
    out_len: usize,
    /// Control frames and DATA heads are built here, then split off into `out`.
    scratch: BytesMut,
    needs_flush: bool,
    conn_send: i64,
    peer_window: i64,
    peer_max_frame: usize,
    conn_recv: i64,
    conn_credit: usize,
    timer: Pin<Box<Sleep>>,
    /// Whether the task has run yet: the preface timeout counts from then.
    polled: bool,
    ping_out: bool,
    shutdown: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    going_away: bool,
    peer_gone: bool,
    resets: u32,
    empty_data: u32,
}

impl<IO, S, B, E> Conn<IO, S, B, E>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: Handler<B>,
    B: ResponseBody,
    E: Clone + Send + Sync + 'static,
{
    pub(crate) fn new(
        io: IO,
        service: S,
        ext: E,
        limits: Limits,
        shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Self {
        let mut conn = Conn {
            io,
            service,
            ext,
            limits,
            read: ReadState::Preface(0),
            head: [0; 24],
            read_closed: false,
            decoder: loona_hpack::Decoder::new(),
            block: None,
            streams: Vec::new(),
            last_stream: 0,
            settled: false,
            out: VecDeque::new(),
            out_len: 0,
            scratch: BytesMut::new(),
            needs_flush: false,
            conn_send: frame::DEFAULT_WINDOW,
            peer_window: frame::DEFAULT_WINDOW,
            peer_max_frame: frame::MIN_MAX_FRAME_SIZE,
            conn_recv: frame::DEFAULT_WINDOW,
            conn_credit: 0,
            timer: Box::pin(tokio::time::sleep(limits.preface_timeout)),
            polled: false,
            ping_out: false,
            shutdown: Some(shutdown),
            going_away: false,
            peer_gone: false,
            resets: 0,
            empty_data: 0,
        };
        frame::settings(
            &mut conn.scratch,
            &[
                (frame::SETTINGS_ENABLE_PUSH, 0),
                (
                    frame::SETTINGS_MAX_CONCURRENT_STREAMS,
                    limits.max_concurrent_streams,
                ),
                (frame::SETTINGS_INITIAL_WINDOW_SIZE, limits.stream_window),
                (
                    frame::SETTINGS_MAX_FRAME_SIZE,
                    frame::MIN_MAX_FRAME_SIZE as u32,
                ),
                (
                    frame::SETTINGS_MAX_HEADER_LIST_SIZE,
                    limits.max_header_list as u32,
                ),
            ],
        );
        let extra = i64::from(limits.connection_window) - frame::DEFAULT_WINDOW;
        if extra > 0 {
            frame::window_update(&mut conn.scratch, 0, extra as u32);
            conn.conn_recv += extra;
        }
        conn
    }

    /// Serves the connection until it ends, then closes it.
    pub(crate) async fn run(mut self) {
        let end = std::future::poll_fn(|cx| self.poll_conn(cx)).await;
        match end {
            Ok(()) => {}
            Err(Fail::Io(e)) => tracing::debug!("HTTP/2 connection ended: {e}"),
            Err(Fail::Conn(code, why)) => {
                tracing::info!(?code, "HTTP/2 connection closed: {why}");
                self.out.clear();
                self.scratch.clear();
                frame::goaway(&mut self.scratch, self.last_stream, code, why);
                let bytes = self.scratch.split().freeze();
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    self.io.write_all(&bytes).await?;
                    self.io.flush().await
                })
                .await;
            }
        }
        // Service futures and bodies go before the socket closes.
        self.streams.clear();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.io.shutdown()).await;
    }

    fn poll_conn(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Fail>> {
        if !self.polled {
            // Counted from the first run, not from the accept: in a storm of thousands
            // of connections a task may wait seconds for its turn, and that wait is
            // ours, not a slow peer's (such connections were closed as if silent).
            self.polled = true;
            self.timer
                .as_mut()
                .reset(Instant::now() + self.limits.preface_timeout);
        }
        for _ in 0..ROUNDS_PER_POLL {
            // What the peer sent is read before the timer is looked at: a task that
            // waited past a deadline for its turn (a loaded server) finds the preface or
            // the PING's answer already there, and must not close as if it never came.
            let mut progress = self.read_frames(cx)?;
            if self.read_closed {
                return Poll::Ready(Ok(()));
            }
            progress |= self.poll_signals(cx)?;
            progress |= self.poll_streams(cx);
            progress |= self.write_out(cx)?;
            let idle = self.out.is_empty() && !self.needs_flush;
            if (self.going_away || self.peer_gone) && self.streams.is_empty() && idle {
                return Poll::Ready(Ok(()));
            }
            if !progress {
                if idle {
                    // Nothing held between bursts: the buffers go back to the allocator.
                    self.scratch = BytesMut::new();
                    self.out = VecDeque::new();
                }
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// The shutdown signal and the timer (preface, keep-alive, drain).
    fn poll_signals(&mut self, cx: &mut Context<'_>) -> Result<bool, Fail> {
        let mut progress = false;
        if let Some(signal) = &mut self.shutdown
            && signal.as_mut().poll(cx).is_ready()
        {
            self.shutdown = None;
            self.going_away = true;
            frame::goaway(
                &mut self.scratch,
                self.last_stream,
                Code::NoError,
                "shutting down",
            );
            self.timer
                .as_mut()
                .reset(Instant::now() + self.limits.drain_timeout);
            progress = true;
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            if self.going_away {
                return Err(Fail::Conn(
                    Code::NoError,
                    "streams still open after the drain timeout",
                ));
            }
            if !self.settled {
                return Err(Fail::Conn(
                    Code::Protocol,
                    "no preface and SETTINGS in time",
                ));
            }
            if self.ping_out {
                return Err(Fail::Conn(Code::NoError, "keep-alive PING not answered"));
            }
            frame::ping(&mut self.scratch, false, KEEPALIVE);
            self.ping_out = true;
            self.timer
                .as_mut()
                .reset(Instant::now() + self.limits.keepalive_timeout);
            progress = true;
        }
        Ok(progress)
    }

    fn read_frames(&mut self, cx: &mut Context<'_>) -> Result<bool, Fail> {
        let mut progress = false;
        // Output counts what is queued and what is still being built, so a flood of
        // frames that each call for an answer (PING, SETTINGS) stops being read too.
        for _ in 0..FRAMES_PER_ROUND {
            if self.out_len + self.scratch.len() >= OUT_HIGH || self.read_closed {
                break;
            }
            match self.poll_frame(cx)? {
                Poll::Ready(Some((head, payload))) => {
                    progress = true;
                    self.on_frame(head, payload, cx)?;
                }
                Poll::Ready(None) => {
                    self.read_closed = true;
                    progress = true;
                }
                Poll::Pending => break,
            }
        }
        Ok(progress)
    }

    /// Reads into `buf`, counting an end of stream as an error unless at a boundary.
    fn poll_read_into(
        io: &mut IO,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut rb = ReadBuf::new(buf);
        ready!(Pin::new(io).poll_read(cx, &mut rb))?;
        Poll::Ready(Ok(rb.filled().len()))
    }

    /// The next frame, or `None` when the peer closed at a frame boundary.
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Result<Poll<Option<(Head, Bytes)>>, Fail> {
        let eof = || Fail::Io(io::ErrorKind::UnexpectedEof.into());
        loop {
            match &mut self.read {
                ReadState::Preface(got) => {
                    let Poll::Ready(n) =
                        Self::poll_read_into(&mut self.io, cx, &mut self.head[*got..])?
                    else {
                        return Ok(Poll::Pending);
                    };
                    if n == 0 {
                        return Err(eof());
                    }
                    *got += n;
                    if *got == frame::PREFACE.len() {
                        if &self.head != frame::PREFACE {
                            return Err(Fail::Conn(Code::Protocol, "not the HTTP/2 preface"));
                        }
                        self.read = ReadState::Head(0);
                    }
                }
                ReadState::Head(got) => {
                    let Poll::Ready(n) =
                        Self::poll_read_into(&mut self.io, cx, &mut self.head[*got..9])?
                    else {
                        return Ok(Poll::Pending);
                    };
                    if n == 0 {
                        return if *got == 0 {
                            Ok(Poll::Ready(None))
                        } else {
                            Err(eof())
                        };
                    }
                    *got += n;
                    if *got == 9 {
                        let mut bytes = [0; 9];
                        bytes.copy_from_slice(&self.head[..9]);
                        let head = Head::parse(&bytes);
                        if head.len > frame::MIN_MAX_FRAME_SIZE {
                            return Err(Fail::Conn(
                                Code::FrameSize,
                                "frame larger than SETTINGS_MAX_FRAME_SIZE",
                            ));
                        }
                        if head.len == 0 {
                            self.read = ReadState::Head(0);
                            return Ok(Poll::Ready(Some((head, Bytes::new()))));
                        }
                        self.read = ReadState::Payload(head, vec![0; head.len], 0);
                    }
                }
                ReadState::Payload(head, buf, got) => {
                    let Poll::Ready(n) = Self::poll_read_into(&mut self.io, cx, &mut buf[*got..])?
                    else {
                        return Ok(Poll::Pending);
                    };
                    if n == 0 {
                        return Err(eof());
                    }
                    *got += n;
                    if *got == buf.len() {
                        let head = *head;
                        let payload = Bytes::from(std::mem::take(buf));
                        self.read = ReadState::Head(0);
                        return Ok(Poll::Ready(Some((head, payload))));
                    }
                }
            }
        }
    }

    fn find(&self, id: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.id == id)
    }

    /// Drops stream `i`; what its body held unread (or read since the last look) is
    /// the connection's to credit back, else the connection window would shrink for good.
    fn remove_stream(&mut self, i: usize) {
        let s = self.streams.remove(i);
        self.conn_credit += lock(&s.inbox).close();
    }

    fn reset_stream(&mut self, id: u32, code: Code) {
        frame::rst_stream(&mut self.scratch, id, code);
        if let Some(i) = self.find(id) {
            self.remove_stream(i);
        }
    }

    /// Queues what `scratch` holds, then `bytes`.
    fn push_out(&mut self, bytes: Bytes) {
        self.take_scratch();
        self.out_len += bytes.len();
        self.out.push_back(bytes);
    }

    fn take_scratch(&mut self) {
        if !self.scratch.is_empty() {
            let head = self.scratch.split().freeze();
            self.out_len += head.len();
            self.out.push_back(head);
        }
    }

    /// Writes the queue until it is empty or the socket is full.
    fn write_out(&mut self, cx: &mut Context<'_>) -> Result<bool, Fail> {
        self.take_scratch();
        let mut progress = false;
        while !self.out.is_empty() {
            let mut slices = [io::IoSlice::new(&[]); 16];
            let mut n = 0;
            for (slot, b) in slices.iter_mut().zip(&self.out) {
                *slot = io::IoSlice::new(b);
                n += 1;
            }
            let written = match Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(r) => r?,
                Poll::Pending => return Ok(progress),
            };
            if written == 0 {
                return Err(Fail::Io(io::ErrorKind::WriteZero.into()));
            }
            progress = true;
            self.needs_flush = true;
            self.out_len -= written;
            let mut left = written;
            while left > 0 {
                let front = self.out.front_mut().expect("written bytes were queued");
                if front.len() <= left {
                    left -= front.len();
                    self.out.pop_front();
                } else {
                    let _ = front.split_to(left);
                    left = 0;
                }
            }
        }
        if self.needs_flush {
            match Pin::new(&mut self.io).poll_flush(cx) {
                Poll::Ready(r) => {
                    r?;
                    self.needs_flush = false;
                }
                Poll::Pending => return Ok(progress),
            }
        }
        Ok(progress)
    }
}
