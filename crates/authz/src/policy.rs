//! A route's auth policy, as the control plane put it in the route's ext_authz
//! `context_extensions` (so this service needs no routing config of its own).
use std::collections::HashMap;

pub use portcullis_contract::authz::{REQUIRED, ROUTE, SCOPES, SHADOW};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePolicy {
    /// `<namespace>/<name>` of the Route, for logs.
    pub route: String,
    pub required: bool,
    pub scopes: Vec<String>,
    pub shadow: bool,
}

impl RoutePolicy {
    /// Missing keys mean the strictest reading: a check without context (an Envoy
    /// configured by hand, say) requires credentials and is enforced.
    pub fn from_context(ext: &HashMap<String, String>) -> RoutePolicy {
        let flag = |k: &str, default: bool| match ext.get(k).map(String::as_str) {
            Some("true") => true,
            Some("false") => false,
            _ => default,
        };
        RoutePolicy {
            route: ext.get(ROUTE).cloned().unwrap_or_else(|| "-".into()),
            required: flag(REQUIRED, true),
            scopes: ext
                .get(SCOPES)
                .map(|s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            shadow: flag(SHADOW, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_translator_keys_and_defaults_to_strict() {
        let ext: HashMap<String, String> = [
            (ROUTE, "shop/orders"),
            (REQUIRED, "false"),
            (SCOPES, "orders:read, orders:write"),
            (SHADOW, "true"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let p = RoutePolicy::from_context(&ext);
        assert_eq!(p.route, "shop/orders");
        assert!(!p.required && p.shadow);
        assert_eq!(p.scopes, vec!["orders:read", "orders:write"]);
        let strict = RoutePolicy::from_context(&HashMap::new());
        assert!(strict.required && !strict.shadow && strict.scopes.is_empty());
    }
}
