//! The protobuf of ADS requests and responses, written and read by hand for the
//! frame-level clients (`ads_frames`): requests are assembled from bytes encoded once
//! (the ~50 KiB EDS name list is the same for every client), and responses are read as
//! they stream in, keeping only the version, type and nonce an ACK needs and skipping
//! the resources without buffering them.
use anyhow::ensure;
use envoy_types::pb::envoy::config::core::v3::Node;
use prost::Message;

/// What an ACK needs of a response: `DiscoveryResponse` fields 1, 4 and 5 (Delta's
/// `system_version_info`, `type_url` and `nonce` have the same numbers).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Answer {
    pub version: String,
    pub type_url: String,
    pub nonce: String,
}

/// Fields longer than this are skipped, not kept: a version, type or nonce is short.
const KEPT_MAX: usize = 1024;
/// A gRPC message may not claim more than this (the server's own limit is lower).
const MESSAGE_MAX: usize = 64 << 20;

/// Reads gRPC-framed responses from a stream's DATA, in whatever pieces they come.
#[derive(Default)]
pub struct Responses {
    /// Bytes of a gRPC prefix or a field's key and length not yet whole.
    head: Vec<u8>,
    /// Bytes of the current message not yet read; `None` between messages.
    left: Option<usize>,
    /// Bytes of the current field's value still to come.
    skip: usize,
    /// The field being kept, if the current value is one.
    keeping: Option<u32>,
    kept: Vec<u8>,
    answer: Answer,
}

impl Responses {
    /// Feeds `data`; each response completed by it is pushed onto `out`.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<Answer>) -> anyhow::Result<()> {
        while !data.is_empty() {
            let Some(left) = self.left else {
                self.head.push(data[0]);
                data = &data[1..];
                if self.head.len() == 5 {
                    ensure!(self.head[0] == 0, "a compressed gRPC message");
                    let len = u32::from_be_bytes([
                        self.head[1],
                        self.head[2],
                        self.head[3],
                        self.head[4],
                    ]) as usize;
                    ensure!(len <= MESSAGE_MAX, "a gRPC message of {len} bytes");
                    self.head.clear();
                    self.left = Some(len);
                    self.done_if_empty(out);
                }
                continue;
            };
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                if self.keeping.is_some() {
                    self.kept.extend_from_slice(&data[..n]);
                }
                self.skip -= n;
                self.left = Some(left - n);
                data = &data[n..];
                if self.skip == 0 {
                    self.keep();
                    self.done_if_empty(out);
                }
                continue;
            }
            // Between fields: a key (and a length) one byte at a time; there are few.
            self.head.push(data[0]);
            data = &data[1..];
            self.left = Some(left - 1);
            let Some((tag, len)) = field_head(&self.head)? else {
                ensure!(left > 1, "a message ends inside a field's key");
                continue;
            };
            self.head.clear();
            ensure!(len < left, "a field of {len} bytes in a message of {left}");
            self.skip = len;
            self.keeping = [1, 4, 5]
                .contains(&tag)
                .then_some(tag)
                .filter(|_| len <= KEPT_MAX);
            if len == 0 {
                self.keep();
            }
            self.done_if_empty(out);
        }
        Ok(())
    }

    fn keep(&mut self) {
        if let Some(tag) = self.keeping.take() {
            let value = String::from_utf8_lossy(&self.kept).into_owned();
            match tag {
                1 => self.answer.version = value,
                4 => self.answer.type_url = value,
                _ => self.answer.nonce = value,
            }
        }
        self.kept.clear();
    }

    fn done_if_empty(&mut self, out: &mut Vec<Answer>) {
        if self.left == Some(0) && self.skip == 0 {
            self.left = None;
            out.push(std::mem::take(&mut self.answer));
        }
    }
}

/// A field's number and how many value bytes follow its head, once `head` holds the
/// whole head; `None` while it is still partial.
fn field_head(head: &[u8]) -> anyhow::Result<Option<(u32, usize)>> {
    let Some((key, used)) = varint(head)? else {
        return Ok(None);
    };
    let tag = (key >> 3) as u32;
    let len = match key & 7 {
        // A varint's value is in the head already: nothing follows it.
        0 => match varint(&head[used..])? {
            Some(_) => 0,
            None => return Ok(None),
        },
        1 => 8,
        2 => match varint(&head[used..])? {
            Some((len, _)) => usize::try_from(len)?,
            None => return Ok(None),
        },
        5 => 4,
        w => anyhow::bail!("field {tag} has wire type {w}"),
    };
    Ok(Some((tag, len)))
}

/// A varint at the start of `b` and its length; `None` if `b` ends inside it.
fn varint(b: &[u8]) -> anyhow::Result<Option<(u64, usize)>> {
    let mut value = 0u64;
    for (i, byte) in b.iter().enumerate() {
        ensure!(i < 10, "a varint longer than ten bytes");
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    Ok(None)
}

/// Requests over SotW (`DiscoveryRequest`) or Delta (`DeltaDiscoveryRequest`).
pub struct Requests {
    pub delta: bool,
    /// The `resource_names` (Delta: `resource_names_subscribe`, also field 3) of each
    /// type that names its resources, encoded once.
    names: Vec<(&'static str, Vec<u8>)>,
}

impl Requests {
    pub fn new(delta: bool, names: &[(&'static str, Vec<String>)]) -> Requests {
        let names = names
            .iter()
            .map(|(t, list)| {
                let mut b = Vec::new();
                for n in list {
                    bytes_field(&mut b, 3, n.as_bytes());
                }
                (*t, b)
            })
            .collect();
        Requests { delta, names }
    }

    fn names(&self, type_url: &str) -> &[u8] {
        self.names
            .iter()
            .find(|(t, _)| *t == type_url)
            .map_or(&[], |(_, b)| b)
    }

    /// A client's first request for `type_url`, gRPC-framed onto `out`; the node goes
    /// on its first request of all.
    pub fn first(&self, out: &mut Vec<u8>, type_url: &str, node: Option<&Node>) {
        let mut m = Vec::new();
        if let Some(node) = node {
            bytes_field(
                &mut m,
                if self.delta { 1 } else { 2 },
                &node.encode_to_vec(),
            );
        }
        bytes_field(&mut m, if self.delta { 2 } else { 4 }, type_url.as_bytes());
        m.extend_from_slice(self.names(type_url));
        grpc(out, &m);
    }

    /// The ACK of `answer`, gRPC-framed onto `out`. Over SotW it repeats the names, as
    /// Envoy does; over Delta it carries the type and nonce only.
    pub fn ack(&self, out: &mut Vec<u8>, answer: &Answer) {
        let mut m = Vec::new();
        if self.delta {
            bytes_field(&mut m, 2, answer.type_url.as_bytes());
            bytes_field(&mut m, 6, answer.nonce.as_bytes());
        } else {
            bytes_field(&mut m, 1, answer.version.as_bytes());
            m.extend_from_slice(self.names(&answer.type_url));
            bytes_field(&mut m, 4, answer.type_url.as_bytes());
            bytes_field(&mut m, 5, answer.nonce.as_bytes());
        }
        grpc(out, &m);
    }
}

fn grpc(out: &mut Vec<u8>, message: &[u8]) {
    out.push(0);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
}

fn bytes_field(out: &mut Vec<u8>, tag: u32, value: &[u8]) {
    prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, out);
    prost::encoding::encode_varint(value.len() as u64, out);
    out.extend_from_slice(value);
}

#[cfg(test)]
#[path = "ads_wire_tests.rs"]
mod tests;
