use super::*;
use crate::validate::validate;

fn model(yaml: &str) -> Model {
    let objects = crate::Objects::parse(yaml).unwrap();
    let o = validate(&objects.routes, &objects.services);
    assert_eq!(
        o.problems().count(),
        0,
        "{:?}",
        o.problems().collect::<Vec<_>>()
    );
    o.model
}

const YAML: &str = r#"
apiVersion: portcullis.dev/v1alpha1
kind: Service
metadata: {name: s, namespace: t}
spec: {destinations: [{name: a, address: "10.0.0.1:80", weight: 3, region: eu}]}
---
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: public, namespace: t, creationTimestamp: "2026-01-01T00:00:00Z"}
spec: {match: {methods: [GET], paths: [{prefix: /}]}, backends: [{service: s}]}
---
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: admin, namespace: t, creationTimestamp: "2026-01-02T00:00:00Z"}
spec:
  match: {paths: [{prefix: /admin}]}
  backends: [{service: s}]
  auth: {scopes: [admin]}
  rateLimits: [{name: per-ip, by: [clientIP], limits: [{requests: 5, per: 1s}]}, {name: per-key, by: [apiKey], onStoreFailure: deny, limits: [{requests: 100, per: 1h}]}]
  retry: {attempts: 2, perTryTimeout: 300ms, backoff: {base: 10ms}}
  hedge: {onPerTryTimeout: true}
---
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: canary, namespace: t, creationTimestamp: "2026-01-03T00:00:00Z"}
spec: {match: {paths: [{prefix: /admin}], headers: [{name: x-canary, regex: "[0-9]+"}]}, backends: [{service: s}]}
"#;

#[test]
fn names_the_winner_its_policy_and_every_loser_with_the_step() {
    let m = model(YAML);
    let e = explain(
        &m,
        &Request::new("GET", "/ADMIN/users", &[("host", "x.test")]),
    );
    assert_eq!(e.outcome, Outcome::Routed);
    let s = e.served.as_ref().unwrap();
    assert_eq!(
        (s.route.as_str(), s.path.as_str()),
        ("t/admin", "prefix /admin")
    );
    let auth = s.auth.as_ref().unwrap();
    assert!(auth.required && auth.scopes == ["admin"] && !auth.forward_credential);
    assert!(!s.rate_limits[0].after_authentication && s.rate_limits[1].after_authentication);
    assert_eq!(s.rate_limits[1].on_failure, "deny");
    assert_eq!(s.retry.attempts, 2);
    assert_eq!(s.retry.backoff, "10ms to 100ms, full jitter");
    assert!(s.hedge);
    assert_eq!(s.backends[0].destinations[0].weight, 3);
    assert_eq!(e.lost.len(), 1);
    assert_eq!(e.lost[0].route, "t/public");
    assert_eq!(e.lost[0].step, Step::PathLength.to_string());
    let text = e.to_string();
    assert!(
        text.contains("→ Route t/admin, paths[0] (prefix /admin)"),
        "{text}"
    );
    assert!(
        text.contains("matched but lost:\n  Route t/public"),
        "{text}"
    );
}

#[test]
fn headers_decide_between_equal_paths_and_regexes_match_whole_values() {
    let m = model(YAML);
    let canary = explain(&m, &Request::new("GET", "/admin", &[("X-Canary", "42")]));
    assert_eq!(canary.served.unwrap().route, "t/canary");
    let partial = explain(&m, &Request::new("GET", "/admin", &[("x-canary", "42a")]));
    assert_eq!(partial.served.unwrap().route, "t/admin");
}

#[test]
fn refusals_redirects_and_misses_are_explained() {
    let m = model(YAML);
    let e = explain(&m, &Request::new("GET", "/admin;jsessionid=1", &[]));
    assert_eq!((e.outcome, e.status), (Outcome::Refused, Some(400)));
    let e = explain(&m, &Request::new("GET", "/admin%2Fusers", &[]));
    assert_eq!(e.redirect.as_deref(), Some("/admin/users"));
    let e = explain(&m, &Request::new("POST", "/other", &[]));
    assert_eq!((e.outcome, e.status), (Outcome::NotFound, Some(404)));
    // JSON round trip, as `portcullis explain --admin-addr` reads it.
    let json = serde_json::to_string(&e).unwrap();
    assert_eq!(serde_json::from_str::<Explanation>(&json).unwrap(), e);
}
