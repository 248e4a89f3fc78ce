//! What a hostile or broken client sends, frame by frame over a raw socket, and what
//! the server must answer: GOAWAY with the right code for connection errors,
//! RST_STREAM for stream errors (the connection then goes on), nothing unbounded.
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{PATH, Server};
use portcullis_http2::Limits;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;
const END_STREAM: u8 = 1;
const END_HEADERS: u8 = 4;

const PROTOCOL_ERROR: u32 = 1;
const FLOW_CONTROL_ERROR: u32 = 3;
const FRAME_SIZE_ERROR: u32 = 6;
const REFUSED_STREAM: u32 = 7;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// Long enough for a busy machine; every wait ends as soon as the frame comes.
const WAIT: Duration = Duration::from_secs(20);

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

struct Raw(TcpStream);

impl Raw {
    /// Connected, preface and an empty SETTINGS sent.
    async fn open(addr: SocketAddr) -> Raw {
        let mut raw = Raw::bare(addr).await;
        raw.0
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        raw.send(SETTINGS, 0, 0, &[]).await;
        raw
    }

    async fn bare(addr: SocketAddr) -> Raw {
        Raw(TcpStream::connect(addr).await.unwrap())
    }

    async fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let _ = self
            .0
            .write_all(&encode(kind, flags, stream, payload))
            .await;
    }

    /// The next frame; `None` once the server has closed.
    async fn frame(&mut self) -> Option<Frame> {
        read_frame(&mut self.0).await
    }

    /// The next frame of `kind` (others skipped); `None` if the server closed first.
    async fn next(&mut self, kind: u8) -> Option<Frame> {
        loop {
            let f = self.frame().await?;
            if f.kind == kind {
                return Some(f);
            }
        }
    }

    /// The GOAWAY's error code; the connection must then close.
    async fn goaway_code(&mut self) -> u32 {
        self.goaway().await.0
    }

    /// The GOAWAY's error code and debug text; the connection must then close.
    async fn goaway(&mut self) -> (u32, String) {
        let f = self.next(GOAWAY).await.expect("a GOAWAY before the close");
        let code = u32::from_be_bytes(f.payload[4..8].try_into().unwrap());
        let debug = String::from_utf8_lossy(&f.payload[8..]).into_owned();
        while self.frame().await.is_some() {}
        (code, debug)
    }

    /// The connection still answers a PING.
    async fn assert_alive(&mut self) {
        self.send(PING, 0, 0, b"are-you?").await;
        let f = self.next(PING).await.expect("a PING ACK");
        assert_eq!((f.flags, &f.payload[..]), (1, &b"are-you?"[..]));
    }
}

/// The next frame from `r`; `None` once the server has closed.
async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> Option<Frame> {
    tokio::time::timeout(WAIT, async {
        let mut head = [0u8; 9];
        r.read_exact(&mut head).await.ok()?;
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let mut payload = vec![0; len];
        r.read_exact(&mut payload).await.ok()?;
        Some(Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]),
            payload,
        })
    })
    .await
    .expect("the server answers or closes in time")
}

fn encode(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A literal field without indexing (`index` = false) or with incremental indexing.
fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8], index: bool) {
    out.push(if index { 0x40 } else { 0x00 });
    for s in [name, value] {
        assert!(s.len() < 127, "short strings only in this helper");
        out.push(s.len() as u8);
        out.extend_from_slice(s);
    }
}

fn request(path: &str) -> Vec<u8> {
    let mut b = Vec::new();
    field(&mut b, b":method", b"POST", false);
    field(&mut b, b":scheme", b"http", false);
    field(&mut b, b":authority", b"test", false);
    field(&mut b, b":path", path.as_bytes(), false);
    field(&mut b, b"content-type", b"application/grpc", false);
    b
}

fn u32_payload(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

#[tokio::test]
async fn a_client_without_the_preface_gets_protocol_error() {
    let server = Server::start(Limits::default()).await;
    let mut raw = Raw::bare(server.addr).await;
    raw.0
        .write_all(b"GET / HTTP/1.1\r\nHost: portcullis\r\n\r\n")
        .await
        .unwrap();
    // The debug data says why in the server's words, never echoing what the peer sent.
    assert_eq!(
        raw.goaway().await,
        (PROTOCOL_ERROR, "not the HTTP/2 preface".to_owned())
    );
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_preface_timeout() {
    let server = Server::start(Limits {
        preface_timeout: Duration::from_millis(200),
        ..Limits::default()
    })
    .await;
    let mut raw = Raw::bare(server.addr).await;
    assert_eq!(
        raw.goaway().await,
        (PROTOCOL_ERROR, "no preface and SETTINGS in time".to_owned())
    );
}

#[tokio::test]
async fn a_client_trickling_its_preface_is_still_closed_at_the_deadline() {
    // The server reads what has come before it looks at its timer: a slow-loris client
    // sending a byte at a time must not keep the connection open past the deadline.
    let server = Server::start(Limits {
        preface_timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let mut raw = Raw::bare(server.addr).await;
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    for byte in &preface[..preface.len() - 1] {
        if raw.0.write_all(&[*byte]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        raw.goaway().await,
        (PROTOCOL_ERROR, "no preface and SETTINGS in time".to_owned())
    );
}

#[tokio::test]
async fn a_frame_over_16_kib_is_a_frame_size_error() {
    let server = Server::start(Limits::default()).await;
    let mut raw = Raw::open(server.addr).await;
    raw.send(HEADERS, END_HEADERS, 1, &vec![0; 20_000]).await;
    assert_eq!(raw.goaway_code().await, FRAME_SIZE_ERROR);
}

#[tokio::test]
async fn endless_continuation_frames_are_cut_off() {
    let server = Server::start(Limits::default()).await;
    let mut raw = Raw::open(server.addr).await;
    raw.send(HEADERS, 0, 1, &[0x00; 1000]).await;
    for _ in 0..40 {
        raw.send(CONTINUATION, 0, 1, &[0x00; 1000]).await;
    }
    assert_eq!(raw.goaway_code().await, ENHANCE_YOUR_CALM);
}

#[tokio::test]
async fn a_window_pushed_past_2_31_is_a_flow_control_error() {
    let server = Server::start(Limits::default()).await;
    let mut raw = Raw::open(server.addr).await;
    raw.send(WINDOW_UPDATE, 0, 0, &u32_payload(0x7fff_ffff))
        .await;
    assert_eq!(raw.goaway_code().await, FLOW_CONTROL_ERROR);
}

#[tokio::test]
async fn data_on_a_stream_never_opened_is_a_protocol_error() {
    let server = Server::start(Limits::default()).await;
    let mut raw = Raw::open(server.addr).await;
    raw.send(DATA, 0, 7, b"hello").await;
    assert_eq!(raw.goaway_code().await, PROTOCOL_ERROR);
}

#[tokio::test]
async fn rapid_reset_closes_the_connection() {
    let server = Server::start(Limits::default()).await;
    let mut raw = Raw::open(server.addr).await;
    let block = request(PATH);
    let mut burst = Vec::new();
    for i in 0..150u32 {
        let id = 2 * i + 1;
        burst.extend(encode(HEADERS, END_HEADERS, id, &block));
        burst.extend(encode(RST_STREAM, 0, id, &u32_payload(8)));
    }
    let _ = raw.0.write_all(&burst).await;
    assert_eq!(raw.goaway_code().await, ENHANCE_YOUR_CALM);
}

#[tokio::test]
async fn streams_past_the_limit_are_refused_and_the_others_served() {
    let server = Server::start(Limits {
        max_concurrent_streams: 2,
        ..Limits::default()
    })
    .await;
    let mut raw = Raw::open(server.addr).await;
    for id in [1, 3, 5] {
        raw.send(HEADERS, END_HEADERS, id, &request(PATH)).await;
    }
    let mut answered = Vec::new();
    let mut refused = None;
    while answered.len() < 2 || refused.is_none() {
        let f = raw.frame().await.expect("the connection stays open");
        match f.kind {
            HEADERS => answered.push(f.stream),
            RST_STREAM => {
                refused = Some((
                    f.stream,
                    u32::from_be_bytes(f.payload[..4].try_into().unwrap()),
                ))
            }
            _ => {}
        }
    }
    answered.sort();
    assert_eq!(answered, vec![1, 3]);
    assert_eq!(refused, Some((5, REFUSED_STREAM)));
}

#[tokio::test]
async fn data_past_the_stream_window_resets_only_that_stream() {
    let server = Server::start(Limits {
        stream_window: 1000,
        ..Limits::default()
    })
    .await;
    let mut raw = Raw::open(server.addr).await;
    raw.send(HEADERS, END_HEADERS, 1, &request(PATH)).await;
    raw.send(DATA, 0, 1, &[0; 1500]).await;
    let f = raw.next(RST_STREAM).await.expect("a reset");
    assert_eq!(
        (f.stream, &f.payload[..]),
        (1, &u32_payload(FLOW_CONTROL_ERROR)[..])
    );
    raw.assert_alive().await;
}

#[tokio::test]
async fn a_malformed_request_resets_its_stream_only() {
    let server = Server::start(Limits::default()).await;
    let mut raw = Raw::open(server.addr).await;
    let mut block = request(PATH);
    field(&mut block, b"X-Forged-Identity", b"admin", false);
    raw.send(HEADERS, END_HEADERS | END_STREAM, 1, &block).await;
    let f = raw.next(RST_STREAM).await.expect("a reset");
    assert_eq!(
        (f.stream, &f.payload[..]),
        (1, &u32_payload(PROTOCOL_ERROR)[..])
    );
    raw.assert_alive().await;
}

#[tokio::test]
async fn an_hpack_bomb_is_answered_431_and_the_connection_goes_on() {
    let server = Server::start(Limits::default()).await;
    let mut raw = Raw::open(server.addr).await;
    // Stream 1 puts a 4,000-byte field into the dynamic table; stream 3 names it five
    // times, one byte each: 20 KB decoded from a block of a few dozen bytes.
    let mut first = request("/test.Echo/Other");
    first.push(0x40);
    first.push(6);
    first.extend_from_slice(b"x-bomb");
    first.extend_from_slice(&[
        0x7f,
        0x80 + ((4000 - 127) % 128) as u8,
        ((4000 - 127) / 128) as u8,
    ]);
    first.extend_from_slice(&[b'b'; 4000]);
    raw.send(HEADERS, END_HEADERS | END_STREAM, 1, &first).await;
    let mut second = request("/test.Echo/Other");
    second.extend_from_slice(&[0x80 | 62; 5]);
    raw.send(HEADERS, END_HEADERS | END_STREAM, 3, &second)
        .await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let f = raw.next(HEADERS).await.expect("both streams answered");
        let mut fields = Vec::new();
        loona_hpack::Decoder::new()
            .decode_with_cb(&f.payload, |n, v| {
                fields.push((n.into_owned(), v.into_owned()))
            })
            .unwrap();
        seen.push((f.stream, fields[0].1.clone(), f.flags & END_STREAM));
    }
    seen.sort();
    // Stream 1 gets the service's trailers-only answer (Unimplemented), in one frame.
    assert_eq!(seen[0], (1, b"200".to_vec(), END_STREAM));
    assert_eq!(seen[1], (3, b"431".to_vec(), END_STREAM));
    raw.assert_alive().await;
}

#[tokio::test]
async fn a_client_that_ignores_keepalive_pings_is_closed() {
    let server = Server::start(Limits {
        keepalive_interval: Duration::from_millis(100),
        keepalive_timeout: Duration::from_millis(100),
        ..Limits::default()
    })
    .await;
    let mut raw = Raw::open(server.addr).await;
    let ping = raw.next(PING).await.expect("a keep-alive PING");
    assert_eq!(ping.flags, 0);
    let _ = raw.goaway_code().await;
}

#[tokio::test]
async fn data_left_unread_by_a_reset_stream_is_credited_back_to_the_connection() {
    // One connection window (the protocol's 65,535 bytes) and streams reset with their
    // data unread: unless the server credits that data back, the third round would
    // wait for a WINDOW_UPDATE forever.
    let server = Server::start(Limits {
        connection_window: 65_535,
        stream_window: 65_535,
        ..Limits::default()
    })
    .await;
    let mut raw = Raw::open(server.addr).await;
    for round in 0..3u32 {
        let id = 2 * round + 1;
        let mut burst = encode(HEADERS, END_HEADERS, id, &request(PATH));
        for _ in 0..4 {
            burst.extend(encode(DATA, 0, id, &[9; 10_000]));
        }
        burst.extend(encode(RST_STREAM, 0, id, &u32_payload(8)));
        raw.0.write_all(&burst).await.unwrap();
        loop {
            let f = raw.frame().await.expect("the connection stays open");
            assert_ne!(f.kind, GOAWAY, "round {round}");
            if f.kind == WINDOW_UPDATE && f.stream == 0 {
                let inc = u32::from_be_bytes(f.payload[..4].try_into().unwrap());
                assert_eq!(inc, 40_000, "round {round}: every unread byte comes back");
                break;
            }
        }
    }
    raw.assert_alive().await;
}

/// More than the kernel can buffer on one loopback connection, both ways: the send and
/// receive buffers of each end, at their autotuning maxima (or 64 MiB if unknown).
fn socket_buffers_bound() -> usize {
    let max = |file: &str| -> Option<usize> {
        let text = std::fs::read_to_string(file).ok()?;
        text.split_whitespace().nth(2)?.parse().ok()
    };
    match (
        max("/proc/sys/net/ipv4/tcp_rmem"),
        max("/proc/sys/net/ipv4/tcp_wmem"),
    ) {
        (Some(r), Some(w)) => 2 * (r + w) + (1 << 20),
        _ => 64 << 20,
    }
}

#[tokio::test]
async fn a_ping_flood_from_a_client_that_never_reads_stops_being_read() {
    // Each PING calls for an ACK the client does not read. Once the sockets' buffers
    // and the server's 64 KiB output bound are full, the server must stop reading, so
    // the client's writes stall: a server that read on would queue ACKs without end.
    const PING_LEN: usize = 17;
    // No keep-alive PING of the server's own goes unanswered while the client is deaf.
    let server = Server::start(Limits {
        keepalive_interval: Duration::from_secs(600),
        ..Limits::default()
    })
    .await;
    let mut raw = Raw::open(server.addr).await;
    let bound = socket_buffers_bound();
    let chunk = encode(PING, 0, 0, b"flooding").repeat(61_680);
    let mut written = 0usize;
    loop {
        let off = written % chunk.len();
        let Ok(n) = tokio::time::timeout(Duration::from_secs(3), raw.0.write(&chunk[off..])).await
        else {
            break;
        };
        written += n.expect("the server keeps the connection open");
        assert!(
            written <= bound,
            "{written} bytes of PINGs were read while their ACKs went unread (bound {bound})"
        );
    }
    // Now the client reads: every PING is answered, none is dropped, the connection
    // stays open. The frame the stall cut is finished first, then a last PING.
    let (mut rd, mut wr) = raw.0.split();
    let rest = (PING_LEN - written % PING_LEN) % PING_LEN;
    let pings = (written + rest) / PING_LEN;
    let write = async {
        let off = written % chunk.len();
        wr.write_all(&chunk[off..off + rest]).await.unwrap();
        wr.write_all(&encode(PING, 0, 0, b"the-end!"))
            .await
            .unwrap();
    };
    let read = async {
        let mut acks = 0usize;
        loop {
            let f = read_frame(&mut rd)
                .await
                .expect("the connection stays open");
            assert_ne!(f.kind, GOAWAY);
            if f.kind == PING && f.flags == 1 {
                match &f.payload[..] {
                    b"flooding" => acks += 1,
                    b"the-end!" => return acks,
                    other => panic!("a PING ACK with payload {other:?}"),
                }
            }
        }
    };
    let ((), acks) = tokio::join!(write, read);
    assert_eq!(acks, pings, "every PING of the flood is answered");
}
