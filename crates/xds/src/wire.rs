//! ADS responses that borrow the snapshot's encoded resources.
//!
//! A `DiscoveryResponse` owns a copy of every `Any` it carries, so each stream used to
//! hold its own copy of the whole configuration while a response waited to be written.
//! These types hold the snapshot's encodings (`Bytes`, reference-counted) and write the
//! same protobuf bytes: the resources exist once however many Envoys are connected, and
//! only the gRPC write buffer copies them, one response at a time per stream.

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryResponse, DiscoveryResponse};
use std::collections::VecDeque;

use prost::bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};

/// Field numbers of `DiscoveryResponse`, `DeltaDiscoveryResponse` and the delta `Resource`.
mod tag {
    pub const VERSION_INFO: u32 = 1;
    pub const RESOURCES: u32 = 2;
    pub const TYPE_URL: u32 = 4;
    pub const NONCE: u32 = 5;
    pub const REMOVED_RESOURCES: u32 = 6;
    pub const RESOURCE_VERSION: u32 = 1;
    pub const RESOURCE_BODY: u32 = 2;
    pub const RESOURCE_NAME: u32 = 3;
}

/// A State-of-the-World response.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct SotwResponse {
    pub(crate) version_info: String,
    pub(crate) resources: Carried<Bytes>,
    pub(crate) type_url: String,
    pub(crate) nonce: String,
}

/// The resources a response carries: each one (a SotW response's encoded `Any`, a delta
/// response's [`DeltaResource`]), or every resource of a type as the snapshot's one
/// block of `resources` fields ([`resource_fields`], [`delta_resource_fields`]). Every
/// Envoy of a fleet asks for every cluster, endpoint and listener, so the block is what
/// most responses carry: one shared allocation, where a list would cost each stream a
/// reference (and in Delta a name and version) per resource, and writing it would copy
/// every small resource.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Carried<T> {
    Each(Vec<T>),
    All { fields: Bytes, count: usize },
}

impl<T> Default for Carried<T> {
    fn default() -> Self {
        Carried::Each(Vec::new())
    }
}

impl<T> Carried<T> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Carried::Each(each) => each.len(),
            Carried::All { count, .. } => *count,
        }
    }
}

/// (name, version, encoded body) of each resource as consecutive
/// `DeltaDiscoveryResponse.resources` fields.
pub(crate) fn delta_resource_fields<'a>(
    entries: impl Iterator<Item = (&'a str, &'a str, &'a Bytes)> + Clone,
) -> Bytes {
    let len = entries
        .clone()
        .map(|(n, v, b)| bytes_len(tag::RESOURCES, delta_inner_len(n, v, b.len())))
        .sum();
    let mut buf = BytesMut::with_capacity(len);
    for (name, version, body) in entries {
        put_delta_resource(name, version, body, &mut Copying(&mut buf));
    }
    buf.freeze()
}

fn delta_inner_len(name: &str, version: &str, body: usize) -> usize {
    str_len(tag::RESOURCE_NAME, name)
        + str_len(tag::RESOURCE_VERSION, version)
        + bytes_len(tag::RESOURCE_BODY, body)
}

/// One `DeltaDiscoveryResponse.resources` field.
fn put_delta_resource<S: Sink>(name: &str, version: &str, body: &Bytes, s: &mut S) {
    let inner = delta_inner_len(name, version, body.len());
    put_head(tag::RESOURCES, inner, s.buf());
    put_str(tag::RESOURCE_VERSION, version, s.buf());
    put_head(tag::RESOURCE_BODY, body.len(), s.buf());
    s.shared(body);
    put_str(tag::RESOURCE_NAME, name, s.buf());
}

/// `encoded` as consecutive `DiscoveryResponse.resources` fields: what a response
/// carrying all of them writes between its version and its type URL.
pub(crate) fn resource_fields<'a>(encoded: impl Iterator<Item = &'a Bytes> + Clone) -> Bytes {
    let len = encoded
        .clone()
        .map(|r| bytes_len(tag::RESOURCES, r.len()))
        .sum();
    let mut buf = BytesMut::with_capacity(len);
    for r in encoded {
        put_bytes(tag::RESOURCES, r, &mut buf);
    }
    buf.freeze()
}

/// One resource of a delta response; `body` is an encoded `Any`.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct DeltaResource {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) body: Bytes,
}

/// An incremental response.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct DeltaResponse {
    pub(crate) system_version_info: String,
    pub(crate) resources: Carried<DeltaResource>,
    pub(crate) type_url: String,
    pub(crate) removed_resources: Vec<String>,
    pub(crate) nonce: String,
}

/// Where an encoding goes: small fields into `buf`, the shared resource encodings via
/// `shared` (copied into a plain buffer, or passed on as chunks by [`Chunks`]).
pub(crate) trait Sink {
    type B: BufMut;
    fn buf(&mut self) -> &mut Self::B;
    fn shared(&mut self, bytes: &Bytes);
}

struct Copying<'a, B>(&'a mut B);

impl<B: BufMut> Sink for Copying<'_, B> {
    type B = B;
    fn buf(&mut self) -> &mut B {
        self.0
    }
    fn shared(&mut self, bytes: &Bytes) {
        self.0.put_slice(bytes);
    }
}

/// Resources at least this large are written as their own chunk, straight from the
/// snapshot; smaller ones are copied into the chunk being filled.
const SHARE_MIN: usize = 1024;
/// Small pieces are gathered into chunks of about this size.
const CHUNK: usize = 16 * 1024;

/// Responses as gRPC message frames (the 5-byte gRPC header, then the protobuf bytes)
/// in chunks: large resources are the snapshot's own bytes, small pieces are gathered
/// into chunks of about [`CHUNK`] bytes, filled only as the connection takes them.
#[derive(Default)]
pub(crate) struct Chunks {
    out: VecDeque<Bytes>,
    small: BytesMut,
}

impl Chunks {
    /// Begin a message of `len` bytes.
    pub(crate) fn start(&mut self, len: usize) {
        self.small.reserve(CHUNK.min(len + 5));
        self.small.put_u8(0); // not compressed
        self.small.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    }

    /// Hand out what has been gathered so far.
    pub(crate) fn flush(&mut self) {
        if !self.small.is_empty() {
            // A fresh buffer each time: a split-off one would keep the old allocation.
            let full = std::mem::take(&mut self.small);
            self.out.push_back(full.freeze());
        }
    }

    pub(crate) fn pop(&mut self) -> Option<Bytes> {
        self.out.pop_front()
    }
}

impl Sink for Chunks {
    type B = BytesMut;
    fn buf(&mut self) -> &mut BytesMut {
        &mut self.small
    }
    fn shared(&mut self, bytes: &Bytes) {
        if bytes.len() >= SHARE_MIN {
            self.flush();
            self.out.push_back(bytes.clone());
        } else {
            self.small.put_slice(bytes);
            if self.small.len() >= CHUNK {
                self.flush();
            }
        }
    }
}

/// A response the server writes piece by piece: a head, one piece per resource, a tail.
pub(crate) trait Framed: Message + Sized + Unpin {
    fn pieces(&self) -> usize;
    fn piece<S: Sink>(&self, i: usize, s: &mut S);

    /// The whole gRPC message as chunks (tests; the server goes piece by piece).
    #[cfg(test)]
    fn chunks(&self) -> Vec<Bytes> {
        let mut c = Chunks::default();
        c.start(self.encoded_len());
        for i in 0..self.pieces() {
            self.piece(i, &mut c);
        }
        c.flush();
        c.out.into()
    }
}

fn bytes_len(tag: u32, len: usize) -> usize {
    encoding::key_len(tag) + encoding::encoded_len_varint(len as u64) + len
}

/// Key and length of a length-delimited field; its bytes follow.
fn put_head(tag: u32, len: usize, buf: &mut impl BufMut) {
    encoding::encode_key(tag, WireType::LengthDelimited, buf);
    encoding::encode_varint(len as u64, buf);
}

fn put_bytes(tag: u32, bytes: &[u8], buf: &mut impl BufMut) {
    put_head(tag, bytes.len(), buf);
    buf.put_slice(bytes);
}

/// proto3: empty strings are not written.
fn str_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        bytes_len(tag, s.len())
    }
}

fn put_str(tag: u32, s: &str, buf: &mut impl BufMut) {
    if !s.is_empty() {
        put_bytes(tag, s.as_bytes(), buf);
    }
}

impl SotwResponse {
    /// Copy the shared resources into buffers of its own: what every stream did before
    /// responses shared them. Only for the benchmark's same-run baseline.
    pub(crate) fn unshare(&mut self) {
        match &mut self.resources {
            Carried::Each(each) => {
                for r in each {
                    *r = Bytes::copy_from_slice(r);
                }
            }
            // Each resource copied on its own, as every response was written before.
            Carried::All { fields, .. } => {
                let each = split_fields(fields).map(|r| Bytes::copy_from_slice(&r));
                self.resources = Carried::Each(each.collect());
            }
        }
    }

    /// The generated type, for tests and the transport-free sessions.
    pub(crate) fn to_proto(&self) -> DiscoveryResponse {
        DiscoveryResponse::decode(self.encode_to_vec().as_slice())
            .expect("a response we encoded decodes")
    }
}

/// The resources of a block [`resource_fields`] wrote, each as its own slice.
fn split_fields(fields: &Bytes) -> impl Iterator<Item = Bytes> {
    let mut rest = fields.clone();
    std::iter::from_fn(move || {
        if !rest.has_remaining() {
            return None;
        }
        // The block is ours, so it parses; a malformed one would just end here.
        encoding::decode_key(&mut rest).ok()?;
        let len = usize::try_from(encoding::decode_varint(&mut rest).ok()?).ok()?;
        (len <= rest.len()).then(|| rest.split_to(len))
    })
}

impl DeltaResponse {
    /// See [`SotwResponse::unshare`]; a whole-type block is copied as one.
    pub(crate) fn unshare(&mut self) {
        match &mut self.resources {
            Carried::Each(each) => {
                for r in each {
                    r.body = Bytes::copy_from_slice(&r.body);
                }
            }
            Carried::All { fields, .. } => *fields = Bytes::copy_from_slice(fields),
        }
    }

    /// The generated type, for tests and the transport-free sessions.
    pub(crate) fn to_proto(&self) -> DeltaDiscoveryResponse {
        DeltaDiscoveryResponse::decode(self.encode_to_vec().as_slice())
            .expect("a response we encoded decodes")
    }
}

impl DeltaResource {
    fn inner_len(&self) -> usize {
        delta_inner_len(&self.name, &self.version, self.body.len())
    }
}

/// Responses are only ever encoded here; a decoder would skip every field.
fn skip(
    wire_type: WireType,
    tag: u32,
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    encoding::skip_field(wire_type, tag, buf, ctx)
}

impl Framed for SotwResponse {
    fn pieces(&self) -> usize {
        match &self.resources {
            Carried::Each(each) => each.len() + 2,
            Carried::All { .. } => 3,
        }
    }

    fn piece<S: Sink>(&self, i: usize, s: &mut S) {
        if i == 0 {
            put_str(tag::VERSION_INFO, &self.version_info, s.buf());
        } else if i + 1 == self.pieces() {
            put_str(tag::TYPE_URL, &self.type_url, s.buf());
            put_str(tag::NONCE, &self.nonce, s.buf());
        } else {
            match &self.resources {
                Carried::Each(each) => {
                    let r = &each[i - 1];
                    put_head(tag::RESOURCES, r.len(), s.buf());
                    s.shared(r);
                }
                Carried::All { fields, .. } => s.shared(fields),
            }
        }
    }
}

impl Message for SotwResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        let mut sink = Copying(buf);
        for i in 0..self.pieces() {
            self.piece(i, &mut sink);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        skip(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        let resources = match &self.resources {
            Carried::Each(each) => each
                .iter()
                .map(|r| bytes_len(tag::RESOURCES, r.len()))
                .sum(),
            Carried::All { fields, .. } => fields.len(),
        };
        str_len(tag::VERSION_INFO, &self.version_info)
            + resources
            + str_len(tag::TYPE_URL, &self.type_url)
            + str_len(tag::NONCE, &self.nonce)
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

impl Framed for DeltaResponse {
    fn pieces(&self) -> usize {
        match &self.resources {
            Carried::Each(each) => each.len() + 2,
            Carried::All { .. } => 3,
        }
    }

    fn piece<S: Sink>(&self, i: usize, s: &mut S) {
        if i == 0 {
            put_str(tag::VERSION_INFO, &self.system_version_info, s.buf());
        } else if i + 1 == self.pieces() {
            put_str(tag::TYPE_URL, &self.type_url, s.buf());
            put_str(tag::NONCE, &self.nonce, s.buf());
            for n in &self.removed_resources {
                put_bytes(tag::REMOVED_RESOURCES, n.as_bytes(), s.buf());
            }
        } else {
            match &self.resources {
                Carried::Each(each) => {
                    let r = &each[i - 1];
                    put_delta_resource(&r.name, &r.version, &r.body, s);
                }
                Carried::All { fields, .. } => s.shared(fields),
            }
        }
    }
}

impl Message for DeltaResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        let mut sink = Copying(buf);
        for i in 0..self.pieces() {
            self.piece(i, &mut sink);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        skip(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        let resources = match &self.resources {
            Carried::Each(each) => each
                .iter()
                .map(|r| bytes_len(tag::RESOURCES, r.inner_len()))
                .sum(),
            Carried::All { fields, .. } => fields.len(),
        };
        str_len(tag::VERSION_INFO, &self.system_version_info)
            + resources
            + str_len(tag::TYPE_URL, &self.type_url)
            + str_len(tag::NONCE, &self.nonce)
            + self
                .removed_resources
                .iter()
                .map(|n| bytes_len(tag::REMOVED_RESOURCES, n.len()))
                .sum::<usize>()
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::service::discovery::v3::Resource as PbResource;
    use envoy_types::pb::google::protobuf::Any;

    use super::*;

    fn any(t: &str, v: &[u8]) -> Any {
        Any {
            type_url: t.into(),
            value: v.to_vec(),
        }
    }

    #[test]
    fn sotw_bytes_equal_the_generated_encoding() {
        let bodies = [any("t/a", b"x"), any("t/a", &[0; 300])];
        let encoded: Vec<Bytes> = bodies.iter().map(|a| a.encode_to_vec().into()).collect();
        let theirs = DiscoveryResponse {
            version_info: "v1".into(),
            resources: bodies.to_vec(),
            type_url: "t/a".into(),
            nonce: "7".into(),
            ..Default::default()
        };
        // Each resource on its own, and all of them as the snapshot's one block.
        let all = Carried::All {
            fields: resource_fields(encoded.iter()),
            count: 2,
        };
        for resources in [Carried::Each(encoded.clone()), all] {
            let ours = SotwResponse {
                version_info: "v1".into(),
                resources,
                type_url: "t/a".into(),
                nonce: "7".into(),
            };
            assert_eq!(ours.encode_to_vec(), theirs.encode_to_vec());
            assert_eq!(ours.encoded_len(), theirs.encoded_len());
            assert_eq!(ours.to_proto(), theirs);
            let chunks: Vec<u8> = ours.chunks().concat();
            assert_eq!(&chunks[5..], &theirs.encode_to_vec()[..]);
        }
        // A whole-type block is written as it is, not copied into the stream's chunks.
        let many: Vec<Bytes> = (0..100)
            .map(|i| {
                any("t/a", format!("r{i}").as_bytes())
                    .encode_to_vec()
                    .into()
            })
            .collect();
        let fields = resource_fields(many.iter());
        let block = SotwResponse {
            resources: Carried::All {
                fields: fields.clone(),
                count: many.len(),
            },
            ..Default::default()
        };
        assert!(block.chunks().iter().any(|c| c.as_ptr() == fields.as_ptr()));
        assert_eq!(block.to_proto().resources.len(), 100);
    }

    #[test]
    fn delta_bytes_equal_the_generated_encoding() {
        let body = any("t/a", &[1; 200]);
        let ours = DeltaResponse {
            system_version_info: "v2".into(),
            resources: Carried::Each(vec![DeltaResource {
                name: "a".into(),
                version: "r1".into(),
                body: body.encode_to_vec().into(),
            }]),
            type_url: "t/a".into(),
            removed_resources: vec!["b".into(), "c".into()],
            nonce: "3".into(),
        };
        let theirs = DeltaDiscoveryResponse {
            system_version_info: "v2".into(),
            resources: vec![PbResource {
                name: "a".into(),
                version: "r1".into(),
                resource: Some(body.clone()),
                ..Default::default()
            }],
            type_url: "t/a".into(),
            removed_resources: vec!["b".into(), "c".into()],
            nonce: "3".into(),
            ..Default::default()
        };
        assert_eq!(ours.encode_to_vec(), theirs.encode_to_vec());
        assert_eq!(ours.encoded_len(), theirs.encoded_len());
        assert_eq!(ours.to_proto(), theirs);
        // The same resource as a whole-type block.
        let encoded: Bytes = body.encode_to_vec().into();
        let block = DeltaResponse {
            resources: Carried::All {
                fields: delta_resource_fields([("a", "r1", &encoded)].into_iter()),
                count: 1,
            },
            ..ours
        };
        assert_eq!(block.encode_to_vec(), theirs.encode_to_vec());
        assert_eq!(block.encoded_len(), theirs.encoded_len());
        assert_eq!(&block.chunks().concat()[5..], &theirs.encode_to_vec()[..]);
    }

    #[test]
    fn chunks_are_the_grpc_frame_and_share_large_resources() {
        let big: Bytes = any("t/a", &[7; 5000]).encode_to_vec().into();
        let small: Bytes = any("t/a", b"s").encode_to_vec().into();
        let r = SotwResponse {
            version_info: "v".into(),
            resources: Carried::Each(vec![small.clone(), big.clone(), small]),
            type_url: "t/a".into(),
            nonce: "1".into(),
        };
        let chunks = r.chunks();
        assert!(
            chunks.iter().any(|c| c.as_ptr() == big.as_ptr()),
            "big resource copied"
        );
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let body = r.encode_to_vec();
        assert_eq!(joined[0], 0);
        assert_eq!(
            u32::from_be_bytes(joined[1..5].try_into().unwrap()) as usize,
            body.len()
        );
        assert_eq!(&joined[5..], &body[..]);

        let d = DeltaResponse {
            resources: Carried::Each(vec![DeltaResource {
                name: "n".into(),
                version: "1".into(),
                body: big.clone(),
            }]),
            removed_resources: vec!["gone".into()],
            ..Default::default()
        };
        let joined: Vec<u8> = d.chunks().iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(&joined[5..], &d.encode_to_vec()[..]);
    }

    #[test]
    fn unshare_copies_but_keeps_the_bytes() {
        let shared: Bytes = any("t/a", b"body").encode_to_vec().into();
        let mut r = SotwResponse {
            resources: Carried::Each(vec![shared.clone()]),
            ..Default::default()
        };
        r.unshare();
        let Carried::Each(each) = &r.resources else {
            unreachable!()
        };
        assert_eq!(each[0], shared);
        assert_ne!(each[0].as_ptr(), shared.as_ptr());
        // A whole-type block comes apart into its resources, each copied.
        let many: Vec<Bytes> = (0..3)
            .map(|i| {
                any("t/a", &vec![i; 200 * usize::from(i)])
                    .encode_to_vec()
                    .into()
            })
            .collect();
        let fields = resource_fields(many.iter());
        let mut r = SotwResponse {
            resources: Carried::All {
                fields: fields.clone(),
                count: 3,
            },
            ..Default::default()
        };
        let before = r.encode_to_vec();
        r.unshare();
        assert_eq!(r.resources, Carried::Each(many));
        assert_eq!(r.encode_to_vec(), before);
    }
}
