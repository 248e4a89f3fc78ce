//! Generated types of the project's own protobuf definitions in `proto/`, shared by the
//! control plane (which publishes them over xDS) and the services that consume them.
#![forbid(unsafe_code)]

pub mod ratelimit {
    pub mod v1 {
        //! `proto/portcullis/ratelimit/v1/config.proto`: the rate-limit configuration
        //! the control plane serves to `portcullis ratelimit` over ADS.
        #![allow(clippy::all)]
        include!(concat!(env!("OUT_DIR"), "/portcullis.ratelimit.v1.rs"));

        /// The xDS type URL of [`RateLimitConfig`] resources.
        pub const TYPE_URL: &str = "type.googleapis.com/portcullis.ratelimit.v1.RateLimitConfig";

        // By hand rather than generated, so the build script stays the plain one; lets
        // generic helpers (`envoy_types::util::pack_any`) wrap a config in an `Any`.
        impl prost::Name for RateLimitConfig {
            const NAME: &'static str = "RateLimitConfig";
            const PACKAGE: &'static str = "portcullis.ratelimit.v1";

            fn type_url() -> String {
                TYPE_URL.into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::{Message, Name};

    use crate::ratelimit::v1::{RateLimitConfig, TYPE_URL, Window};

    #[test]
    fn type_url_matches_the_proto_package() {
        assert_eq!(
            format!("type.googleapis.com/{}", RateLimitConfig::full_name()),
            TYPE_URL
        );
        assert_eq!(RateLimitConfig::type_url(), TYPE_URL);
    }

    #[test]
    fn encoding_is_deterministic() {
        let c = RateLimitConfig {
            name: "ns/r/a".into(),
            by: vec!["clientIP".into(), "header:x-team".into()],
            windows: vec![Window {
                requests: 5,
                per: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 0,
                }),
            }],
            shadow: true,
            ..Default::default()
        };
        assert_eq!(c.encode_to_vec(), c.clone().encode_to_vec());
        assert_eq!(RateLimitConfig::decode(&*c.encode_to_vec()).unwrap(), c);
    }
}
