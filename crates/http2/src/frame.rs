//! HTTP/2 frames (RFC 9113 §4 and §6): the 9-byte head, the kinds and flags this server
//! reads, and the frames it writes.
use bytes::{BufMut, Bytes, BytesMut};

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

pub const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
pub const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;

/// The client's connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The smallest frame size every peer must accept, and the largest this server reads.
pub const MIN_MAX_FRAME_SIZE: usize = 16_384;
/// The largest frame size a peer may announce.
pub const MAX_MAX_FRAME_SIZE: u32 = 16_777_215;
/// The largest flow-control window (2^31 - 1).
pub const MAX_WINDOW: i64 = (1 << 31) - 1;
/// Every window starts here until SETTINGS or WINDOW_UPDATE say otherwise.
pub const DEFAULT_WINDOW: i64 = 65_535;

/// Error codes (RFC 9113 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    NoError = 0x0,
    Protocol = 0x1,
    Internal = 0x2,
    FlowControl = 0x3,
    StreamClosed = 0x5,
    FrameSize = 0x6,
    RefusedStream = 0x7,
    Compression = 0x9,
    EnhanceYourCalm = 0xb,
}

/// A frame's head.
#[derive(Clone, Copy, Debug)]
pub struct Head {
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Head {
    pub fn parse(b: &[u8; 9]) -> Head {
        Head {
            len: (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            // The reserved bit is ignored on receipt.
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// Writes a frame's head; `len` must fit 24 bits (callers split larger payloads).
pub fn put_head(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream: u32) {
    debug_assert!(len < 1 << 24);
    out.put_u8((len >> 16) as u8);
    out.put_u8((len >> 8) as u8);
    out.put_u8(len as u8);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream & 0x7fff_ffff);
}

pub fn settings(out: &mut BytesMut, values: &[(u16, u32)]) {
    put_head(out, values.len() * 6, SETTINGS, 0, 0);
    for &(id, value) in values {
        out.put_u16(id);
        out.put_u32(value);
    }
}

pub fn settings_ack(out: &mut BytesMut) {
    put_head(out, 0, SETTINGS, ACK, 0);
}

pub fn ping(out: &mut BytesMut, ack: bool, payload: [u8; 8]) {
    put_head(out, 8, PING, if ack { ACK } else { 0 }, 0);
    out.put_slice(&payload);
}

/// GOAWAY; `debug` says why in words (RFC 9113 §6.8's debug data), so the peer's logs
/// name the bound it hit, not only the code.
pub fn goaway(out: &mut BytesMut, last_stream: u32, code: Code, debug: &str) {
    put_head(out, 8 + debug.len(), GOAWAY, 0, 0);
    out.put_u32(last_stream);
    out.put_u32(code as u32);
    out.put_slice(debug.as_bytes());
}

pub fn rst_stream(out: &mut BytesMut, stream: u32, code: Code) {
    put_head(out, 4, RST_STREAM, 0, stream);
    out.put_u32(code as u32);
}

pub fn window_update(out: &mut BytesMut, stream: u32, increment: u32) {
    put_head(out, 4, WINDOW_UPDATE, 0, stream);
    out.put_u32(increment & 0x7fff_ffff);
}

/// A header block as one HEADERS frame and as many CONTINUATION frames as
/// `max_frame` calls for.
pub fn headers(out: &mut BytesMut, stream: u32, block: &[u8], end_stream: bool, max_frame: usize) {
    let mut pieces = block.chunks(max_frame.max(1)).peekable();
    let mut kind = HEADERS;
    let mut flags = if end_stream { END_STREAM } else { 0 };
    if block.is_empty() {
        put_head(out, 0, kind, flags | END_HEADERS, stream);
        return;
    }
    while let Some(piece) = pieces.next() {
        if pieces.peek().is_none() {
            flags |= END_HEADERS;
        }
        put_head(out, piece.len(), kind, flags, stream);
        out.put_slice(piece);
        kind = CONTINUATION;
        flags = 0;
    }
}

/// The payload without its padding (and, for HEADERS, without the priority fields).
pub fn unpad(head: &Head, mut payload: Bytes) -> Result<Bytes, Code> {
    if head.has(PADDED) {
        let Some(&pad) = payload.first() else {
            return Err(Code::Protocol);
        };
        let pad = usize::from(pad);
        if pad >= payload.len() {
            return Err(Code::Protocol);
        }
        payload.truncate(payload.len() - pad);
        payload = payload.slice(1..);
    }
    if head.kind == HEADERS && head.has(PRIORITY_FLAG) {
        if payload.len() < 5 {
            return Err(Code::FrameSize);
        }
        payload = payload.slice(5..);
    }
    Ok(payload)
}

/// A 4-byte payload as a 31-bit value (WINDOW_UPDATE) or a code (RST_STREAM).
pub fn read_u32(payload: &[u8]) -> Option<u32> {
    let b: [u8; 4] = payload.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}
