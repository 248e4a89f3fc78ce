//! ADS responses that borrow the snapshot's encoded resources.
//!
//! A `DiscoveryResponse` owns a copy of every `Any` it carries, so each stream used to
//! hold its own copy of the whole configuration while a response waited to be written.
//! These types hold the snapshot's encodings (`Bytes`, reference-counted) and write the
//! same protobuf bytes: the resources exist once however many Envoys are connected, and
//! only the gRPC write buffer copies them, one response at a time per stream.

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryResponse, DiscoveryResponse};
use prost::bytes::{Buf, BufMut, Bytes};
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

/// A State-of-the-World response; `resources` are encoded `Any`s.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct SotwResponse {
    pub(crate) version_info: String,
    pub(crate) resources: Vec<Bytes>,
    pub(crate) type_url: String,
    pub(crate) nonce: String,
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
    pub(crate) resources: Vec<DeltaResource>,
    pub(crate) type_url: String,
    pub(crate) removed_resources: Vec<String>,
    pub(crate) nonce: String,
}

fn bytes_len(tag: u32, len: usize) -> usize {
    encoding::key_len(tag) + encoding::encoded_len_varint(len as u64) + len
}

fn put_bytes(tag: u32, bytes: &[u8], buf: &mut impl BufMut) {
    encoding::encode_key(tag, WireType::LengthDelimited, buf);
    encoding::encode_varint(bytes.len() as u64, buf);
    buf.put_slice(bytes);
}

/// proto3: empty strings are not written.
fn str_len(tag: u32, s: &str) -> usize {
    if s.is_empty() { 0 } else { bytes_len(tag, s.len()) }
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
        for r in &mut self.resources {
            *r = Bytes::copy_from_slice(r);
        }
    }

    /// The generated type, for tests and the transport-free sessions.
    pub(crate) fn to_proto(&self) -> DiscoveryResponse {
        DiscoveryResponse::decode(self.encode_to_vec().as_slice())
            .expect("a response we encoded decodes")
    }
}

impl DeltaResponse {
    /// See [`SotwResponse::unshare`].
    pub(crate) fn unshare(&mut self) {
        for r in &mut self.resources {
            r.body = Bytes::copy_from_slice(&r.body);
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
        str_len(tag::RESOURCE_NAME, &self.name)
            + str_len(tag::RESOURCE_VERSION, &self.version)
            + bytes_len(tag::RESOURCE_BODY, self.body.len())
    }
}

/// Responses are only ever encoded here; a decoder would skip every field.
fn skip(wire_type: WireType, tag: u32, buf: &mut impl Buf, ctx: DecodeContext) -> Result<(), DecodeError> {
    encoding::skip_field(wire_type, tag, buf, ctx)
}

impl Message for SotwResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        put_str(tag::VERSION_INFO, &self.version_info, buf);
        for r in &self.resources {
            put_bytes(tag::RESOURCES, r, buf);
        }
        put_str(tag::TYPE_URL, &self.type_url, buf);
        put_str(tag::NONCE, &self.nonce, buf);
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
        str_len(tag::VERSION_INFO, &self.version_info)
            + self
                .resources
                .iter()
                .map(|r| bytes_len(tag::RESOURCES, r.len()))
                .sum::<usize>()
            + str_len(tag::TYPE_URL, &self.type_url)
            + str_len(tag::NONCE, &self.nonce)
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

impl Message for DeltaResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        put_str(tag::VERSION_INFO, &self.system_version_info, buf);
        for r in &self.resources {
            encoding::encode_key(tag::RESOURCES, WireType::LengthDelimited, buf);
            encoding::encode_varint(r.inner_len() as u64, buf);
            put_str(tag::RESOURCE_VERSION, &r.version, buf);
            put_bytes(tag::RESOURCE_BODY, &r.body, buf);
            put_str(tag::RESOURCE_NAME, &r.name, buf);
        }
        put_str(tag::TYPE_URL, &self.type_url, buf);
        put_str(tag::NONCE, &self.nonce, buf);
        for n in &self.removed_resources {
            put_bytes(tag::REMOVED_RESOURCES, n.as_bytes(), buf);
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
        str_len(tag::VERSION_INFO, &self.system_version_info)
            + self
                .resources
                .iter()
                .map(|r| bytes_len(tag::RESOURCES, r.inner_len()))
                .sum::<usize>()
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
        let ours = SotwResponse {
            version_info: "v1".into(),
            resources: bodies.iter().map(|a| a.encode_to_vec().into()).collect(),
            type_url: "t/a".into(),
            nonce: "7".into(),
        };
        let theirs = DiscoveryResponse {
            version_info: "v1".into(),
            resources: bodies.to_vec(),
            type_url: "t/a".into(),
            nonce: "7".into(),
            ..Default::default()
        };
        assert_eq!(ours.encode_to_vec(), theirs.encode_to_vec());
        assert_eq!(ours.encoded_len(), theirs.encoded_len());
        assert_eq!(ours.to_proto(), theirs);
    }

    #[test]
    fn delta_bytes_equal_the_generated_encoding() {
        let body = any("t/a", &[1; 200]);
        let ours = DeltaResponse {
            system_version_info: "v2".into(),
            resources: vec![DeltaResource {
                name: "a".into(),
                version: "r1".into(),
                body: body.encode_to_vec().into(),
            }],
            type_url: "t/a".into(),
            removed_resources: vec!["b".into(), "c".into()],
            nonce: "3".into(),
        };
        let theirs = DeltaDiscoveryResponse {
            system_version_info: "v2".into(),
            resources: vec![PbResource {
                name: "a".into(),
                version: "r1".into(),
                resource: Some(body),
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
    }

    #[test]
    fn unshare_copies_but_keeps_the_bytes() {
        let shared: Bytes = any("t/a", b"body").encode_to_vec().into();
        let mut r = SotwResponse {
            resources: vec![shared.clone()],
            ..Default::default()
        };
        r.unshare();
        assert_eq!(r.resources[0], shared);
        assert_ne!(r.resources[0].as_ptr(), shared.as_ptr());
    }
}
