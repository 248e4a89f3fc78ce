//! Route `rateLimits` → `RateLimitConfig` resources for `portcullis ratelimit`, one per
//! limit, named like the `portcullis.limit` descriptor entry Envoy sends for it
//! (`<namespace>/<route>/<limit>`, see [`crate::filters::rate_limits`]).
//!
//! The message has no maps, so its encoding (and with it the xDS version) depends on
//! the model alone.
use std::collections::BTreeMap;

use portcullis_api::{
    Model, ObjectKey,
    isolate::isolate,
    policy::{RateLimit, StoreFailure},
};
use portcullis_proto::ratelimit::v1::{FailurePolicy, RateLimitConfig, Window};

/// The name of a Route limit: the value of its `portcullis.limit` descriptor entry.
pub fn limit_name(namespace: &str, route: &str, limit: &str) -> String {
    format!("{namespace}/{route}/{limit}")
}

/// One config per limit of every served Route, sorted by name. A Route served through
/// several entries (several paths, or copied into wildcard virtual hosts) shares its
/// limits across all of them, so each limit appears once.
pub fn rate_limit_configs(
    model: &Model,
    failed: &mut Vec<(ObjectKey, String)>,
) -> Vec<RateLimitConfig> {
    let mut by_name = BTreeMap::new();
    for entry in &model.routes {
        for limit in &entry.route.spec.rate_limits {
            let name = limit_name(&entry.key.namespace, &entry.key.name, &limit.name);
            if by_name.contains_key(&name) {
                continue;
            }
            match isolate(|| config(name.clone(), limit)) {
                Ok(c) => {
                    by_name.insert(name, c);
                }
                Err(panic) => failed.push((entry.key.clone(), panic)),
            }
        }
    }
    by_name.into_values().collect()
}

fn config(name: String, limit: &RateLimit) -> RateLimitConfig {
    RateLimitConfig {
        name,
        by: limit.by.clone(),
        windows: limit
            .limits
            .iter()
            .map(|w| Window {
                requests: w.requests,
                per: Some(prost_types::Duration {
                    seconds: w.per.as_std().as_secs() as i64,
                    nanos: w.per.as_std().subsec_nanos() as i32,
                }),
            })
            .collect(),
        shadow: limit.shadow.unwrap_or(false),
        // Unset stays unspecified, so the service's `--on-store-failure` decides.
        on_store_failure: match limit.on_store_failure {
            None => FailurePolicy::Unspecified,
            Some(StoreFailure::Allow) => FailurePolicy::Allow,
            Some(StoreFailure::Deny) => FailurePolicy::Deny,
        } as i32,
        // The API has no algorithm field: the service's default (sliding) applies.
        algorithm: 0,
    }
}

#[cfg(test)]
mod tests {
    use portcullis_api::validate::validate;
    use prost::Message;

    use super::*;

    fn model(yaml: &str) -> Model {
        let objects = portcullis_api::Objects::parse(yaml).unwrap();
        let o = validate(&objects.routes, &objects.services);
        assert_eq!(
            o.problems().count(),
            0,
            "{:?}",
            o.problems().collect::<Vec<_>>()
        );
        o.model
    }

    const SERVICE: &str = "apiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {name: s, namespace: t}\nspec: {destinations: [{name: a, address: '10.0.0.1:80'}]}\n";

    fn route(name: &str, spec: &str) -> String {
        format!(
            "---\napiVersion: portcullis.dev/v1alpha1\nkind: Route\nmetadata: {{name: {name}, namespace: t}}\nspec: {spec}\n"
        )
    }

    #[test]
    fn one_config_per_route_limit_named_like_the_descriptor() {
        let yaml = SERVICE.to_string()
            + &route(
                "r",
                "{hosts: [a.example.com, '*.example.com'], match: {paths: [{prefix: /a}, {exact: /b}]}, backends: [{service: s}], auth: {}, rateLimits: [{name: per-key, by: [apiKey, 'header:X-Team'], limits: [{requests: 5, per: 1s}, {requests: 100, per: 1m}], onStoreFailure: deny}, {name: per-ip, by: [clientIP], limits: [{requests: 50, per: 1s}], shadow: true}]}",
            )
            + &route(
                "plain",
                "{match: {paths: [{prefix: /p}]}, backends: [{service: s}]}",
            );
        let configs = rate_limit_configs(&model(&yaml), &mut Vec::new());
        let names: Vec<&str> = configs.iter().map(|c| c.name.as_str()).collect();
        // Two paths, two hosts: still one config per limit.
        assert_eq!(names, ["t/r/per-ip", "t/r/per-key"]);
        let per_key = &configs[1];
        assert_eq!(per_key.by, ["apiKey", "header:X-Team"]);
        let windows: Vec<(u32, i64)> = per_key
            .windows
            .iter()
            .map(|w| (w.requests, w.per.unwrap().seconds))
            .collect();
        assert_eq!(windows, [(5, 1), (100, 60)]);
        assert_eq!(per_key.on_store_failure, FailurePolicy::Deny as i32);
        assert!(!per_key.shadow);
        let per_ip = &configs[0];
        assert!(per_ip.shadow);
        assert_eq!(per_ip.on_store_failure, FailurePolicy::Unspecified as i32);
        assert_eq!(per_ip.algorithm, 0);
    }

    #[test]
    fn same_model_same_bytes() {
        let yaml = SERVICE.to_string()
            + &route(
                "r",
                "{match: {paths: [{prefix: /}]}, backends: [{service: s}], rateLimits: [{name: b, by: [clientIP, method, route], limits: [{requests: 1, per: 1500ms}]}, {name: a, by: [clientIP], limits: [{requests: 2, per: 1h}], onStoreFailure: allow}]}",
            );
        let encode = || {
            rate_limit_configs(&model(&yaml), &mut Vec::new())
                .iter()
                .map(Message::encode_to_vec)
                .collect::<Vec<_>>()
        };
        assert_eq!(encode(), encode());
        let configs = rate_limit_configs(&model(&yaml), &mut Vec::new());
        assert_eq!(configs[0].on_store_failure, FailurePolicy::Allow as i32);
        let per = configs[1].windows[0].per.unwrap();
        assert_eq!((per.seconds, per.nanos), (1, 500_000_000));
    }

    #[test]
    fn routes_without_limits_give_nothing() {
        let yaml = SERVICE.to_string()
            + &route(
                "r",
                "{match: {paths: [{prefix: /}]}, backends: [{service: s}]}",
            );
        assert!(rate_limit_configs(&model(&yaml), &mut Vec::new()).is_empty());
    }
}
