//! The wire contract between the translator and this service, without Envoy: a Route
//! translated by the control plane, its ext_authz context extensions fed to the
//! service's Check, and the identity headers the service sets checked against the ones
//! the translator strips from client requests. A name changed on one side only fails
//! here.
use std::collections::HashMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::{
    ExtAuthzPerRoute, ext_authz_per_route,
};
use envoy_types::pb::envoy::extensions::filters::http::header_mutation::v3::HeaderMutation;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_filter,
};
use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, attribute_context, check_response::HttpResponse,
};
use portcullis_authz::{
    Authorizer, AuthzGrpc, CacheConfig, Digest, Identity, IdentityCache, IdentityHeaders, KeyStore,
    Metrics, RoutePolicy, store::Lookup,
};
use portcullis_contract::authz::IdentityHeaderNames;
use prost::Message;

const MANIFESTS: &str = "apiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {name: s, namespace: shop}\nspec: {destinations: [{name: a, address: '10.0.0.1:80'}]}\n---\napiVersion: portcullis.dev/v1alpha1\nkind: Route\nmetadata: {name: orders, namespace: shop}\nspec: {match: {paths: [{prefix: /orders}]}, backends: [{service: s}], auth: {scopes: [orders:read], forwardCredential: true}}\n";

fn translated(options: &portcullis_translate::Options) -> portcullis_translate::Resources {
    let objects = portcullis_api::Objects::parse(MANIFESTS).unwrap();
    let outcome = portcullis_api::validate::validate(&objects.routes, &objects.services);
    assert_eq!(outcome.problems().count(), 0);
    portcullis_translate::translate(&outcome.model, options)
}

fn context_extensions(rc: &RouteConfiguration) -> HashMap<String, String> {
    let route = rc
        .virtual_hosts
        .iter()
        .flat_map(|v| &v.routes)
        .find(|r| {
            r.typed_per_filter_config
                .contains_key(portcullis_translate::filters::EXT_AUTHZ)
        })
        .expect("a route with ext_authz config");
    let any = &route.typed_per_filter_config[portcullis_translate::filters::EXT_AUTHZ];
    match ExtAuthzPerRoute::decode(&*any.value).unwrap().r#override {
        Some(ext_authz_per_route::Override::CheckSettings(s)) => s.context_extensions,
        other => panic!("{other:?}"),
    }
}

/// What the header_mutation filter removes from every request.
fn stripped(res: &portcullis_translate::Resources) -> Vec<String> {
    let listener = &res.listeners[0];
    let hcm = listener.filter_chains[0].filters[0]
        .config_type
        .as_ref()
        .unwrap();
    let envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(any) = hcm
    else {
        panic!("typed HCM")
    };
    let hcm = HttpConnectionManager::decode(&*any.value).unwrap();
    let f = hcm
        .http_filters
        .iter()
        .find(|f| f.name == "envoy.filters.http.header_mutation")
        .expect("header_mutation");
    let Some(http_filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        panic!()
    };
    let m = HeaderMutation::decode(&*any.value).unwrap();
    m.mutations
        .unwrap()
        .request_mutations
        .into_iter()
        .filter_map(|m| match m.action? {
            envoy_types::pb::envoy::config::common::mutation_rules::v3::header_mutation::Action::Remove(h) => Some(h),
            _ => None,
        })
        .collect()
}

struct OneKey;

impl KeyStore for OneKey {
    fn lookup<'a>(&'a self, secret: &'a str, _: Digest) -> Lookup<'a> {
        let found = (secret == "k1").then(|| Identity {
            user: "alice".into(),
            account: "acme".into(),
            scopes: vec!["orders:read".into()],
            key_id: "k1".into(),
            ..Default::default()
        });
        Box::pin(std::future::ready(Ok(found)))
    }
    fn kind(&self) -> &'static str {
        "test"
    }
}

#[tokio::test]
async fn a_translated_route_is_read_by_the_service_as_the_control_plane_meant() {
    let options = portcullis_translate::Options {
        authz: Some("127.0.0.1:1".into()),
        api_key_header: "x-tenant-key".into(),
        identity_headers: IdentityHeaderNames::parse("user=x-id-user,account=x-id-account")
            .unwrap(),
        ..Default::default()
    };
    let res = translated(&options);
    let ext = context_extensions(&res.route_configs[0]);
    let policy = RoutePolicy::from_context(&ext);
    assert_eq!(policy.route, "shop/orders");
    assert!(policy.required && !policy.shadow && policy.forward_credential);
    assert_eq!(policy.scopes, vec!["orders:read"]);
    assert_eq!(policy.api_key_header.as_deref(), Some("x-tenant-key"));
    assert_eq!(
        policy.identity_headers.as_ref(),
        Some(&options.identity_headers)
    );
    let removed = stripped(&res);
    for name in options.identity_headers.all() {
        assert!(
            removed.iter().any(|r| r == name),
            "{name} not stripped: {removed:?}"
        );
    }

    // The service, configured with different (deprecated) names, follows the Route's.
    let metrics = Metrics::new(&prometheus::Registry::new()).unwrap();
    let store: Arc<dyn KeyStore> = Arc::new(OneKey);
    let authorizer = Authorizer::new(
        "x-api-key",
        IdentityCache::new(CacheConfig::default()),
        Some(store),
        None,
        metrics,
    );
    let svc = AuthzGrpc::new(Arc::new(authorizer), IdentityHeaders::default());
    let request = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                http: Some(attribute_context::HttpRequest {
                    headers: [("x-tenant-key".to_string(), "k1".to_string())].into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions: ext,
            ..Default::default()
        }),
    };
    let Some(HttpResponse::OkResponse(ok)) = svc.check(&request).await.http_response else {
        panic!("not admitted")
    };
    let set: Vec<&str> = ok
        .headers
        .iter()
        .map(|h| h.header.as_ref().unwrap().key.as_str())
        .collect();
    assert_eq!(set, ["x-id-user", "x-id-account", "x-portcullis-scopes"]);
    for name in set {
        assert!(
            removed.iter().any(|r| r == name),
            "{name} set but never stripped"
        );
    }
    assert!(
        !ok.headers_to_remove.iter().any(|h| h == "x-tenant-key"),
        "forwardCredential: the key stays"
    );
}
