//! envoyproxy/ratelimit's load-time refusals (its `config_impl.go` checks and its
//! test files' cases, rewritten here), each with the field and the fix, and what it
//! accepts, accepted.
use super::*;

/// envoyproxy's load-time refusals, each with the field and the fix.
#[test]
fn what_envoyproxy_refuses_is_refused_with_the_field_and_the_fix() {
    let cases: &[(&str, &[&str])] = &[
        ("descriptors:\n", &["domain is missing", "domain: <name>"]),
        (
            "domain: d\ndescriptors:\n  - value: v\n",
            &["descriptors[0].key", "give every descriptor a key"],
        ),
        (
            "domain: d\ndescriptors:\n  - {key: a, value: v}\n  - {key: a, value: v}\n",
            &["descriptors[1]", "duplicate descriptor `a_v`"],
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n",
            &[
                "descriptors[0].rate_limit.unit",
                "`fortnight` is not a unit",
                "week, month or year",
            ],
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unlimited: true, unit: day, requests_per_unit: 25}\n",
            &["rate_limit.unit", "must not be set with `unlimited: true`"],
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second}\n",
            &["rate_limit.requests_per_unit", "requests_per_unit: 0"],
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    descriptors:\n      - key: b\n        rate_limit: {name: self, replaces: [{name: self}], unit: second, requests_per_unit: 5}\n",
            &[
                "descriptors[0].descriptors[0].rate_limit.replaces[0].name",
                "cannot replace itself",
            ],
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit:\n      name: x\n      replaces:\n        - name:\n      unit: second\n      requests_per_unit: 5\n",
            &["replaces[0].name", "is empty"],
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    value: plain\n    share_threshold: true\n    rate_limit: {unit: second, requests_per_unit: 1}\n",
            &["share_threshold", "wildcard value", "`plain`"],
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    ratelimit: {unit: second, requests_per_unit: 1}\n",
            &["descriptors[0]", "unknown field `ratelimit`"],
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requestsperunit: 1}\n",
            &[
                "descriptors[0].rate_limit",
                "unknown field `requestsperunit`",
            ],
        ),
        (
            "domain: d\ndescriptors:\n  - a\n  - b\n",
            &["descriptors[0]"],
        ),
        ("0.25: test-domain\ndescriptors: []\n", &["config"]),
        (
            "domain: d\ndescriptors:\n  - key: a\n    metadata: [1]\n",
            &["descriptors[0].metadata"],
        ),
        (
            "domain: d\ndescriptors:\n  - key: [a]\n",
            &["descriptors[0].key", "expected a string"],
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: -1}\n",
            &["requests_per_unit"],
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: 1, algorithm: leaky}\n",
            &["rate_limit.algorithm", "sliding or fixed"],
        ),
        (
            "domain: d\n---\ndomain: d\n",
            &["domain `d` is also defined", "MERGE_DOMAIN_CONFIG"],
        ),
        (
            "domain: d\ndescriptors: [{key: a}]\nextra: 1\n",
            &["unknown field `extra`"],
        ),
        ("domain: d\n  bad indent: [\n", &["not valid YAML"]),
    ];
    for (yaml, needles) in cases {
        let e = EnvoyConfig::parse(yaml, Defaults::default())
            .expect_err(yaml)
            .to_string();
        for n in *needles {
            assert!(e.contains(n), "{yaml:?}: {e}");
        }
    }
    // What envoyproxy accepts, accepted: an unknown unit with `unlimited`, a value-less
    // limit block, empty nested lists.
    for yaml in [
        "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unlimited: true, unit: fortnight}\n",
        "domain: d\ndescriptors:\n  - key: a\n    rate_limit:\n",
        "domain: d\ndescriptors:\n  - key: a\n    descriptors:\n",
        "domain: d\n",
    ] {
        EnvoyConfig::parse(yaml, Defaults::default()).expect(yaml);
    }
}
