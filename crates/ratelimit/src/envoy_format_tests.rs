use super::*;

fn cfg(yaml: &str) -> EnvoyConfig {
    EnvoyConfig::parse(yaml, Defaults::default()).unwrap()
}

fn limit_of(
    c: &EnvoyConfig,
    domain: &str,
    entries: &[(&str, &str)],
) -> Option<(String, Vec<Window>)> {
    c.resolve(domain, entries)
        .map(|m| (m.limit.name.clone(), m.limit.windows.clone()))
}

fn per(requests: u32, per_ms: u64) -> Vec<Window> {
    vec![Window {
        requests,
        per_ms,
        algorithm: Algorithm::Sliding,
    }]
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
    let day = 86_400_000;
    assert_eq!(
        limit_of(
            &c,
            "messaging",
            &[("message_type", "marketing"), ("to_number", "2061111111")]
        )
        .unwrap()
        .1,
        per(5, day)
    );
    assert_eq!(
        limit_of(&c, "messaging", &[("to_number", "2061111111")])
            .unwrap()
            .1,
        per(100, day)
    );
    // The placeholder level has no limit of its own.
    assert!(limit_of(&c, "messaging", &[("message_type", "marketing")]).is_none());
    // Deeper than configured: no match (README example 4).
    assert!(limit_of(&c, "messaging", &[("to_number", "1"), ("x", "y")]).is_none());
    assert!(limit_of(&c, "other", &[("to_number", "1")]).is_none());
}

#[test]
fn the_most_specific_rule_wins_exact_then_wildcard_then_key_only() {
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
"#);
    assert_eq!(
        limit_of(&c, "edge", &[("remote_address", "50.0.0.1")])
            .unwrap()
            .1,
        per(10, 1000)
    );
    assert_eq!(
        limit_of(&c, "edge", &[("remote_address", "50.0.0.5")])
            .unwrap()
            .1,
        per(0, 1000)
    );
    assert_eq!(
        limit_of(&c, "edge", &[("remote_address", "10.1.2.3")])
            .unwrap()
            .1,
        per(7, 60_000)
    );
}

#[test]
fn unlimited_and_shadow_mode_are_carried() {
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
"#);
    let m = c.resolve("internal", &[("ldap", "x")]).unwrap();
    assert!(m.limit.unlimited && m.limit.windows.is_empty());
    let m = c
        .resolve("internal", &[("service", "auth"), ("user", "user-a")])
        .unwrap();
    assert!(m.limit.shadow);
    assert!(
        c.resolve("internal", &[("service", "auth"), ("user", "user-b")])
            .is_none()
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
    let a = c
        .resolve("example7", &[("key_1", "value_1"), ("user", "bkthomps")])
        .unwrap();
    assert_eq!(a.replaceable_as.as_deref(), Some("specific_limit"));
    assert_eq!(a.metric_name, "specific_limit");
    let b = c
        .resolve("example7", &[("key_2", "value_2"), ("user", "bkthomps")])
        .unwrap();
    assert_eq!(b.replaces, vec!["specific_limit".to_string()]);
    assert_eq!(b.metric_name, "example7.key_2_value_2.user_bkthomps");
}

#[test]
fn mistakes_are_refused_with_the_rule_path() {
    let e = EnvoyConfig::parse(
        "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n",
        Defaults::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("d.a") && e.to_string().contains("fortnight"),
        "{e}"
    );
    assert!(
        EnvoyConfig::parse(
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second}\n",
            Defaults::default()
        )
        .is_err()
    );
    assert!(
        EnvoyConfig::parse(
            "domain: d\ndescriptors:\n  - key: a\n  - key: a\n",
            Defaults::default()
        )
        .is_err()
    );
    assert!(EnvoyConfig::parse("domain: d\nunknown: 1\n", Defaults::default()).is_err());
}

#[test]
fn several_documents_are_several_domains() {
    let c = cfg(
        "domain: a\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n---\ndomain: b\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 2}\n",
    );
    assert_eq!(limit_of(&c, "b", &[("k", "v")]).unwrap().1, per(2, 1000));
    assert_eq!(c.len(), 2);
}
