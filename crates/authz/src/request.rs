//! The part of Envoy's `CheckRequest` this service reads (the request's headers and
//! the Route's `context_extensions`), found in the received bytes without decoding
//! the rest. The generated message decodes both maps into `HashMap`s of owned strings
//! (a hasher seeded, a table grown and two allocations per entry) and every other
//! field too: that was a tenth of a cache-hit Check's CPU. Here the call keeps the
//! `attributes` bytes tonic received (shared, not copied) and one list of where each
//! map entry's key and value lie in them.
//!
//! The field numbers are those of `envoy.service.auth.v3.CheckRequest`; a protobuf
//! `map<string, string>` is on the wire a repeated message of key (1) and value (2).
//! Fields this service does not read are skipped unparsed, so a malformed one there (a
//! non-UTF-8 `path`, say) is not refused as the generated message would refuse it;
//! the two maps are validated the same way (UTF-8 keys and values), except that a map
//! entry must be sent length-delimited, as protobuf says (prost's map decoding also
//! takes one tagged with another wire type).
use std::collections::HashMap;

use prost::DecodeError;
use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{
    DecodeContext, WireType, check_wire_type, decode_key, decode_varint, encode_key, encode_varint,
    encoded_len_varint, skip_field,
};

/// Looking a key up in a decoded map.
pub trait Pairs {
    /// Named apart from `get`, which a slice already has with another meaning.
    fn value(&self, key: &str) -> Option<&str>;
}

impl Pairs for HashMap<String, String> {
    fn value(&self, key: &str) -> Option<&str> {
        HashMap::get(self, key).map(String::as_str)
    }
}

/// `CheckRequest` as the gRPC server receives it: its `attributes` (field 1) bytes and
/// where the header and context entries lie in them.
#[derive(Debug, Clone, Default)]
pub struct CheckCall {
    /// Every occurrence of `attributes`, concatenated (protobuf merges a message field
    /// sent twice as if its encodings were one); `None` when it was never sent.
    attributes: Option<Bytes>,
    entries: Vec<Entry>,
}

/// Which map an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Map {
    Headers,
    Context,
}

/// One map entry: byte ranges of its key and value in [`CheckCall::attributes`].
#[derive(Debug, Clone, Copy)]
struct Entry {
    map: Map,
    key: (u32, u32),
    value: (u32, u32),
}

/// The messages on the way down to the two maps.
#[derive(Clone, Copy)]
enum Level {
    /// `AttributeContext`: `request` (4), `context_extensions` (10).
    Attributes,
    /// `AttributeContext.Request`: `http` (2).
    Request,
    /// `AttributeContext.HttpRequest`: `headers` (3).
    Http,
}

/// Entries a Check usually carries (a dozen headers and seven context keys): the list
/// is allocated once at this size.
const TYPICAL_ENTRIES: usize = 32;

impl CheckCall {
    pub fn headers(&self) -> MapView<'_> {
        MapView {
            call: self,
            map: Map::Headers,
        }
    }

    pub fn context(&self) -> MapView<'_> {
        MapView {
            call: self,
            map: Map::Context,
        }
    }

    fn bytes(&self, (from, to): (u32, u32)) -> &[u8] {
        self.attributes
            .as_ref()
            .and_then(|a| a.get(from as usize..to as usize))
            .unwrap_or_default()
    }

    /// One more occurrence of `attributes`: its entries are appended in wire order.
    fn merge_attributes(&mut self, more: Bytes) -> Result<(), DecodeError> {
        let (all, from) = match self.attributes.take() {
            None => (more, 0),
            // Never from Envoy; copied once so every range points into one buffer.
            Some(had) => {
                let from = had.len();
                (Bytes::from([&had[..], &more[..]].concat()), from)
            }
        };
        if u32::try_from(all.len()).is_err() {
            return Err(error("CheckRequest.attributes over 4 GiB"));
        }
        if self.entries.capacity() == 0 {
            self.entries.reserve(TYPICAL_ENTRIES);
        }
        walk(&all, from, all.len(), Level::Attributes, &mut self.entries)?;
        self.attributes = Some(all);
        Ok(())
    }
}

impl Level {
    /// What field `tag` of this message leads to: a message further down, or a map's
    /// entry; `None` for a field this service does not read.
    fn below(self, tag: u32) -> Option<Result<Level, Map>> {
        match (self, tag) {
            (Level::Attributes, 4) => Some(Ok(Level::Request)),
            (Level::Attributes, 10) => Some(Err(Map::Context)),
            (Level::Request, 2) => Some(Ok(Level::Http)),
            (Level::Http, 3) => Some(Err(Map::Headers)),
            _ => None,
        }
    }
}

/// Reads the fields of the message at `all[from..to]`, a `level`, recording the map
/// entries below it and skipping everything else.
fn walk(
    all: &[u8],
    from: usize,
    to: usize,
    level: Level,
    out: &mut Vec<Entry>,
) -> Result<(), DecodeError> {
    fields(
        all,
        from,
        to,
        |tag| level.below(tag),
        |next, start, end| match next {
            Ok(level) => walk(all, start, end, level, out),
            Err(map) => {
                out.push(entry(all, start, end, map)?);
                Ok(())
            }
        },
    )
}

/// One `map<string, string>` entry at `all[from..to]`: the last key and value sent
/// win, an absent one is empty, both must be UTF-8 (as the generated decode checks).
fn entry(all: &[u8], from: usize, to: usize, map: Map) -> Result<Entry, DecodeError> {
    // In range: `merge_attributes` refused buffers past u32.
    let empty = (from as u32, from as u32);
    let (mut key, mut value) = (empty, empty);
    let wanted = |tag| matches!(tag, 1 | 2).then_some(tag);
    fields(all, from, to, wanted, |tag, start, end| {
        if std::str::from_utf8(&all[start..end]).is_err() {
            return Err(error("invalid string value: data is not UTF-8 encoded"));
        }
        let slot = if tag == 1 { &mut key } else { &mut value };
        *slot = (start as u32, end as u32);
        Ok(())
    })?;
    Ok(Entry { map, key, value })
}

/// Calls `found` with what `wanted` makes of a field's tag and with the field's bounds
/// (in `all`), for each field of the message at `all[from..to]` that `wanted` keeps,
/// in wire order; such a field must be length-delimited. Every other field is skipped
/// as protobuf says.
fn fields<T>(
    all: &[u8],
    from: usize,
    to: usize,
    wanted: impl Fn(u32) -> Option<T>,
    mut found: impl FnMut(T, usize, usize) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let mut buf = &all[from..to];
    while buf.has_remaining() {
        let (tag, wire_type) = decode_key(&mut buf)?;
        let Some(what) = wanted(tag) else {
            skip_field(wire_type, tag, &mut buf, DecodeContext::default())?;
            continue;
        };
        check_wire_type(WireType::LengthDelimited, wire_type)?;
        let len = decode_varint(&mut buf)?;
        if len > buf.len() as u64 {
            return Err(error("buffer underflow"));
        }
        // `buf` always ends at `to`.
        let start = to - buf.len();
        buf.advance(len as usize);
        found(what, start, start + len as usize)?;
    }
    Ok(())
}

/// prost has no other public way to make a decode error of one's own.
#[allow(deprecated)]
fn error(what: &'static str) -> DecodeError {
    DecodeError::new(what)
}

/// One of a [`CheckCall`]'s two maps.
#[derive(Clone, Copy)]
pub struct MapView<'a> {
    call: &'a CheckCall,
    map: Map,
}

impl<'a> MapView<'a> {
    /// The entries as sent (a key sent twice appears twice), each as raw bytes.
    pub fn raw(&self) -> impl DoubleEndedIterator<Item = (&'a [u8], &'a [u8])> + use<'a> {
        let (call, map) = (self.call, self.map);
        call.entries
            .iter()
            .filter(move |e| e.map == map)
            .map(move |e| (call.bytes(e.key), call.bytes(e.value)))
    }

    /// The entries as sent, as text (validated when decoded).
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&'a str, &'a str)> + use<'a> {
        self.raw().map(|(k, v)| (text(k), text(v)))
    }

    /// Entries sent, a repeated key counted each time.
    pub fn len(&self) -> usize {
        self.raw().count()
    }

    pub fn is_empty(&self) -> bool {
        self.raw().next().is_none()
    }
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or_default()
}

impl Pairs for MapView<'_> {
    /// The last entry of `key`, as a protobuf map keeps the last one decoded.
    fn value(&self, key: &str) -> Option<&str> {
        self.raw()
            .rev()
            .find(|(k, _)| *k == key.as_bytes())
            .map(|(_, v)| text(v))
    }
}

impl prost::Message for CheckCall {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if let Some(a) = &self.attributes {
            encode_key(1, WireType::LengthDelimited, buf);
            encode_varint(a.len() as u64, buf);
            buf.put_slice(a);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        if tag != 1 {
            return skip_field(wire_type, tag, buf, ctx);
        }
        check_wire_type(WireType::LengthDelimited, wire_type)?;
        let len = decode_varint(buf)?;
        if len > buf.remaining() as u64 {
            return Err(error("buffer underflow"));
        }
        // tonic's buffer hands these bytes over without a copy.
        self.merge_attributes(buf.copy_to_bytes(len as usize))
    }

    fn encoded_len(&self) -> usize {
        self.attributes
            .as_ref()
            .map_or(0, |a| 1 + encoded_len_varint(a.len() as u64) + a.len())
    }

    fn clear(&mut self) {
        *self = CheckCall::default();
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
