//! Golden files: each `tests/golden/<case>/input.yaml` is validated and translated, and
//! the Envoy resources are rendered as readable YAML (proto3 JSON names, `Any` expanded)
//! and compared with `output.yaml`. A diff here is a review aid: it shows exactly what
//! a change does to Envoy's configuration. `UPDATE_GOLDEN=1` rewrites the files.
use std::path::Path;

use portcullis_api::{Objects, validate::validate};
use portcullis_translate::{Options, RateLimitConfig, translate};
use prost::{Message, Name};
use serde_json::{Value, json};

fn to_json<M: Message + Name>(msg: &M) -> Value {
    portcullis_envoy_json::to_json(msg).unwrap_or_else(|e| panic!("{}: {e}", M::full_name()))
}

/// `RateLimitConfig` in the proto3 JSON style of the Envoy documents (it is not in the
/// Envoy descriptor pool `to_json` uses).
fn rate_limit_json(c: &RateLimitConfig) -> Value {
    let per = |d: &prost_types::Duration| match d.nanos {
        0 => format!("{}s", d.seconds),
        n => format!("{}.{}s", d.seconds, format!("{n:09}").trim_end_matches('0')),
    };
    let mut v = json!({
        "name": c.name,
        "by": c.by,
        "windows": c.windows.iter().map(|w| json!({
            "requests": w.requests,
            "per": w.per.as_ref().map(per),
        })).collect::<Vec<_>>(),
    });
    if c.shadow {
        v["shadow"] = json!(true);
    }
    if c.on_store_failure != 0 {
        v["onStoreFailure"] = json!(c.on_store_failure().as_str_name());
    }
    if c.algorithm != 0 {
        v["algorithm"] = json!(c.algorithm().as_str_name());
    }
    v
}

fn render(input: &str, options: &Options) -> String {
    let objects = Objects::parse(input).expect("golden inputs parse");
    let outcome = validate(&objects.routes, &objects.services);
    let problems: Vec<String> = outcome.problems().map(|p| p.to_string()).collect();
    let res = translate(&outcome.model, options);
    let mut docs = vec![json!({"problems": problems})];
    docs.extend(
        res.listeners
            .iter()
            .map(|r| json!({"listener": to_json(r)})),
    );
    docs.extend(
        res.route_configs
            .iter()
            .map(|r| json!({"routeConfiguration": to_json(r)})),
    );
    docs.extend(res.clusters.iter().map(|r| json!({"cluster": to_json(r)})));
    docs.extend(
        res.load_assignments
            .iter()
            .map(|r| json!({"clusterLoadAssignment": to_json(r)})),
    );
    docs.extend(
        res.rate_limit_configs
            .iter()
            .map(|c| json!({"rateLimitConfig": rate_limit_json(c)})),
    );
    docs.iter()
        .map(|d| format!("---\n{}", serde_yaml::to_string(d).unwrap()))
        .collect()
}

fn check(case: &str, options: Options) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(case);
    let input = std::fs::read_to_string(dir.join("input.yaml")).unwrap();
    let actual = render(&input, &options);
    let golden = dir.join("output.yaml");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    pretty_assertions::assert_eq!(
        expected,
        actual,
        "{case}: translator output changed; review the diff, then UPDATE_GOLDEN=1 cargo test -p portcullis-translate --test golden"
    );
}

fn base() -> Options {
    Options {
        listen_address: "0.0.0.0".into(),
        listen_port: 10000,
        ..Default::default()
    }
}

#[test]
fn basic_service_and_route() {
    check("basic", base());
}

#[test]
fn precedence_and_conflicts() {
    check("precedence", base());
}

#[test]
fn traffic_policy_every_field() {
    check("traffic-policy", base());
}

#[test]
fn auth_rate_limits_and_access_log() {
    check(
        "filters",
        Options {
            authz: Some("127.0.0.1:18002".into()),
            ratelimit: Some("ratelimit.portcullis.svc:18003".into()),
            access_log: Some("/dev/stdout".into()),
            access_log_service: Some("accesslog.portcullis.svc:18090".into()),
            access_log_headers: vec!["x-team".into()],
            otlp_collector: Some("otel-collector.observability:4317".into()),
            trace_sampling_percent: 5,
            ..base()
        },
    );
}

#[test]
fn auth_without_an_authz_service_fails_closed() {
    check("filters-missing", base());
}

#[test]
fn host_name_destinations_use_dns() {
    check("dns", base());
}
