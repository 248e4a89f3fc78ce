//! Golden files: each `tests/golden/<case>/input.yaml` is validated and translated, and
//! the Envoy resources are rendered as readable YAML (proto3 JSON names, `Any` expanded)
//! and compared with `output.yaml`. A diff here is a review aid: it shows exactly what
//! a change does to Envoy's configuration. `UPDATE_GOLDEN=1` rewrites the files.
use std::{path::Path, sync::OnceLock};

use portcullis_api::{Document, parse_documents, validate::validate};
use portcullis_translate::{Options, translate};
use prost::{Message, Name};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::{Value, json};

/// Envoy's .proto files ship inside the envoy-types package; find them via cargo.
fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let root = envoy_types_protos();
        let includes: Vec<_> = ["data-plane-api", "xds", "protoc-gen-validate", "googleapis", "cel-spec", "opentelemetry-proto", "client_model"]
            .iter()
            .map(|d| root.join(d))
            .filter(|p| p.is_dir())
            .collect();
        let files = [
            "envoy/config/listener/v3/listener.proto",
            "envoy/config/route/v3/route.proto",
            "envoy/config/cluster/v3/cluster.proto",
            "envoy/config/endpoint/v3/endpoint.proto",
            "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
            "envoy/extensions/filters/http/router/v3/router.proto",
            "envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto",
            "envoy/extensions/filters/http/ratelimit/v3/rate_limit.proto",
            "envoy/extensions/filters/http/header_mutation/v3/header_mutation.proto",
            "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
            "envoy/extensions/access_loggers/file/v3/file.proto",
            "envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto",
            "envoy/extensions/retry/priority/previous_priorities/v3/previous_priorities_config.proto",
        ];
        let fds = protox::compile(files, includes).expect("Envoy protos compile");
        DescriptorPool::from_file_descriptor_set(fds).expect("descriptor pool")
    })
}

/// `$CARGO_HOME/registry/src/*/envoy-types-<version>/proto`, the version read from
/// Cargo.lock. (`cargo metadata --offline` would need every platform's crates.)
fn envoy_types_protos() -> std::path::PathBuf {
    let lock =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock"))
            .unwrap();
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"envoy-types\""))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .expect("envoy-types in Cargo.lock")
        .trim_matches('"')
        .to_owned();
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var("HOME").unwrap()).join(".cargo"));
    let registry = home.join("registry/src");
    for index in std::fs::read_dir(&registry).unwrap().flatten() {
        let dir = index.path().join(format!("envoy-types-{version}/proto"));
        if dir.is_dir() {
            return dir;
        }
    }
    panic!(
        "envoy-types {version} sources not found under {}; run cargo fetch",
        registry.display()
    )
}

fn to_json<M: Message + Name>(msg: &M) -> Value {
    let desc = pool()
        .get_message_by_name(&M::full_name())
        .unwrap_or_else(|| panic!("{} unknown", M::full_name()));
    let dynamic = DynamicMessage::decode(desc, &*msg.encode_to_vec()).unwrap();
    let options = SerializeOptions::new().stringify_64_bit_integers(false);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .unwrap()
}

fn render(input: &str, options: &Options) -> String {
    let (mut routes, mut services) = (vec![], vec![]);
    for doc in parse_documents(input) {
        match doc.expect("golden inputs parse") {
            Document::Route(r) => routes.push(*r),
            Document::Service(s) => services.push(*s),
        }
    }
    let outcome = validate(&routes, &services);
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
