//! The HTTP filter chain and the per-route pieces of authentication and rate limiting.
//!
//! Chain: header_mutation (drops client-sent identity headers, always) → rate limits
//! that need no identity → ext_authz (disabled by default, enabled per Route that has
//! `auth`) → rate limits by `apiKey` or `user` → router.
//!
//! Limits run before authentication wherever they can, so a flood of made-up API keys
//! from one address is refused by its `clientIP` limit before any of it reaches the key
//! store (whose breaker would otherwise open for everyone). Each side has two filter
//! instances, distinguished by Envoy's rate-limit `stage`: one fails open when the
//! rate-limit service is unreachable, one fails closed (503) for limits declared
//! `onStoreFailure: deny`. An instance only calls the service for the route's limits
//! of its own stage.
use envoy_types::pb::{
    envoy::{
        config::{
            common::mutation_rules::v3::{HeaderMutation as Mutation, header_mutation},
            core::v3::{ApiVersion, GrpcService, grpc_service},
            ratelimit::v3::RateLimitServiceConfig,
            route::v3::{
                RateLimit as EnvoyRateLimit,
                rate_limit::{Action, action},
            },
        },
        extensions::filters::{
            http::{
                ext_authz::v3::{ExtAuthz, ext_authz},
                header_mutation::v3::{HeaderMutation, Mutations},
                ratelimit::v3::RateLimit,
                router::v3::Router,
            },
            network::http_connection_manager::v3::{HttpFilter, http_filter},
        },
        r#type::{
            matcher::v3::{ListStringMatcher, StringMatcher, string_matcher},
            metadata::v3::{MetadataKey, metadata_key},
            v3::HttpStatus,
        },
    },
    google::protobuf::Any,
};
use portcullis_api::{RouteEntry, policy::Auth};
use portcullis_contract as contract;
use prost::Message;

use crate::{Options, proto};

/// Envoy names the filter this; it is also its dynamic metadata namespace.
pub const EXT_AUTHZ: &str = contract::authz::METADATA_NAMESPACE;
pub const RATE_LIMIT: &str = "envoy.filters.http.ratelimit";
/// Cluster names start with `_`, which no Kubernetes namespace can, so they never
/// collide with a Service's cluster (`namespace/name`).
pub const AUTHZ_CLUSTER: &str = "_portcullis/authz";
pub const RATELIMIT_CLUSTER: &str = "_portcullis/ratelimit";
/// Identity headers only `portcullis authz` may set.
pub const IDENTITY_HEADERS: &[&str] = contract::authz::IDENTITY_HEADERS;

pub fn http_filters(options: &Options) -> Vec<HttpFilter> {
    let mut filters = vec![typed_filter(
        "envoy.filters.http.header_mutation",
        proto::any(&HeaderMutation {
            mutations: Some(Mutations {
                request_mutations: stripped_identity_headers(options)
                    .into_iter()
                    .map(|h| Mutation {
                        action: Some(header_mutation::Action::Remove(h.to_string())),
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    )];
    if options.ratelimit.is_some() {
        filters.extend([Stage::PreAuthOpen, Stage::PreAuthClosed].map(rate_limit_filter));
    }
    if options.authz.is_some() {
        let mut f = typed_filter(
            EXT_AUTHZ,
            proto::any(&ExtAuthz {
                transport_api_version: ApiVersion::V3 as i32,
                services: Some(ext_authz::Services::GrpcService(grpc(AUTHZ_CLUSTER, 250))),
                // Only what the decision and its log need: every other header would be
                // encoded by Envoy and decoded by authz on every request for nothing.
                allowed_headers: Some(exact_headers(&[
                    "authorization",
                    &options.api_key_header,
                    "x-request-id",
                    "traceparent",
                    "tracestate",
                ])),
                // The service unreachable: answer 503, never let the request through.
                failure_mode_allow: false,
                status_on_error: Some(HttpStatus { code: 503 }),
                ..Default::default()
            }),
        );
        f.disabled = true;
        filters.push(f);
    }
    if options.ratelimit.is_some() {
        filters.extend([Stage::PostAuthOpen, Stage::PostAuthClosed].map(rate_limit_filter));
    }
    filters.push(typed_filter(
        "envoy.filters.http.router",
        proto::any(&Router::default()),
    ));
    filters
}

/// Where a limit runs, and what happens when the rate-limit service cannot answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    PreAuthOpen = 0,
    PreAuthClosed = 1,
    PostAuthOpen = 2,
    PostAuthClosed = 3,
}

impl Stage {
    /// Identity dimensions need ext_authz's metadata; `deny` limits fail closed.
    pub fn of(limit: &portcullis_api::policy::RateLimit) -> Stage {
        let identity = limit
            .by
            .iter()
            .any(|d| contract::ratelimit::IDENTITY_DIMENSIONS.contains(&d.as_str()));
        let closed = limit.on_store_failure == Some(portcullis_api::policy::StoreFailure::Deny);
        match (identity, closed) {
            (false, false) => Stage::PreAuthOpen,
            (false, true) => Stage::PreAuthClosed,
            (true, false) => Stage::PostAuthOpen,
            (true, true) => Stage::PostAuthClosed,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Stage::PreAuthOpen => "portcullis.ratelimit.pre_auth",
            Stage::PreAuthClosed => "portcullis.ratelimit.pre_auth.fail_closed",
            Stage::PostAuthOpen => "portcullis.ratelimit.post_auth",
            Stage::PostAuthClosed => "portcullis.ratelimit.post_auth.fail_closed",
        }
    }

    fn fails_closed(self) -> bool {
        matches!(self, Stage::PreAuthClosed | Stage::PostAuthClosed)
    }
}

fn rate_limit_filter(stage: Stage) -> HttpFilter {
    let closed = stage.fails_closed();
    typed_filter(
        stage.name(),
        proto::any(&RateLimit {
            domain: contract::ratelimit::DOMAIN.into(),
            stage: stage as u32,
            request_type: "external".into(),
            // The service bounds its store at 20ms; this bounds the whole call. The
            // service itself applies each limit's policy when its store fails; this is
            // for when the service cannot be reached at all.
            timeout: proto::duration(std::time::Duration::from_millis(100)),
            failure_mode_deny: closed,
            status_on_error: closed.then_some(HttpStatus { code: 503 }),
            stat_prefix: stage
                .name()
                .trim_start_matches("portcullis.")
                .replace('.', "_"),
            // portcullis ratelimit sends RateLimit-* (and Retry-After on 429) in
            // response_headers_to_add, which Envoy copies to both OK and 429 answers;
            // Envoy's own X-RateLimit-* set would be a second, different copy.
            rate_limit_service: Some(RateLimitServiceConfig {
                grpc_service: Some(grpc(RATELIMIT_CLUSTER, 100)),
                transport_api_version: ApiVersion::V3 as i32,
            }),
            ..Default::default()
        }),
    )
}

/// The configured identity header names, then the default ones when they differ: a
/// backend written against the defaults must not be fooled by a client either.
fn stripped_identity_headers(options: &Options) -> Vec<&str> {
    let mut names = options.identity_headers.all().to_vec();
    for &d in IDENTITY_HEADERS {
        if !names.contains(&d) {
            names.push(d);
        }
    }
    names
}

fn exact_headers(names: &[&str]) -> ListStringMatcher {
    ListStringMatcher {
        patterns: names
            .iter()
            .map(|n| StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::Exact(n.to_string())),
                ..Default::default()
            })
            .collect(),
    }
}

fn typed_filter(name: &str, config: Any) -> HttpFilter {
    HttpFilter {
        name: name.into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(config)),
        ..Default::default()
    }
}

pub(crate) fn grpc(cluster: &str, timeout_ms: u64) -> GrpcService {
    GrpcService {
        target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
            grpc_service::EnvoyGrpc {
                cluster_name: cluster.into(),
                // The :authority defaults to the cluster name, and `/` is not valid in
                // an authority: hyper/h2 servers (tonic) reset such streams.
                authority: cluster.trim_start_matches('_').replace('/', "-"),
                ..Default::default()
            },
        )),
        timeout: proto::duration(std::time::Duration::from_millis(timeout_ms)),
        ..Default::default()
    }
}

/// Per-route ext_authz config enabling the filter with the Route's policy in
/// `context_extensions`. Encoded by hand because prost encodes maps in HashMap order,
/// which changes between processes and would change the resource version (and push an
/// update) on every rebuild.
pub fn authz_per_route(entry: &RouteEntry, auth: &Auth, options: &Options) -> Any {
    let mut ext: Vec<(&str, String)> = vec![
        // Header names the control plane owns, so the service reads and writes the ones
        // Envoy forwards and strips (its own settings are only a fallback).
        (
            contract::authz::API_KEY_HEADER,
            options.api_key_header.clone(),
        ),
        (
            contract::authz::IDENTITY_HEADER_NAMES,
            options.identity_headers.to_string(),
        ),
        (contract::authz::REQUIRED, auth.required().to_string()),
        (contract::authz::SCOPES, auth.scopes.join(",")),
        (
            contract::authz::SHADOW,
            auth.shadow.unwrap_or(false).to_string(),
        ),
        (
            contract::authz::FORWARD_CREDENTIAL,
            auth.forward_credential.unwrap_or(false).to_string(),
        ),
        (
            contract::authz::ROUTE,
            format!("{}/{}", entry.key.namespace, entry.key.name),
        ),
    ];
    ext.sort();
    // CheckSettings { map<string,string> context_extensions = 1; }
    let mut settings = Vec::new();
    for (k, v) in ext {
        let mut pair = Vec::new();
        prost::encoding::string::encode(1, &k.to_string(), &mut pair);
        prost::encoding::string::encode(2, &v, &mut pair);
        prost::encoding::bytes::encode(1, &pair, &mut settings);
    }
    // ExtAuthzPerRoute { oneof override { bool disabled = 1; CheckSettings check_settings = 2; } }
    let mut per_route = Vec::new();
    prost::encoding::bytes::encode(2, &settings, &mut per_route);
    let any = Any {
        type_url: "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute"
            .into(),
        value: per_route,
    };
    debug_assert!(
        envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::ExtAuthzPerRoute::decode(
            &*any.value
        )
        .is_ok()
    );
    any
}

/// Envoy `rate_limits` of a Route: one descriptor per limit, `portcullis.limit` first,
/// then the dimensions in declared order. A missing value (no API key, say) drops the
/// whole descriptor (`skip_if_absent: false`; `true` would send it one entry short), so
/// a limit never counts requests it cannot attribute.
pub fn rate_limits(entry: &RouteEntry) -> Vec<EnvoyRateLimit> {
    let route = format!("{}/{}", entry.key.namespace, entry.key.name);
    entry
        .route
        .spec
        .rate_limits
        .iter()
        .map(|limit| {
            let name = crate::limit_name(&entry.key.namespace, &entry.key.name, &limit.name);
            let mut actions = vec![generic(contract::ratelimit::LIMIT_KEY, &name)];
            for dim in &limit.by {
                use contract::ratelimit as d;
                actions.push(match dim.as_str() {
                    d::API_KEY | d::USER => metadata(dim),
                    d::CLIENT_IP => Action {
                        action_specifier: Some(action::ActionSpecifier::RemoteAddress(
                            Default::default(),
                        )),
                    },
                    d::ROUTE => generic(d::ROUTE, &route),
                    d::METHOD => header(":method", d::METHOD),
                    other => {
                        let name = other.strip_prefix(d::HEADER_PREFIX).unwrap_or(other);
                        header(&name.to_ascii_lowercase(), other)
                    }
                });
            }
            EnvoyRateLimit {
                stage: proto::u32v(Stage::of(limit) as u32),
                actions,
                ..Default::default()
            }
        })
        .collect()
}

fn generic(key: &str, value: &str) -> Action {
    Action {
        action_specifier: Some(action::ActionSpecifier::GenericKey(action::GenericKey {
            descriptor_key: key.into(),
            descriptor_value: value.into(),
            ..Default::default()
        })),
    }
}

fn header(name: &str, key: &str) -> Action {
    Action {
        action_specifier: Some(action::ActionSpecifier::RequestHeaders(
            action::RequestHeaders {
                header_name: name.into(),
                descriptor_key: key.into(),
                skip_if_absent: false,
            },
        )),
    }
}

/// Identity written by ext_authz as dynamic metadata under its filter name.
fn metadata(key: &str) -> Action {
    Action {
        action_specifier: Some(action::ActionSpecifier::Metadata(action::MetaData {
            descriptor_key: key.into(),
            metadata_key: Some(MetadataKey {
                key: EXT_AUTHZ.into(),
                path: vec![metadata_key::PathSegment {
                    segment: Some(metadata_key::path_segment::Segment::Key(key.into())),
                }],
            }),
            source: action::meta_data::Source::Dynamic as i32,
            skip_if_absent: false,
            ..Default::default()
        })),
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::{
        ExtAuthzPerRoute, ext_authz_per_route,
    };

    use super::*;

    fn entry(yaml: &str) -> RouteEntry {
        let objects = portcullis_api::Objects::parse(yaml).unwrap();
        let o = portcullis_api::validate::validate(&objects.routes, &objects.services);
        assert_eq!(
            o.problems().count(),
            0,
            "{:?}",
            o.problems().collect::<Vec<_>>()
        );
        (*o.model.routes[0]).clone()
    }

    const YAML: &str = "apiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {name: s, namespace: t}\nspec: {destinations: [{name: a, address: '10.0.0.1:80'}]}\n---\napiVersion: portcullis.dev/v1alpha1\nkind: Route\nmetadata: {name: r, namespace: t}\nspec: {match: {paths: [{prefix: /}]}, backends: [{service: s}], auth: {scopes: [a, b], shadow: true}, rateLimits: [{name: per-key, by: [apiKey, clientIP, 'header:X-Team', method, route], limits: [{requests: 5, per: 1s}]}]}\n";

    #[test]
    fn authz_per_route_is_deterministic_and_carries_the_policy() {
        let e = entry(YAML);
        let auth = e.route.spec.auth.clone().unwrap();
        let options = Options {
            api_key_header: "x-tenant-key".into(),
            identity_headers: contract::authz::IdentityHeaderNames::parse("user=x-id-user")
                .unwrap(),
            ..Default::default()
        };
        let a = authz_per_route(&e, &auth, &options);
        assert_eq!(
            a,
            authz_per_route(&e, &auth, &options),
            "same input, same bytes"
        );
        let decoded = ExtAuthzPerRoute::decode(&*a.value).unwrap();
        let Some(ext_authz_per_route::Override::CheckSettings(s)) = decoded.r#override else {
            panic!("no check settings")
        };
        let ext = s.context_extensions;
        assert_eq!(ext["portcullis.route"], "t/r");
        assert_eq!(ext["portcullis.auth.required"], "true");
        assert_eq!(ext["portcullis.auth.scopes"], "a,b");
        assert_eq!(ext["portcullis.auth.shadow"], "true");
        assert_eq!(ext["portcullis.auth.api_key_header"], "x-tenant-key");
        assert_eq!(
            ext["portcullis.auth.identity_headers"],
            "user=x-id-user,account=x-portcullis-account,scopes=x-portcullis-scopes"
        );
    }

    #[test]
    fn configured_and_default_identity_headers_are_stripped_on_every_request() {
        let removed = |options: &Options| -> Vec<String> {
            let chain = http_filters(options);
            let Some(http_filter::ConfigType::TypedConfig(any)) = &chain[0].config_type else {
                panic!("header_mutation first")
            };
            let m = HeaderMutation::decode(&*any.value).unwrap();
            m.mutations
                .unwrap()
                .request_mutations
                .into_iter()
                .map(|m| match m.action {
                    Some(header_mutation::Action::Remove(h)) => h,
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        assert_eq!(removed(&Options::default()), IDENTITY_HEADERS);
        let custom = Options {
            identity_headers: contract::authz::IdentityHeaderNames::parse(
                "user=x-id-user,scopes=x-id-scopes",
            )
            .unwrap(),
            ..Default::default()
        };
        assert_eq!(
            removed(&custom),
            [
                "x-id-user",
                "x-portcullis-account",
                "x-id-scopes",
                "x-portcullis-user",
                "x-portcullis-scopes"
            ]
        );
    }

    #[test]
    fn rate_limit_descriptors_start_with_the_limit_then_follow_by() {
        let limits = rate_limits(&entry(YAML));
        assert_eq!(limits.len(), 1);
        let kinds: Vec<String> = limits[0]
            .actions
            .iter()
            .map(|a| match a.action_specifier.as_ref().unwrap() {
                action::ActionSpecifier::GenericKey(g) => {
                    format!("{}={}", g.descriptor_key, g.descriptor_value)
                }
                action::ActionSpecifier::Metadata(m) => format!("{}<-metadata", m.descriptor_key),
                action::ActionSpecifier::RemoteAddress(_) => "remote_address".into(),
                action::ActionSpecifier::RequestHeaders(h) => {
                    format!("{}<-{}", h.descriptor_key, h.header_name)
                }
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "portcullis.limit=t/r/per-key",
                "apiKey<-metadata",
                "remote_address",
                "header:X-Team<-x-team",
                "method<-:method",
                "route=t/r"
            ]
        );
    }
}
