//! Readable rendering of Envoy protobuf messages (the `envoy-types` crate) as proto3-JSON
//! data and YAML, for golden files and debug output.
//!
//! The standard proto3 JSON mapping applies: camelCase field names, enums by name,
//! `Duration` as `"10s"`, wrappers (`UInt32Value`, …) as plain values, default and empty
//! fields omitted, and `google.protobuf.Any` expanded into its typed contents with an
//! `"@type"` key. 64-bit integers are numbers rather than strings. Object keys are sorted,
//! so output is deterministic.
//!
//! Descriptors come from the .proto files that ship with `envoy-types`, compiled at build
//! time (see `build.rs`) for listeners, routes, clusters, endpoints, bootstrap and the
//! filters/extensions Portcullis configures.
#![forbid(unsafe_code)]

use std::sync::OnceLock;

use envoy_types::pb::google::protobuf::Any;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde_json::Value;

/// Why a message could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The message type (or the type of an `Any`) is not in the compiled descriptors.
    #[error("unknown protobuf type {0:?}")]
    UnknownType(String),
    /// The encoded bytes do not match the descriptor.
    #[error("decoding {type_name}: {source}")]
    Decode {
        type_name: String,
        source: prost::DecodeError,
    },
    /// JSON serialization failed, e.g. a nested `Any` of an unknown type.
    #[error("rendering JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("rendering YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

/// The Envoy descriptors, decoded once.
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(&include_bytes!(concat!(env!("OUT_DIR"), "/envoy.fds"))[..])
            .expect("descriptor set built by build.rs is valid")
    })
}

fn descriptor(full_name: &str) -> Result<MessageDescriptor, Error> {
    pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| Error::UnknownType(full_name.to_owned()))
}

fn render(desc: MessageDescriptor, bytes: &[u8]) -> Result<Value, Error> {
    let type_name = desc.full_name().to_owned();
    let msg = DynamicMessage::decode(desc, bytes)
        .map_err(|source| Error::Decode { type_name, source })?;
    let options = SerializeOptions::new().stringify_64_bit_integers(false);
    let mut value = msg.serialize_with_options(serde_json::value::Serializer, &options)?;
    // Proto map fields iterate in hash order; sort in case serde_json keeps insertion order.
    value.sort_all_objects();
    Ok(value)
}

/// Renders any `envoy-types` message.
pub fn to_json<M: prost::Message + prost::Name>(msg: &M) -> Result<Value, Error> {
    render(descriptor(&M::full_name())?, &msg.encode_to_vec())
}

/// Renders an `Any` as its typed contents plus `"@type"`. Errors if the type is unknown.
pub fn any_to_json(any: &Any) -> Result<Value, Error> {
    // Checked here for a clear error; prost-reflect would only say "unrecognized type".
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    descriptor(name)?;
    to_json(any)
}

/// [`to_json`] as YAML.
pub fn to_yaml<M: prost::Message + prost::Name>(msg: &M) -> Result<String, Error> {
    Ok(serde_yaml::to_string(&to_json(msg)?)?)
}

/// [`any_to_json`] as YAML.
pub fn any_to_yaml(any: &Any) -> Result<String, Error> {
    Ok(serde_yaml::to_string(&any_to_json(any)?)?)
}
