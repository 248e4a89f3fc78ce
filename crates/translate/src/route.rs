//! The route table: a virtual host per host named by any Route, each holding the
//! matching Routes (its own, wildcard ones that cover it, and host-less ones) in the
//! model's precedence order; plus the `*` virtual host with the host-less Routes.
use envoy_types::pb::envoy::{
    config::route::v3::{
        HeaderMatcher, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
        WeightedCluster, header_matcher::HeaderMatchSpecifier, route,
        route_action::ClusterSpecifier, route_match::PathSpecifier,
        weighted_cluster::ClusterWeight,
    },
    r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher::MatchPattern},
};
use portcullis_api::{
    HeaderMatch, Model, ObjectKey, RouteEntry,
    isolate::isolate,
    table::{ANY_HOST, HostTable},
};

use envoy_types::pb::envoy::config::{
    core::v3::{DataSource, data_source},
    route::v3::DirectResponseAction,
};

use crate::{ROUTE_CONFIG_NAME, cluster::cluster_name, filters, proto, route_policy};

/// Name of the Envoy route made from one path of a Route: `namespace/name/index`.
pub fn route_name(entry: &RouteEntry) -> String {
    format!(
        "{}/{}/{}",
        entry.key.namespace, entry.key.name, entry.path_index
    )
}

/// `validate_clusters: false`: routes are only ever added or changed through xDS; no
/// need to validate clusters at load (ordering already guarantees they exist) and it is
/// slow at 10k routes.
pub(crate) const NO_CLUSTER_VALIDATION: envoy_types::pb::google::protobuf::BoolValue =
    envoy_types::pb::google::protobuf::BoolValue { value: false };

/// `failed` gets the Routes whose translation panicked, or whose Service's did; they
/// are left out of every host.
pub fn route_configuration(
    model: &Model,
    options: &crate::Options,
    failed: &mut Vec<(ObjectKey, String)>,
) -> RouteConfiguration {
    let failed_services: Vec<ObjectKey> = failed.iter().map(|(k, _)| k.clone()).collect();
    let virtual_hosts = model
        .table()
        .into_iter()
        .map(|table| virtual_host(&table, model, options, &failed_services, failed))
        .collect();
    RouteConfiguration {
        name: ROUTE_CONFIG_NAME.into(),
        virtual_hosts,
        validate_clusters: Some(NO_CLUSTER_VALIDATION),
        ..Default::default()
    }
}

/// The virtual host of one domain. `failed_services`: Services whose translation
/// panicked; `failed` gets the entries left out (theirs, or their own panic).
pub(crate) fn virtual_host(
    table: &HostTable<'_>,
    model: &Model,
    options: &crate::Options,
    failed_services: &[ObjectKey],
    failed: &mut Vec<(ObjectKey, String)>,
) -> VirtualHost {
    // The name is what stats show (`envoy_virtual_host`); the domain matches.
    let name = if table.domain == ANY_HOST {
        ANY_HOST.to_string()
    } else {
        crate::cluster::stat_name(&table.domain)
    };
    let mut routes = vec![path_parameter_guard()];
    for e in &table.entries {
        if let Some((svc, _)) = e.backends.iter().find(|(s, _)| failed_services.contains(s)) {
            failed.push((
                e.key.clone(),
                format!("its backend {svc} could not be translated"),
            ));
            continue;
        }
        match isolate(|| envoy_routes(e, model, options)) {
            Ok(r) => routes.extend(r),
            Err(panic) => failed.push((e.key.clone(), panic)),
        }
    }
    let mut vhost = VirtualHost {
        name,
        routes,
        ..Default::default()
    };
    host_tls(&mut vhost, model, &table.domain);
    vhost.domains = vec![table.domain.clone()];
    vhost
}

/// A domain owned by a Host serving HTTPS: plain-HTTP requests get a 301 to HTTPS
/// (unless the Host sets `redirect: false`), and HTTPS responses carry HSTS when asked.
fn host_tls(vhost: &mut VirtualHost, model: &Model, domain: &str) {
    use envoy_types::pb::envoy::config::{
        core::v3::{HeaderValue, HeaderValueOption, header_value_option::HeaderAppendAction},
        route::v3::virtual_host::TlsRequirementType,
    };
    let Some((_, owner)) = portcullis_api::model::owner(&model.hosts, domain) else {
        return;
    };
    let (Some(tls), Some(_)) = (&owner.host.spec.tls, &owner.certificate) else {
        return;
    };
    if tls.redirect() {
        vhost.require_tls = TlsRequirementType::All as i32;
    }
    if let Some(h) = &tls.hsts {
        let mut value = format!("max-age={}", h.max_age.as_std().as_secs());
        if h.include_sub_domains == Some(true) {
            value.push_str("; includeSubDomains");
        }
        if h.preload == Some(true) {
            value.push_str("; preload");
        }
        vhost.response_headers_to_add.push(HeaderValueOption {
            header: Some(HeaderValue {
                key: "strict-transport-security".into(),
                value,
                ..Default::default()
            }),
            append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            ..Default::default()
        });
    }
}

/// Name of the route that refuses paths with parameters.
pub const PATH_PARAMETER_ROUTE: &str = "_portcullis/path-parameters";

/// First route of every host: a path with `;`, an encoded `;` (`%3B`) or an encoded
/// `%` (`%25`) is refused (400). Servlet-style backends read `/admin;x` as `/admin`
/// with a path parameter (some decode `%3B` first), and double-decoding backends read
/// `/%2561dmin` as `/admin`, while Envoy matches each as a different path: such a
/// request could reach an authenticated Route's backend through a public Route
/// (`prefix: /`). Spring Security's strict firewall refuses the same. Envoy itself
/// decodes `%61`, merges `//`, resolves `/../` and redirects `%2F` before routing. The
/// query string is not part of the match.
fn path_parameter_guard() -> Route {
    Route {
        name: PATH_PARAMETER_ROUTE.into(),
        r#match: Some(RouteMatch {
            path_specifier: Some(PathSpecifier::SafeRegex(RegexMatcher {
                regex: ".*(;|%3[Bb]|%25).*".into(),
                ..Default::default()
            })),
            ..Default::default()
        }),
        action: Some(route::Action::DirectResponse(DirectResponseAction {
            status: 400,
            body: Some(DataSource {
                specifier: Some(data_source::Specifier::InlineString(
                    r#"{"error":"path_parameters","message":"paths with ';', %3B or %25 are not accepted"}"#
                        .into(),
                )),
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..Default::default()
    }
}

trait IntoBool {
    fn into_bool(self) -> envoy_types::pb::google::protobuf::BoolValue;
}

impl IntoBool for bool {
    fn into_bool(self) -> envoy_types::pb::google::protobuf::BoolValue {
        envoy_types::pb::google::protobuf::BoolValue { value: self }
    }
}

/// The Envoy routes of one entry: usually one, two when retries must treat
/// idempotent and other methods differently (see route_policy.rs).
fn envoy_routes(entry: &RouteEntry, model: &Model, options: &crate::Options) -> Vec<Route> {
    let variants = route_policy::variants(entry, model);
    let split = variants.len() > 1;
    variants
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let mut route = envoy_route(entry, v.methods.as_deref().unwrap_or(&entry.methods));
            if split {
                route.name = format!(
                    "{}/{}",
                    route.name,
                    if i == 0 { "idempotent" } else { "other" }
                );
            }
            if let Some(route::Action::Route(action)) = &mut route.action {
                action.retry_policy = Some(v.retry);
                action.hedge_policy = v.hedge;
                action.hash_policy = route_policy::hash_policies(entry, model);
                if options.ratelimit.is_some() {
                    action.rate_limits = filters::rate_limits(entry);
                }
            }
            if let Some(auth) = &entry.route.spec.auth {
                if options.authz.is_some() {
                    route.typed_per_filter_config =
                        [(filters::EXT_AUTHZ.to_string(), filters::authz_per_route(entry, auth, options))].into();
                } else {
                    // Fail closed: a Route that asks for auth is never served without it.
                    route.action = Some(route::Action::DirectResponse(DirectResponseAction {
                        status: 503,
                        body: Some(DataSource {
                            specifier: Some(data_source::Specifier::InlineString(
                                r#"{"error":"auth_unavailable","message":"this route requires authentication, but no authz service is configured"}"#.into(),
                            )),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }));
                }
            }
            route
        })
        .collect()
}

fn envoy_route(entry: &RouteEntry, methods: &[String]) -> Route {
    let (exact, path) = entry.path_parts();
    let path_specifier = if exact {
        PathSpecifier::Path(path.into())
    } else if path == "/" || path.ends_with('/') {
        PathSpecifier::Prefix(path.into())
    } else {
        // `prefix: /api` matches /api and /api/..., never /apix: whole segments only.
        PathSpecifier::PathSeparatedPrefix(path.into())
    };
    let mut headers: Vec<HeaderMatcher> = Vec::new();
    if !methods.is_empty() {
        let pattern = if methods.len() == 1 {
            MatchPattern::Exact(methods[0].clone())
        } else {
            MatchPattern::SafeRegex(RegexMatcher {
                regex: format!("^({})$", methods.join("|")),
                ..Default::default()
            })
        };
        headers.push(string_header(":method", pattern));
    }
    headers.extend(entry.headers.iter().map(header_matcher));
    Route {
        name: route_name(entry),
        // Per-Route stats (vhost.<host>.route.<namespace>/<name>.*) read as the Route.
        stat_prefix: crate::cluster::stat_name(&format!(
            "{}/{}",
            entry.key.namespace, entry.key.name
        )),
        r#match: Some(RouteMatch {
            path_specifier: Some(path_specifier),
            // Some backends treat /ADMIN as /admin: a case-sensitive match would let
            // such a spelling past an authenticated Route to a broader public one.
            case_sensitive: Some(false.into_bool()),
            headers,
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(cluster_specifier(entry)),
            timeout: proto::duration(entry.timeout.as_std()),
            idle_timeout: proto::duration(
                entry
                    .route
                    .spec
                    .idle_timeout
                    .map_or(crate::defaults::ROUTE_IDLE_TIMEOUT, |t| t.0),
            ),
            ..Default::default()
        })),
        tracing: entry.route.spec.tracing.as_ref().map(route_tracing),
        ..Default::default()
    }
}

/// Overrides the connection manager's random sampling for this Route; Envoy ignores
/// it when it has no tracer configured.
fn route_tracing(
    t: &portcullis_api::RouteTracing,
) -> envoy_types::pb::envoy::config::route::v3::Tracing {
    use envoy_types::pb::envoy::r#type::v3::{
        FractionalPercent, fractional_percent::DenominatorType,
    };
    envoy_types::pb::envoy::config::route::v3::Tracing {
        random_sampling: Some(FractionalPercent {
            // Millionths keep fractions such as 0.5% exact.
            numerator: (t.sampling_percent.clamp(0.0, 100.0) * 10_000.0).round() as u32,
            denominator: DenominatorType::Million as i32,
        }),
        ..Default::default()
    }
}

fn cluster_specifier(entry: &RouteEntry) -> ClusterSpecifier {
    match entry.backends.as_slice() {
        [(service, _)] => ClusterSpecifier::Cluster(cluster_name(service)),
        many => ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: many
                .iter()
                .map(|(service, weight)| ClusterWeight {
                    name: cluster_name(service),
                    weight: proto::u32v(*weight),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
    }
}

fn string_header(name: &str, pattern: MatchPattern) -> HeaderMatcher {
    HeaderMatcher {
        name: name.into(),
        header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(StringMatcher {
            match_pattern: Some(pattern),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn header_matcher(h: &HeaderMatch) -> HeaderMatcher {
    let pattern = match (&h.exact, &h.prefix, &h.regex) {
        (Some(v), _, _) => MatchPattern::Exact(v.clone()),
        (_, Some(v), _) => MatchPattern::Prefix(v.clone()),
        (_, _, Some(v)) => MatchPattern::SafeRegex(RegexMatcher {
            regex: v.clone(),
            ..Default::default()
        }),
        _ => {
            return HeaderMatcher {
                name: h.name.clone(),
                header_match_specifier: Some(HeaderMatchSpecifier::PresentMatch(true)),
                ..Default::default()
            };
        }
    };
    string_header(&h.name, pattern)
}
