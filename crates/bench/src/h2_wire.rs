//! HTTP/2 framing for the benchmark's own clients (`frame_load`, `ads_frames`), which
//! write frames themselves so that what they cost stays small beside the server they
//! measure. Only what a client sends: frames, window updates, one fixed request
//! header block.
use anyhow::Context;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const MAX_WINDOW: u32 = (1 << 31) - 1;
pub const DEFAULT_WINDOW: u32 = 65_535;

/// A frame read from the peer.
pub struct Frame<'a> {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: &'a [u8],
}

/// The whole frame at the start of `input` and how many bytes it took; `None` while
/// the frame is still partial.
pub fn next_frame(input: &[u8]) -> Option<(Frame<'_>, usize)> {
    let h = input.get(..9)?;
    let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
    let payload = input.get(9..9 + len)?;
    let frame = Frame {
        kind: h[3],
        flags: h[4],
        stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & MAX_WINDOW,
        payload,
    };
    Some((frame, 9 + len))
}

/// The payload of a DATA frame without its padding.
pub fn unpadded(flags: u8, payload: &[u8]) -> anyhow::Result<&[u8]> {
    if flags & 0x8 == 0 {
        return Ok(payload);
    }
    let pad = usize::from(*payload.first().context("empty padded frame")?);
    payload
        .get(1..payload.len().saturating_sub(pad))
        .context("padding longer than the frame")
}

pub fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// More room in a receive window: the connection's (`stream` 0) or a stream's.
pub fn window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    frame(out, 8, 0, stream, &increment.to_be_bytes());
}

/// A gRPC request's header block, the same for every call: HPACK literals without
/// indexing (so the server's table never changes) and static-table names.
pub fn request_block(path: &str, authority: &str) -> Vec<u8> {
    // :method POST (static 3), :scheme http (static 6).
    let mut b = vec![0x83, 0x86];
    for (name, value) in [(4, path), (1, authority), (31, "application/grpc")] {
        integer(&mut b, 0, 4, name);
        string(&mut b, value);
    }
    b.push(0);
    string(&mut b, "te");
    string(&mut b, "trailers");
    b
}

fn string(out: &mut Vec<u8>, s: &str) {
    integer(out, 0, 7, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// RFC 7541 §5.1: `value` in a `prefix`-bit prefix after `flags`, then 7 bits a byte.
fn integer(out: &mut Vec<u8>, flags: u8, prefix: u32, value: usize) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

#[cfg(test)]
#[path = "h2_wire_tests.rs"]
mod tests;
