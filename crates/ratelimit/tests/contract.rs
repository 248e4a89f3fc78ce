//! The wire contract between the translator and this service, without Envoy: a Route's
//! limits translated by the control plane (the `RateLimitConfig`s and the Route's
//! `rate_limits` actions), the descriptors Envoy would build from those actions, and the
//! service deciding on them. A domain, key or limit name changed on one side only fails
//! here.
use std::sync::Arc;

use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
use envoy_types::pb::envoy::config::route::v3::{
    RateLimit as EnvoyRateLimit, RouteConfiguration, rate_limit::action::ActionSpecifier,
    route::Action,
};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor::Entry,
};
use envoy_types::pb::envoy::extensions::filters::http::ratelimit::v3::RateLimit;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_filter,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, rate_limit_response::Code};
use portcullis_ratelimit::{Defaults, LimitTable, Limiter, apply_rate_limit_configs};
use prost::Message;

const MANIFESTS: &str = "apiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {name: s, namespace: shop}\nspec: {destinations: [{name: a, address: '10.0.0.1:80'}]}\n---\napiVersion: portcullis.dev/v1alpha1\nkind: Route\nmetadata: {name: orders, namespace: shop}\nspec:\n  match: {paths: [{prefix: /orders}]}\n  backends: [{service: s}]\n  auth: {required: true}\n  rateLimits:\n    - {name: per-ip, by: [clientIP, route], limits: [{requests: 2, per: 1m}]}\n    - {name: per-user, by: [user, 'header:X-Team'], limits: [{requests: 3, per: 1m}]}\n";

fn translated() -> portcullis_translate::Resources {
    let objects = portcullis_api::Objects::parse(MANIFESTS).unwrap();
    let outcome = portcullis_api::validate::validate(&objects.routes, &objects.services);
    assert_eq!(outcome.problems().count(), 0);
    let options = portcullis_translate::Options {
        ratelimit: Some("127.0.0.1:1".into()),
        authz: Some("127.0.0.1:2".into()),
        ..Default::default()
    };
    portcullis_translate::translate(&outcome.model, &options)
}

/// The domain every ratelimit filter instance on the listener sends.
fn domains(res: &portcullis_translate::Resources) -> Vec<String> {
    let Some(ConfigType::TypedConfig(any)) =
        &res.listeners[0].filter_chains[0].filters[0].config_type
    else {
        panic!("typed HCM")
    };
    let hcm = HttpConnectionManager::decode(&*any.value).unwrap();
    hcm.http_filters
        .iter()
        .filter_map(|f| match &f.config_type {
            Some(http_filter::ConfigType::TypedConfig(any))
                if any
                    .type_url
                    .ends_with("filters.http.ratelimit.v3.RateLimit") =>
            {
                Some(RateLimit::decode(&*any.value).unwrap().domain)
            }
            _ => None,
        })
        .collect()
}

fn route_limits(rcs: &[RouteConfiguration]) -> Vec<EnvoyRateLimit> {
    rcs.iter()
        .flat_map(|rc| &rc.virtual_hosts)
        .flat_map(|v| &v.routes)
        .find_map(|r| match &r.action {
            Some(Action::Route(a)) if !a.rate_limits.is_empty() => Some(a.rate_limits.clone()),
            _ => None,
        })
        .expect("a route with rate_limits")
}

/// What Envoy sends for one request: each action's entry, in order, as Envoy documents
/// them (generic key: its key and value; remote address: `remote_address`; request
/// header and dynamic metadata: their descriptor key with the value found).
fn descriptor(limit: &EnvoyRateLimit, ip: &str, user: &str, team: &str) -> RateLimitDescriptor {
    let entries = limit
        .actions
        .iter()
        .map(|a| match a.action_specifier.as_ref().unwrap() {
            ActionSpecifier::GenericKey(g) => {
                (g.descriptor_key.clone(), g.descriptor_value.clone())
            }
            ActionSpecifier::RemoteAddress(_) => ("remote_address".into(), ip.into()),
            ActionSpecifier::Metadata(m) => {
                let key = m.metadata_key.as_ref().unwrap();
                // Envoy reads it from what ext_authz returned, under its filter name.
                assert_eq!(
                    key.key,
                    portcullis_contract::authz::METADATA_NAMESPACE,
                    "the namespace authz writes its dynamic metadata to"
                );
                (m.descriptor_key.clone(), user.into())
            }
            ActionSpecifier::RequestHeaders(h) => {
                assert_eq!(h.header_name, "x-team", "header names are sent lower-case");
                (h.descriptor_key.clone(), team.into())
            }
            other => panic!("an action the contract does not know: {other:?}"),
        })
        .map(|(key, value)| Entry { key, value })
        .collect();
    RateLimitDescriptor {
        entries,
        ..Default::default()
    }
}

#[tokio::test]
async fn translated_limits_are_decided_by_the_service_as_the_control_plane_meant() {
    let res = translated();
    let domains = domains(&res);
    assert!(!domains.is_empty(), "the listener has ratelimit filters");
    for d in &domains {
        assert_eq!(
            d,
            portcullis_ratelimit::DOMAIN,
            "filter domain = service domain"
        );
    }

    let table = Arc::new(LimitTable::default());
    apply_rate_limit_configs(&table, &res.rate_limit_configs, "v1", Defaults::default())
        .expect("the service accepts what the control plane serves");
    let limiter = Limiter::builder(table).build();
    let limits = route_limits(&res.route_configs);
    assert_eq!(limits.len(), 2);

    let decide = |limit: usize, ip: &str, user: &str| {
        let req = RateLimitRequest {
            domain: domains[0].clone(),
            descriptors: vec![descriptor(&limits[limit], ip, user, "blue")],
            hits_addend: 1,
        };
        let limiter = &limiter;
        async move { limiter.should_rate_limit(&req).await.overall_code }
    };
    let ok = Code::Ok as i32;
    let over = Code::OverLimit as i32;

    // per-ip: 2 a minute for one address; another address has its own count.
    let mut codes = vec![];
    for _ in 0..3 {
        codes.push(decide(0, "192.0.2.1", "alice").await);
    }
    assert_eq!(codes, [ok, ok, over], "per-ip is enforced at its limit");
    assert_eq!(decide(0, "192.0.2.2", "alice").await, ok);

    // per-user: 3 a minute per user, whatever the address.
    let mut codes = vec![];
    for ip in ["192.0.2.3", "192.0.2.4", "192.0.2.5", "192.0.2.6"] {
        codes.push(decide(1, ip, "bob").await);
    }
    assert_eq!(
        codes,
        [ok, ok, ok, over],
        "per-user is enforced at its limit"
    );
    assert_eq!(decide(1, "192.0.2.3", "carol").await, ok);

    // A descriptor naming a limit the service was not given is not limited (and is
    // not a lookalike of a real one).
    let mut unknown = descriptor(&limits[1], "192.0.2.9", "bob", "blue");
    unknown.entries[0].value.push_str("-other");
    let req = RateLimitRequest {
        domain: domains[0].clone(),
        descriptors: vec![unknown],
        hits_addend: 1,
    };
    assert_eq!(limiter.should_rate_limit(&req).await.overall_code, ok);
}
