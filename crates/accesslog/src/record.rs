//! One structured record per request, from Envoy's `HTTPAccessLogEntry`.
//!
//! Scrubbing happens here, before a record is queued: the path loses its query string
//! (where tokens sometimes travel), and every header on the scrub list keeps its name
//! but not its value, whatever Envoy was told to send. The user is the id
//! `portcullis authz` put in the ext_authz dynamic metadata, never the credential.
use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::{
    config::core::v3::{Address, RequestMethod, address, socket_address::PortSpecifier},
    data::accesslog::v3::{HttpAccessLogEntry, ResponseFlags},
};
use envoy_types::pb::google::protobuf::{Timestamp, value::Kind};
use serde::Serialize;

/// Replaces the value of a scrubbed header.
pub const SCRUBBED: &str = "[scrubbed]";

/// Headers whose values never reach a sink, lower-case.
#[derive(Clone, Debug)]
pub struct Scrub(BTreeSet<String>);

impl Scrub {
    /// Credentials and session cookies; extend it with the deployment's own.
    pub const DEFAULT: &'static [&'static str] = &[
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
    ];

    pub fn new<'a>(headers: impl IntoIterator<Item = &'a str>) -> Scrub {
        Scrub(headers.into_iter().map(str::to_ascii_lowercase).collect())
    }

    /// `name` lower-cased and `value`, or `[scrubbed]` for a listed header.
    fn header(&self, name: String, value: String) -> (String, String) {
        let name = name.to_ascii_lowercase();
        let value = if self.0.contains(&name) {
            SCRUBBED.to_owned()
        } else {
            value
        };
        (name, value)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AccessRecord {
    /// Request start, RFC 3339 with milliseconds.
    pub time: String,
    pub request_id: String,
    /// The Envoy that served it (node id).
    pub node: String,
    pub method: &'static str,
    pub authority: String,
    /// Without the query string.
    pub path: String,
    /// The Route object, `<namespace>/<name>`; empty when none matched.
    pub route: String,
    /// Which of its `match.paths` matched (the control plane names Envoy routes
    /// `<namespace>/<name>/<index>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_index: Option<u32>,
    /// The Service's cluster (`<namespace>/<service>`); empty when not routed.
    pub service: String,
    pub status: u32,
    pub duration_ms: Option<u64>,
    pub upstream_host: String,
    pub client_ip: String,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// The authenticated user id; empty when anonymous.
    pub user: String,
    /// `over_limit` (429 from the rate-limit service) or `service_error`; absent
    /// when no limit answered no.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<&'static str>,
    /// True when ext_authz denied the request.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auth_denied: bool,
    /// Envoy's short response flags (`UF`, `URX`, `RL`, …).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<&'static str>,
    pub user_agent: String,
    /// Headers the control plane asked Envoy for, scrubbed.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// ext_authz's dynamic metadata namespace, where `portcullis authz` puts `user`.
use portcullis_contract::authz::{METADATA_NAMESPACE as AUTHZ_METADATA, METADATA_USER};

impl AccessRecord {
    /// Takes the entry by value: its strings and header map move into the record.
    pub fn from_entry(entry: HttpAccessLogEntry, node: &str, scrub: &Scrub) -> AccessRecord {
        let common = entry.common_properties.unwrap_or_default();
        let request = entry.request.unwrap_or_default();
        let response = entry.response.unwrap_or_default();
        let flags = common.response_flags.unwrap_or_default();
        let user = common
            .metadata
            .as_ref()
            .and_then(|m| m.filter_metadata.get(AUTHZ_METADATA))
            .and_then(|s| s.fields.get(METADATA_USER))
            .and_then(|v| match &v.kind {
                Some(Kind::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let (route, path_index) = split_route_name(&common.route_name);
        let path = request
            .path
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        let method = RequestMethod::try_from(request.request_method)
            .map(|m| m.as_str_name())
            .unwrap_or_default();
        AccessRecord {
            time: common.start_time.map(timestamp).unwrap_or_default(),
            request_id: request.request_id,
            node: node.to_owned(),
            method,
            authority: request.authority,
            path,
            route,
            path_index,
            service: common.upstream_cluster,
            status: response.response_code.map_or(0, |c| c.value),
            duration_ms: common
                .duration
                .or(common.time_to_last_downstream_tx_byte)
                .map(|d| (d.seconds.max(0) as u64) * 1000 + (d.nanos.max(0) as u64) / 1_000_000),
            upstream_host: common
                .upstream_remote_address
                .as_ref()
                .map(host)
                .unwrap_or_default(),
            client_ip: common
                .downstream_remote_address
                .as_ref()
                .map(ip)
                .unwrap_or_default(),
            bytes_received: request.request_body_bytes,
            bytes_sent: response.response_body_bytes,
            user,
            rate_limit: if flags.rate_limited {
                Some("over_limit")
            } else if flags.rate_limit_service_error {
                Some("service_error")
            } else {
                None
            },
            auth_denied: flags.unauthorized_details.is_some(),
            flags: short_flags(&flags),
            user_agent: request.user_agent,
            headers: request
                .request_headers
                .into_iter()
                .map(|(k, v)| scrub.header(k, v))
                .collect(),
        }
    }
}

/// `ns/name/3` → (`ns/name`, 3); any other name is kept whole.
fn split_route_name(name: &str) -> (String, Option<u32>) {
    if let Some((object, index)) = name.rsplit_once('/')
        && object.contains('/')
        && let Ok(i) = index.parse()
    {
        return (object.to_owned(), Some(i));
    }
    (name.to_owned(), None)
}

/// RFC 3339 with milliseconds; empty for a time RFC 3339 cannot write (after the year
/// 9999, which formatting turned into a panic: found by the access-log fuzz target) —
/// the entry comes from a peer and is not trusted to be sane.
fn timestamp(t: Timestamp) -> String {
    const LAST_RFC3339_SECOND: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    if t.seconds > LAST_RFC3339_SECOND {
        return String::new();
    }
    let nanos = t.nanos.clamp(0, 999_999_999) as u32;
    let at = std::time::UNIX_EPOCH + std::time::Duration::new(t.seconds.max(0) as u64, nanos);
    humantime::format_rfc3339_millis(at).to_string()
}

fn ip(a: &Address) -> String {
    match &a.address {
        Some(address::Address::SocketAddress(s)) => s.address.clone(),
        _ => String::new(),
    }
}

fn host(a: &Address) -> String {
    match &a.address {
        Some(address::Address::SocketAddress(s)) => match s.port_specifier {
            Some(PortSpecifier::PortValue(port)) => format!("{}:{port}", s.address),
            _ => s.address.clone(),
        },
        _ => String::new(),
    }
}

/// Envoy's short names for the flags set (the `%RESPONSE_FLAGS%` spelling).
fn short_flags(f: &ResponseFlags) -> Vec<&'static str> {
    [
        (f.failed_local_healthcheck, "LH"),
        (f.no_healthy_upstream, "UH"),
        (f.upstream_request_timeout, "UT"),
        (f.local_reset, "LR"),
        (f.upstream_remote_reset, "UR"),
        (f.upstream_connection_failure, "UF"),
        (f.upstream_connection_termination, "UC"),
        (f.upstream_overflow, "UO"),
        (f.no_route_found, "NR"),
        (f.delay_injected, "DI"),
        (f.fault_injected, "FI"),
        (f.rate_limited, "RL"),
        (f.unauthorized_details.is_some(), "UAEX"),
        (f.rate_limit_service_error, "RLSE"),
        (f.downstream_connection_termination, "DC"),
        (f.upstream_retry_limit_exceeded, "URX"),
        (f.stream_idle_timeout, "SI"),
        (f.invalid_envoy_request_headers, "IH"),
        (f.downstream_protocol_error, "DPE"),
        (f.upstream_max_stream_duration_reached, "UMSDR"),
        (f.no_filter_config_found, "NFCF"),
        (f.duration_timeout, "DT"),
        (f.upstream_protocol_error, "UPE"),
        (f.no_cluster_found, "NC"),
        (f.overload_manager, "OM"),
        (f.dns_resolution_failure, "DF"),
        (f.downstream_remote_reset, "DR"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect()
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
