//! Small constructors for the protobuf well-known types Envoy configs are full of.
use envoy_types::pb::{
    envoy::config::core::v3::{
        AggregatedConfigSource, ApiVersion, ConfigSource, config_source::ConfigSourceSpecifier,
    },
    google::protobuf::{Any, Duration, UInt32Value},
};
use prost::{Message, Name};

pub fn any<M: Message + Name>(msg: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: msg.encode_to_vec(),
    }
}

pub fn duration(d: std::time::Duration) -> Option<Duration> {
    Some(Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    })
}

pub fn secs(s: u64) -> Option<Duration> {
    duration(std::time::Duration::from_secs(s))
}

pub fn u32v(v: u32) -> Option<UInt32Value> {
    Some(UInt32Value { value: v })
}

/// Config source "over the same ADS stream", for RDS and EDS.
pub fn ads() -> Option<ConfigSource> {
    Some(ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    })
}

pub fn yes() -> Option<envoy_types::pb::google::protobuf::BoolValue> {
    Some(envoy_types::pb::google::protobuf::BoolValue { value: true })
}
