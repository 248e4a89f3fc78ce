//! Envoy's access log: one JSON object per request, written by Envoy's file logger
//! (buffered and flushed off the request path, so logging never slows a request).
//!
//! Scrubbing is by construction: the record names the fields it wants and no header
//! that can carry a secret (Authorization, Cookie, API keys) is among them; the path is
//! logged without its query string, where tokens sometimes travel. The user is the id
//! `portcullis authz` resolved, never the credential.
use envoy_types::pb::{
    envoy::config::accesslog::v3::{AccessLog, access_log},
    google::protobuf::Any,
};

/// Field name → Envoy command operator.
pub const FIELDS: &[(&str, &str)] = &[
    ("authority", "%REQ(:AUTHORITY)%"),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("client_ip", "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"),
    ("duration_ms", "%DURATION%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%PATH(NQ)%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("route", "%ROUTE_NAME%"),
    ("service", "%UPSTREAM_CLUSTER%"),
    ("start_time", "%START_TIME%"),
    ("status", "%RESPONSE_CODE%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_ms", "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%"),
    (
        "user",
        "%DYNAMIC_METADATA(envoy.filters.http.ext_authz:user)%",
    ),
    ("user_agent", "%REQ(USER-AGENT)%"),
];

/// A file access log at `path` (`/dev/stdout` for the console).
pub fn file_access_log(path: &str) -> AccessLog {
    AccessLog {
        name: "envoy.access_loggers.file".into(),
        config_type: Some(access_log::ConfigType::TypedConfig(Any {
            type_url: "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
                .into(),
            value: encode_file_access_log(path),
        })),
        ..Default::default()
    }
}

/// Cluster of `portcullis accesslog`.
pub const ALS_CLUSTER: &str = "_portcullis/accesslog";

/// Envoy's gRPC access log to `portcullis accesslog`, which scrubs and sinks the
/// records. Envoy buffers entries and flushes every second off the request path; when
/// the stream backs up it drops (and counts) entries rather than slow requests down.
/// `headers`: request headers to include (the service scrubs credentials anyway).
pub fn grpc_access_log(headers: &[String]) -> AccessLog {
    use envoy_types::pb::envoy::{
        config::core::v3::ApiVersion,
        extensions::access_loggers::grpc::v3::{
            CommonGrpcAccessLogConfig, HttpGrpcAccessLogConfig,
        },
    };
    let config = HttpGrpcAccessLogConfig {
        common_config: Some(CommonGrpcAccessLogConfig {
            log_name: "portcullis".into(),
            grpc_service: Some(crate::filters::grpc(ALS_CLUSTER, 1000)),
            transport_api_version: ApiVersion::V3 as i32,
            buffer_flush_interval: crate::proto::duration(std::time::Duration::from_secs(1)),
            ..Default::default()
        }),
        additional_request_headers_to_log: headers.to_vec(),
        ..Default::default()
    };
    AccessLog {
        name: "envoy.access_loggers.http_grpc".into(),
        config_type: Some(access_log::ConfigType::TypedConfig(crate::proto::any(
            &config,
        ))),
        ..Default::default()
    }
}

/// Encoded by hand: the JSON format is a `google.protobuf.Struct`, a map that prost
/// encodes in HashMap order, which would give the listener a new version on every
/// rebuild. Here the fields go out sorted.
fn encode_file_access_log(path: &str) -> Vec<u8> {
    use prost::encoding::{bytes, string};
    let mut fields = FIELDS.to_vec();
    fields.sort();
    // Struct { map<string, Value> fields = 1; }   Value { string string_value = 3; }
    let mut json = Vec::new();
    for (key, op) in fields {
        let mut value = Vec::new();
        string::encode(3, &op.to_string(), &mut value);
        let mut entry = Vec::new();
        string::encode(1, &key.to_string(), &mut entry);
        bytes::encode(2, &value, &mut entry);
        bytes::encode(1, &entry, &mut json);
    }
    // SubstitutionFormatString { Struct json_format = 2; }
    let mut format = Vec::new();
    bytes::encode(2, &json, &mut format);
    // FileAccessLog { string path = 1; SubstitutionFormatString log_format = 5; }
    let mut out = Vec::new();
    string::encode(1, &path.to_string(), &mut out);
    bytes::encode(5, &format, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::extensions::access_loggers::file::v3::{
        FileAccessLog, file_access_log,
    };
    use prost::Message;

    use super::*;

    #[test]
    fn decodes_as_envoy_expects_and_is_stable() {
        let a = file_access_log("/dev/stdout");
        assert_eq!(a, file_access_log("/dev/stdout"));
        let Some(access_log::ConfigType::TypedConfig(any)) = a.config_type else {
            panic!()
        };
        let decoded = FileAccessLog::decode(&*any.value).unwrap();
        assert_eq!(decoded.path, "/dev/stdout");
        let Some(file_access_log::AccessLogFormat::LogFormat(f)) = decoded.access_log_format else {
            panic!()
        };
        let text = format!("{f:?}");
        assert!(text.contains("%PATH(NQ)%") && text.contains("request_id"));
        assert!(
            !text.to_ascii_lowercase().contains("authorization")
                && !text.to_ascii_lowercase().contains("cookie")
        );
    }
}
