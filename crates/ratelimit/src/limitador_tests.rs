use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;

use super::*;

fn load(yaml: &str) -> Result<LimitadorLimits, FormatError> {
    let mut l = LimitadorLimits::default();
    for doc in crate::envoy_format::split_documents("limits.yaml", yaml)? {
        if !doc.is_null() {
            l.add_document("limits.yaml", doc, Defaults::default())?;
        }
    }
    Ok(l)
}

fn desc(entries: &[(&str, &str)]) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(k, v)| Entry {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect(),
        ..Default::default()
    }
}

fn hits(l: &LimitadorLimits, ns: &str, ds: &[RateLimitDescriptor]) -> Vec<Hit> {
    let mut out = Vec::new();
    l.resolve(ns, ds, &mut out);
    out
}

// Limitador's own example file, as its documentation writes it (current CEL syntax).
const EXAMPLE: &str = r#"
---
- namespace: test_namespace
  max_value: 10
  seconds: 60
  conditions:
    - "descriptors[0]['req.method'] == 'GET'"
    - "descriptors[0]['req.path'] != '/json'"
  variables: []
- namespace: test_namespace
  max_value: 5
  seconds: 60
  conditions:
    - "descriptors[0]['req.method'] == 'POST'"
  variables:
    - descriptors[0]['user_id']
- namespace: test_namespace
  name: everything
  max_value: 1000
  seconds: 1
  conditions:
  variables:
"#;

#[test]
fn conditions_and_variables_decide_which_limits_apply() {
    let l = load(EXAMPLE).unwrap();
    assert_eq!(l.len(), 3);
    let get = [desc(&[("req.method", "GET"), ("req.path", "/x")])];
    let h = hits(&l, "test_namespace", &get);
    let windows: Vec<(u32, u64)> = h
        .iter()
        .map(|h| (h.limit.windows[0].requests, h.limit.windows[0].per_ms))
        .collect();
    assert_eq!(windows, [(10, 60_000), (1000, 1000)]);
    // != fails on the excluded path; the unconditional limit still applies.
    let json = [desc(&[("req.method", "GET"), ("req.path", "/json")])];
    assert_eq!(hits(&l, "test_namespace", &json).len(), 1);
    // A variable must resolve: POST without user_id gets only the unconditional limit.
    let post = [desc(&[("req.method", "POST")])];
    assert_eq!(hits(&l, "test_namespace", &post).len(), 1);
    let post_user = [desc(&[("req.method", "POST"), ("user_id", "alice")])];
    let h = hits(&l, "test_namespace", &post_user);
    assert_eq!(h.len(), 2);
    let counter = h[0].counter.as_ref().unwrap();
    assert_eq!(
        counter.last().unwrap(),
        &("descriptors[0]['user_id']".to_string(), "alice".to_string())
    );
    assert!(
        hits(&l, "other", &get).is_empty(),
        "namespace is the domain"
    );
    assert_eq!(h[1].metric_name(), "everything");
}

#[test]
fn every_reference_spelling_and_the_1x_bare_names() {
    let l = load(
        r#"
- namespace: n
  max_value: 1
  seconds: 1
  conditions: ["descriptors[1].tier == \"gold\"", "'GET' == descriptors[0][\"m\"]"]
- namespace: n
  max_value: 2
  seconds: 1
  conditions: ["req.method == 'PUT'"]
  variables: [user]
"#,
    )
    .unwrap();
    let ds = [desc(&[("m", "GET")]), desc(&[("tier", "gold")])];
    let h = hits(&l, "n", &ds);
    assert_eq!(h.len(), 1);
    assert_eq!(
        h[0].descriptor, 0,
        "reported on the lowest descriptor it reads"
    );
    // Out of range: does not apply.
    assert!(hits(&l, "n", &ds[..1]).is_empty());
    // Bare names look in every descriptor.
    let ds = [desc(&[("user", "u1")]), desc(&[("req.method", "PUT")])];
    assert_eq!(hits(&l, "n", &ds).len(), 1);
}

#[test]
fn what_does_not_map_cleanly_is_refused_with_the_limit_named() {
    for (cond, why) in [
        ("descriptors[0].a == 'x' && descriptors[0].b == 'y'", "&&"),
        ("size(descriptors) > 1", "function"),
        ("descriptors[0].n == 5", "number"),
        ("descriptors[0].a in ['x', 'y']", "in"),
        ("descriptors[0].a == descriptors[0].b", "two references"),
        ("descriptors[0].a == 'x\\'y'", "escape"),
        ("descriptors[0].a.startsWith('x')", "method"),
    ] {
        let yaml = format!(
            "- namespace: n\n  max_value: 1\n  seconds: 1\n  conditions:\n    - '{}'\n",
            cond.replace('\'', "''")
        );
        let e = load(&yaml).expect_err(why).to_string();
        assert!(
            e.contains("limits[0].conditions[0]") && e.contains("outside the subset"),
            "{why}: {e}"
        );
    }
    for (yaml, needle) in [
        (
            "- namespace: n\n  max_value: 1\n  seconds: 0\n",
            "limits[0].seconds",
        ),
        (
            "- namespace: n\n  max_value: 5000000000\n  seconds: 1\n",
            "limits[0].max_value",
        ),
        (
            "- namespace: n\n  max_value: -1\n  seconds: 1\n",
            "limits[0].max_value",
        ),
        (
            "- namespace: n\n  max_value: 1\n  seconds: 1\n  colour: red\n",
            "colour",
        ),
        (
            "- namespace: ''\n  max_value: 1\n  seconds: 1\n",
            "limits[0].namespace",
        ),
        (
            "- namespace: n\n  max_value: 1\n  seconds: 1\n  variables: ['size(x)']\n",
            "limits[0].variables[0]",
        ),
        (
            "- {namespace: n, max_value: 1, seconds: 1}\n- {namespace: n, max_value: 9, seconds: 1}\n",
            "limits[1]",
        ),
    ] {
        let e = load(yaml).expect_err(needle).to_string();
        assert!(
            e.contains(needle) && e.contains("limits.yaml"),
            "{needle}: {e}"
        );
    }
}

#[test]
fn counters_are_per_limit_identity_and_variable_values() {
    let l = load(EXAMPLE).unwrap();
    let a = hits(
        &l,
        "test_namespace",
        &[desc(&[("req.method", "POST"), ("user_id", "a")])],
    );
    let b = hits(
        &l,
        "test_namespace",
        &[desc(&[("req.method", "POST"), ("user_id", "b")])],
    );
    assert_ne!(a[0].counter, b[0].counter);
    assert_eq!(
        a[1].counter, b[1].counter,
        "the unconditional limit is one counter"
    );
    // Editing max_value keeps the identity (and so the counter), as in Limitador.
    let edited = load(&EXAMPLE.replace("max_value: 5\n", "max_value: 50\n")).unwrap();
    let c = hits(
        &edited,
        "test_namespace",
        &[desc(&[("req.method", "POST"), ("user_id", "a")])],
    );
    assert_eq!(a[0].counter, c[0].counter);
}
