use envoy_types::pb::{
    envoy::{
        config::{
            cluster::v3::{Cluster, cluster::LbPolicy},
            core::v3::{
                AggregatedConfigSource, ConfigSource, config_source::ConfigSourceSpecifier,
            },
            listener::v3::{Filter, FilterChain, Listener, filter::ConfigType},
        },
        extensions::filters::{
            http::router::v3::Router,
            network::http_connection_manager::v3::{
                HttpConnectionManager, HttpFilter, Rds, http_connection_manager::RouteSpecifier,
                http_filter,
            },
        },
    },
    google::protobuf::{Any, BoolValue, Duration},
};
use portcullis_envoy_json::{Error, any_to_json, any_to_yaml, to_json, to_yaml};
use prost::Name;
use serde_json::json;

fn pack<M: prost::Message + Name>(msg: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: msg.encode_to_vec(),
    }
}

fn listener() -> Listener {
    let router = Router {
        suppress_envoy_headers: true,
        ..Default::default()
    };
    let hcm = HttpConnectionManager {
        stat_prefix: "ingress_http".into(),
        stream_idle_timeout: Some(Duration {
            seconds: 10,
            nanos: 0,
        }),
        normalize_path: Some(BoolValue { value: true }),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            route_config_name: "http".into(),
            config_source: Some(ConfigSource {
                config_source_specifier: Some(ConfigSourceSpecifier::Ads(
                    AggregatedConfigSource {},
                )),
                ..Default::default()
            }),
        })),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack(&router))),
            ..Default::default()
        }],
        ..Default::default()
    };
    Listener {
        name: "http".into(),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(ConfigType::TypedConfig(pack(&hcm))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn listener_expands_nested_any() {
    let yaml = to_yaml(&listener()).unwrap();
    assert!(
        yaml.contains("'@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"),
        "{yaml}"
    );
    assert!(
        yaml.contains(
            "'@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
        ),
        "{yaml}"
    );
    assert!(yaml.contains("statPrefix: ingress_http"), "{yaml}");
    assert!(yaml.contains("streamIdleTimeout: 10s"), "{yaml}");
    assert!(yaml.contains("suppressEnvoyHeaders: true"), "{yaml}");

    let json = to_json(&listener()).unwrap();
    let hcm = &json["filterChains"][0]["filters"][0]["typedConfig"];
    assert_eq!(hcm["normalizePath"], json!(true), "wrapper as plain value");
    assert_eq!(hcm["rds"]["configSource"], json!({"ads": {}}));
    // Defaults are omitted.
    assert!(hcm.get("useRemoteAddress").is_none(), "{hcm}");
}

#[test]
fn cluster_enum_and_duration() {
    let cluster = Cluster {
        name: "backend".into(),
        connect_timeout: Some(Duration {
            seconds: 1,
            nanos: 500_000_000,
        }),
        lb_policy: LbPolicy::LeastRequest.into(),
        per_connection_buffer_limit_bytes: Some(envoy_types::pb::google::protobuf::UInt32Value {
            value: 32768,
        }),
        ..Default::default()
    };
    let json = to_json(&cluster).unwrap();
    assert_eq!(
        json,
        json!({
            "name": "backend",
            "connectTimeout": "1.500s",
            "lbPolicy": "LEAST_REQUEST",
            "perConnectionBufferLimitBytes": 32768,
        })
    );
    let yaml = to_yaml(&cluster).unwrap();
    assert!(yaml.contains("lbPolicy: LEAST_REQUEST"), "{yaml}");
}

#[test]
fn any_roundtrip_and_unknown_type() {
    let any = pack(&Router::default());
    assert_eq!(
        any_to_json(&any).unwrap(),
        json!({"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"})
    );
    assert!(any_to_yaml(&any).unwrap().starts_with("'@type': "));

    let unknown = Any {
        type_url: "type.googleapis.com/example.NotAType".into(),
        value: vec![],
    };
    assert!(matches!(any_to_json(&unknown), Err(Error::UnknownType(t)) if t == "example.NotAType"));

    // An unknown Any nested inside a known message is an error too, not silent garbage.
    let listener = Listener {
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "x".into(),
                config_type: Some(ConfigType::TypedConfig(unknown)),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    assert!(to_json(&listener).is_err());
}

#[test]
fn output_is_deterministic() {
    assert_eq!(to_yaml(&listener()).unwrap(), to_yaml(&listener()).unwrap());
}

#[test]
fn pool_knows_the_types_portcullis_renders() {
    for name in [
        "envoy.config.listener.v3.Listener",
        "envoy.config.route.v3.RouteConfiguration",
        "envoy.config.cluster.v3.Cluster",
        "envoy.config.endpoint.v3.ClusterLoadAssignment",
        "envoy.config.bootstrap.v3.Bootstrap",
        "envoy.config.trace.v3.OpenTelemetryConfig",
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "envoy.extensions.filters.http.router.v3.Router",
        "envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
        "envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute",
        "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        "envoy.extensions.filters.http.health_check.v3.HealthCheck",
        "envoy.extensions.filters.http.cors.v3.CorsPolicy",
        "envoy.extensions.filters.http.header_mutation.v3.HeaderMutationPerRoute",
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig",
        "envoy.extensions.access_loggers.file.v3.FileAccessLog",
        "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
        "google.protobuf.Any",
    ] {
        assert!(
            portcullis_envoy_json::pool()
                .get_message_by_name(name)
                .is_some(),
            "{name}"
        );
    }
}
