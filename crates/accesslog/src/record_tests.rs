use std::collections::HashMap;

use envoy_types::pb::{
    envoy::{
        config::core::v3::{Metadata, SocketAddress, socket_address::PortSpecifier},
        data::accesslog::v3::{
            AccessLogCommon, HttpRequestProperties, HttpResponseProperties,
            response_flags::Unauthorized,
        },
    },
    google::protobuf::{Duration, Struct, UInt32Value, Value, value},
};

use super::*;

fn addr(ip: &str, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.into(),
            port_specifier: Some(PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

fn entry() -> HttpAccessLogEntry {
    let user = Struct {
        fields: [(
            "user".to_owned(),
            Value {
                kind: Some(value::Kind::StringValue("alice".into())),
            },
        )]
        .into(),
    };
    HttpAccessLogEntry {
        common_properties: Some(AccessLogCommon {
            start_time: Some(Timestamp {
                seconds: 1_790_000_000,
                nanos: 123_000_000,
            }),
            duration: Some(Duration {
                seconds: 1,
                nanos: 250_000_000,
            }),
            route_name: "shop/items/2".into(),
            upstream_cluster: "shop/catalog".into(),
            downstream_remote_address: Some(addr("203.0.113.7", 50123)),
            upstream_remote_address: Some(addr("10.0.0.4", 8080)),
            metadata: Some(Metadata {
                filter_metadata: [(AUTHZ_METADATA.to_owned(), user)].into(),
                ..Default::default()
            }),
            response_flags: Some(ResponseFlags {
                rate_limited: true,
                ..Default::default()
            }),
            ..Default::default()
        }),
        request: Some(HttpRequestProperties {
            request_method: RequestMethod::Post as i32,
            authority: "api.example.com".into(),
            path: "/items?token=secret&page=2".into(),
            request_id: "req-1".into(),
            user_agent: "curl/8".into(),
            request_body_bytes: 12,
            request_headers: HashMap::from([
                ("Authorization".to_owned(), "Bearer hunter2".to_owned()),
                ("x-api-key".to_owned(), "k-123".to_owned()),
                ("x-team".to_owned(), "payments".to_owned()),
            ]),
            ..Default::default()
        }),
        response: Some(HttpResponseProperties {
            response_code: Some(UInt32Value { value: 429 }),
            response_body_bytes: 40,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn a_record_says_who_where_and_why() {
    let r = AccessRecord::from_entry(
        entry(),
        "edge-1",
        &Scrub::new(Scrub::DEFAULT.iter().copied()),
    );
    assert_eq!(r.time, "2026-09-21T14:13:20.123Z");
    assert_eq!(r.request_id, "req-1");
    assert_eq!(r.node, "edge-1");
    assert_eq!(r.method, "POST");
    assert_eq!(
        (r.route.as_str(), r.service.as_str()),
        ("shop/items", "shop/catalog")
    );
    assert_eq!(r.path_index, Some(2));
    assert_eq!((r.status, r.duration_ms), (429, Some(1250)));
    assert_eq!(r.client_ip, "203.0.113.7");
    assert_eq!(r.upstream_host, "10.0.0.4:8080");
    assert_eq!(r.user, "alice");
    assert_eq!(r.rate_limit, Some("over_limit"));
    assert_eq!(r.flags, ["RL"]);
    assert!(!r.auth_denied);
}

#[test]
fn secrets_are_scrubbed_before_queueing() {
    let scrub = Scrub::new(Scrub::DEFAULT.iter().copied().chain(["X-Team"]));
    let r = AccessRecord::from_entry(entry(), "edge-1", &scrub);
    assert_eq!(r.path, "/items", "the query string can carry tokens");
    assert_eq!(
        r.headers,
        BTreeMap::from([
            ("authorization".to_owned(), SCRUBBED.to_owned()),
            ("x-api-key".to_owned(), SCRUBBED.to_owned()),
            ("x-team".to_owned(), SCRUBBED.to_owned()),
        ])
    );
    let line = serde_json::to_string(&r).unwrap();
    for secret in ["hunter2", "k-123", "secret", "payments"] {
        assert!(!line.contains(secret), "{secret} leaked: {line}");
    }
    // Not on the list: kept.
    let r = AccessRecord::from_entry(
        entry(),
        "edge-1",
        &Scrub::new(Scrub::DEFAULT.iter().copied()),
    );
    assert_eq!(r.headers["x-team"], "payments");
}

#[test]
fn denials_and_rate_limit_errors_are_named() {
    let mut e = entry();
    let flags = e
        .common_properties
        .as_mut()
        .unwrap()
        .response_flags
        .as_mut()
        .unwrap();
    flags.rate_limited = false;
    flags.rate_limit_service_error = true;
    flags.unauthorized_details = Some(Unauthorized::default());
    let r = AccessRecord::from_entry(e, "", &Scrub::new([]));
    assert_eq!(r.rate_limit, Some("service_error"));
    assert!(r.auth_denied);
    assert_eq!(r.flags, ["UAEX", "RLSE"]);
}

#[test]
fn an_empty_entry_gives_an_empty_record_not_a_panic() {
    let r = AccessRecord::from_entry(HttpAccessLogEntry::default(), "", &Scrub::new([]));
    assert_eq!(r.status, 0);
    assert_eq!(r.duration_ms, None);
    assert_eq!(r.rate_limit, None);
    assert!(r.headers.is_empty());
    let json = serde_json::to_value(&r).unwrap();
    assert!(json.get("rate_limit").is_none());
}

#[test]
fn times_rfc3339_cannot_write_are_empty_not_a_panic() {
    use envoy_types::pb::google::protobuf::Timestamp;
    let t = |seconds, nanos| super::timestamp(Timestamp { seconds, nanos });
    assert_eq!(t(i64::MAX, 0), "");
    assert_eq!(t(253_402_300_800, 0), "");
    assert_eq!(t(253_402_300_799, i32::MAX), "9999-12-31T23:59:59.999Z");
    assert_eq!(t(-5, -1), "1970-01-01T00:00:00.000Z");
    assert_eq!(t(1_700_000_000, 123_000_000), "2023-11-14T22:13:20.123Z");
}
