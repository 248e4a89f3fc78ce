//! The envoyproxy/ratelimit format against the semantics its README and config tests
//! document (files written here from those descriptions).
use super::*;
use crate::limit::{Algorithm, Window, unit_ms};

fn cfg(yaml: &str) -> EnvoyConfig {
    EnvoyConfig::parse(yaml, Defaults::default()).unwrap()
}

fn hit(c: &EnvoyConfig, domain: &str, entries: &[(&str, &str)]) -> Option<Hit> {
    c.resolve(domain, 0, entries)
}

fn windows(c: &EnvoyConfig, domain: &str, entries: &[(&str, &str)]) -> Option<Vec<Window>> {
    hit(c, domain, entries).map(|h| h.limit.windows.clone())
}

fn per(requests: u32, per_ms: u64) -> Vec<Window> {
    vec![Window {
        requests,
        per_ms,
        algorithm: Algorithm::Sliding,
    }]
}

fn stat(c: &EnvoyConfig, domain: &str, entries: &[(&str, &str)]) -> String {
    hit(c, domain, entries).unwrap().stat.full.clone()
}

const MESSAGING: &str = r#"
domain: messaging
descriptors:
  - key: message_type
    value: marketing
    descriptors:
      - key: to_number
        rate_limit: {unit: day, requests_per_unit: 5}
  - key: to_number
    rate_limit: {unit: day, requests_per_unit: 100}
"#;

#[test]
fn nested_descriptors_match_level_by_level_and_only_at_the_last_level() {
    let c = cfg(MESSAGING);
    let day = unit_ms::DAY;
    let both = [("message_type", "marketing"), ("to_number", "2061111111")];
    assert_eq!(windows(&c, "messaging", &both), Some(per(5, day)));
    assert_eq!(
        windows(&c, "messaging", &[("to_number", "2061111111")]),
        Some(per(100, day))
    );
    // The placeholder level has no limit of its own.
    assert!(hit(&c, "messaging", &[("message_type", "marketing")]).is_none());
    // Deeper than configured: no match (README example 4).
    assert!(hit(&c, "messaging", &[("to_number", "1"), ("x", "y")]).is_none());
    assert!(hit(&c, "other", &[("to_number", "1")]).is_none());
    assert_eq!(
        stat(&c, "messaging", &both),
        "messaging.message_type_marketing.to_number"
    );
}

#[test]
fn exact_then_wildcard_then_key_only_and_the_first_wildcard_wins() {
    let c = cfg(r#"
domain: edge
descriptors:
  - key: remote_address
    rate_limit: {unit: second, requests_per_unit: 10}
  - key: remote_address
    value: 50.0.0.5
    rate_limit: {unit: second, requests_per_unit: 0}
  - key: remote_address
    value: "10.*"
    rate_limit: {unit: minute, requests_per_unit: 7}
  - key: remote_address
    value: "10.1.*"
    rate_limit: {unit: minute, requests_per_unit: 8}
"#);
    let w = |v: &str| windows(&c, "edge", &[("remote_address", v)]).unwrap();
    assert_eq!(w("50.0.0.1"), per(10, 1000));
    assert_eq!(w("50.0.0.5"), per(0, 1000));
    assert_eq!(w("10.1.2.3"), per(7, 60_000), "declared first");
    // IPv4 dots are sanitised in stat names, as envoyproxy does.
    assert_eq!(
        stat(&c, "edge", &[("remote_address", "50.0.0.5")]),
        "edge.remote_address_50_0_0_5"
    );
}

#[test]
fn wildcards_anywhere_in_the_value() {
    let c = cfg(r#"
domain: example9
descriptors:
  - key: key1
    value: value*
    rate_limit: {unit: minute, requests_per_unit: 20}
  - key: path
    value: /api/*/action
    rate_limit: {unit: minute, requests_per_unit: 21}
  - key: route
    value: /api/*/resource/*/action
    rate_limit: {unit: minute, requests_per_unit: 22}
  - key: midWild
    value: bar*b
    rate_limit: {unit: minute, requests_per_unit: 23}
  - key: nested
    value: val1
    descriptors:
      - key: wild
        value: goo*
        rate_limit: {unit: minute, requests_per_unit: 24}
"#);
    let n = |k: &str, v: &str| hit(&c, "example9", &[(k, v)]).map(|h| h.limit.windows[0].requests);
    assert_eq!(n("key1", "valueXYZ"), Some(20));
    assert_eq!(n("path", "/api/123/action"), Some(21));
    assert_eq!(n("path", "/api/user-id/action"), Some(21));
    assert_eq!(n("path", "/api/123/other"), None);
    assert_eq!(n("route", "/api/v2/resource/456/action"), Some(22));
    assert_eq!(n("midWild", "bar123b"), Some(23));
    assert_eq!(n("midWild", "barb"), Some(23));
    assert_eq!(n("midWild", "bar"), None);
    let h = hit(&c, "example9", &[("nested", "val1"), ("wild", "goose")]).unwrap();
    assert_eq!(h.limit.windows[0].requests, 24);
    // Each matching value has its own counter; the stat key keeps the pattern.
    assert!(h.counter.is_none());
    assert_eq!(h.stat.full, "example9.nested_val1.wild_goo*");
    assert_eq!(
        stat(&c, "example9", &[("midWild", "bar1b")]),
        "example9.midWild_bar*b"
    );
}

#[test]
fn unlimited_shadow_quota_and_every_unit() {
    let c = cfg(r#"
domain: internal
descriptors:
  - key: ldap
    rate_limit: {unlimited: true}
  - key: service
    descriptors:
      - key: user
        value: user-a
        shadow_mode: true
        rate_limit: {unit: second, requests_per_unit: 10}
  - key: plan
    quota_mode: true
    rate_limit: {unit: week, requests_per_unit: 1}
  - key: m
    rate_limit: {unit: MONTH, requests_per_unit: 2}
  - key: y
    rate_limit: {unit: Year, requests_per_unit: 3}
"#);
    let m = hit(&c, "internal", &[("ldap", "x")]).unwrap();
    assert!(m.limit.unlimited && m.limit.windows.is_empty());
    let m = hit(&c, "internal", &[("service", "auth"), ("user", "user-a")]).unwrap();
    assert!(m.limit.shadow);
    assert!(hit(&c, "internal", &[("service", "auth"), ("user", "user-b")]).is_none());
    let m = hit(&c, "internal", &[("plan", "p")]).unwrap();
    assert!(m.limit.quota);
    assert_eq!(m.limit.windows[0].per_ms, 7 * unit_ms::DAY);
    assert_eq!(
        windows(&c, "internal", &[("m", "x")]).unwrap()[0].per_ms,
        30 * unit_ms::DAY
    );
    assert_eq!(
        windows(&c, "internal", &[("y", "x")]).unwrap()[0].per_ms,
        365 * unit_ms::DAY
    );
}

#[test]
fn names_replaces_and_detailed_metrics() {
    let c = cfg(r#"
domain: example7
descriptors:
  - key: key_1
    value: value_1
    descriptors:
      - key: user
        value: bkthomps
        rate_limit: {name: specific_limit, requests_per_unit: 5, unit: second}
  - key: key_2
    value: value_2
    descriptors:
      - key: user
        detailed_metric: true
        rate_limit:
          replaces: [{name: specific_limit}]
          requests_per_unit: 10
          unit: second
"#);
    let a = hit(
        &c,
        "example7",
        &[("key_1", "value_1"), ("user", "bkthomps")],
    )
    .unwrap();
    assert_eq!(a.replaceable_as.as_deref(), Some("specific_limit"));
    assert_eq!(a.metric_name(), "specific_limit");
    assert_eq!(a.limit.name, "specific_limit");
    let b = hit(
        &c,
        "example7",
        &[("key_2", "value_2"), ("user", "bkthomps")],
    )
    .unwrap();
    assert_eq!(&*b.replaces, ["specific_limit".to_string()]);
    assert_eq!(
        b.limit.name, "",
        "no rate_limit.name: an empty status name, as envoyproxy"
    );
    assert_eq!(b.metric_name(), "example7.key_2_value_2.user_bkthomps");
}

#[test]
fn detailed_metric_and_value_to_metric_put_request_values_in_stat_keys() {
    // README example 8.
    let c = cfg(r#"
domain: example8
descriptors:
  - key: key1
    detailed_metric: true
    rate_limit: {unit: minute, requests_per_unit: 10}
  - key: key1
    value: value1
    rate_limit: {unit: minute, requests_per_unit: 20}
  - key: plain
    rate_limit: {unit: minute, requests_per_unit: 10}
"#);
    assert_eq!(
        stat(&c, "example8", &[("key1", "unspecified_value")]),
        "example8.key1_unspecified_value"
    );
    assert_eq!(
        stat(&c, "example8", &[("key1", "value1")]),
        "example8.key1_value1"
    );
    assert_eq!(stat(&c, "example8", &[("plain", "x")]), "example8.plain");
    // README example 10.
    let c = cfg(r#"
domain: example10
descriptors:
  - key: route
    value_to_metric: true
    descriptors:
      - key: http_method
        value_to_metric: true
        descriptors:
          - key: subject_id
            rate_limit: {unit: minute, requests_per_unit: 60}
---
domain: example10_wildcard
descriptors:
  - key: user
    value_to_metric: true
    descriptors:
      - key: action
        value: read*
        value_to_metric: true
        descriptors:
          - key: resource
            rate_limit: {unit: minute, requests_per_unit: 100}
"#);
    assert_eq!(
        stat(
            &c,
            "example10",
            &[
                ("route", "api"),
                ("http_method", "GET"),
                ("subject_id", "123")
            ]
        ),
        "example10.route_api.http_method_GET.subject_id"
    );
    assert_eq!(
        stat(
            &c,
            "example10_wildcard",
            &[
                ("user", "alice"),
                ("action", "readfile"),
                ("resource", "documents")
            ]
        ),
        "example10_wildcard.user_alice.action_readfile.resource"
    );
}

#[test]
fn share_threshold_makes_a_wildcard_one_counter() {
    // README example 11, with the stat keys envoyproxy's code produces.
    let c = cfg(r#"
domain: example11
descriptors:
  - key: files
    value: files/*
    share_threshold: true
    rate_limit: {unit: hour, requests_per_unit: 10}
  - key: files_no_share
    value: files_no_share/*
    share_threshold: false
    rate_limit: {unit: hour, requests_per_unit: 10}
  - key: route
    value: api/*
    share_threshold: true
    value_to_metric: true
    descriptors:
      - key: method
        rate_limit: {unit: minute, requests_per_unit: 60}
  - key: file
    value: test1
    rate_limit: {unit: minute, requests_per_unit: 50}
  - key: file
    value: test*
    share_threshold: true
    rate_limit: {unit: minute, requests_per_unit: 100}
"#);
    let counter = |k: &str, v: &str| hit(&c, "example11", &[(k, v)]).unwrap().counter;
    let a = counter("files", "files/a.pdf").expect("a shared counter");
    assert_eq!(&*a, [("files".to_string(), "files/*".to_string())]);
    assert_eq!(counter("files", "files/b.csv").unwrap(), a);
    assert!(
        counter("files_no_share", "files_no_share/a.pdf").is_none(),
        "per value"
    );
    assert!(
        counter("file", "test1").is_none(),
        "an exact match does not share"
    );
    assert_eq!(counter("file", "test2"), counter("file", "test123"));
    assert_eq!(
        stat(&c, "example11", &[("file", "test2")]),
        "example11.file_test*"
    );
    assert_eq!(
        stat(&c, "example11", &[("route", "api/v1"), ("method", "GET")]),
        "example11.route_api/*.method"
    );
    let h = hit(&c, "example11", &[("route", "api/v1"), ("method", "GET")]).unwrap();
    assert_eq!(
        &*h.counter.unwrap(),
        [
            ("route".to_string(), "api/*".to_string()),
            ("method".to_string(), "GET".to_string())
        ]
    );
}

#[test]
fn scalars_read_as_text_and_several_documents_are_several_domains() {
    let c = cfg(r#"
domain: codes
descriptors:
  - key: status
    value: 500
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: 42
    value: true
    rate_limit: {unit: second, requests_per_unit: 2}
---
domain: b
descriptors:
  - key: k
    rate_limit: {unit: second, requests_per_unit: 3}
"#);
    assert!(hit(&c, "codes", &[("status", "500")]).is_some());
    assert!(hit(&c, "codes", &[("42", "true")]).is_some());
    assert_eq!(windows(&c, "b", &[("k", "v")]), Some(per(3, 1000)));
    assert_eq!(c.len(), 3);
}

#[test]
fn one_domain_merges_across_files_when_allowed() {
    let file1 = "domain: test-domain\ndescriptors:\n  - {key: key1, value: value1, rate_limit: {unit: minute, requests_per_unit: 10}}\n";
    let file2 = "domain: test-domain\ndescriptors:\n  - {key: key2, value: value2, rate_limit: {unit: minute, requests_per_unit: 20}}\n";
    let load = |merge: bool, files: &[(&str, &str)]| {
        let mut c = EnvoyConfig::default();
        for (name, text) in files {
            for doc in split_documents(name, text)? {
                c.add_document(name, doc, Defaults::default(), merge)?;
            }
        }
        Ok::<_, FormatError>(c)
    };
    let e = load(false, &[("a.yaml", file1), ("b.yaml", file2)])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("b.yaml")
            && e.contains("also defined in a.yaml")
            && e.contains("MERGE_DOMAIN_CONFIG"),
        "{e}"
    );
    let c = load(true, &[("a.yaml", file1), ("b.yaml", file2)]).unwrap();
    assert_eq!(
        windows(&c, "test-domain", &[("key1", "value1")]).unwrap()[0].requests,
        10
    );
    assert_eq!(
        windows(&c, "test-domain", &[("key2", "value2")]).unwrap()[0].requests,
        20
    );
    // Merging never lets one rule be defined twice.
    let e = load(true, &[("a.yaml", file1), ("c.yaml", file1)])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("c.yaml") && e.contains("duplicate descriptor `key1_value1`"),
        "{e}"
    );
}
