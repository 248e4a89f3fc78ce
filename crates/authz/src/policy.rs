//! A route's auth policy, as the control plane put it in the route's ext_authz
//! `context_extensions` (so this service needs no routing config of its own), together
//! with the header names the control plane owns.
pub use portcullis_contract::authz::{
    API_KEY_HEADER, FORWARD_CREDENTIAL, IDENTITY_HEADER_NAMES, REQUIRED, ROUTE, SCOPES, SHADOW,
};
use portcullis_contract::authz::{IdentityHeaderNames, check_header_name};

use crate::request::Pairs;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePolicy {
    /// `<namespace>/<name>` of the Route, for logs.
    pub route: String,
    pub required: bool,
    pub scopes: Vec<String>,
    pub shadow: bool,
    /// Keep the credential on the upstream request (`auth.forwardCredential`).
    pub forward_credential: bool,
    /// The control plane's API key header; `None`: this service's own setting.
    pub api_key_header: Option<String>,
    /// The control plane's identity header names; `None`: this service's own setting.
    pub identity_headers: Option<IdentityHeaderNames>,
}

impl RoutePolicy {
    /// Missing keys mean the strictest reading: a check without context (an Envoy
    /// configured by hand, say) requires credentials, is enforced and strips the
    /// credential. Header names that do not parse are ignored (the service's own
    /// setting applies): the control plane validated them, so only a version skew
    /// gets here.
    pub fn from_context(ext: &(impl Pairs + ?Sized)) -> RoutePolicy {
        let flag = |k: &str, default: bool| match ext.value(k) {
            Some("true") => true,
            Some("false") => false,
            _ => default,
        };
        let api_key_header = ext
            .value(API_KEY_HEADER)
            .map(|h| h.to_ascii_lowercase())
            .filter(|h| check_header_name(h).is_ok() && h != "authorization");
        let identity_headers = ext.value(IDENTITY_HEADER_NAMES).and_then(|t| {
            let names = IdentityHeaderNames::parse(t).ok()?;
            let key = api_key_header.as_deref().unwrap_or("authorization");
            names.check(key).is_ok().then_some(names)
        });
        RoutePolicy {
            route: ext.value(ROUTE).unwrap_or("-").to_string(),
            required: flag(REQUIRED, true),
            scopes: ext
                .value(SCOPES)
                .map(|s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            shadow: flag(SHADOW, false),
            forward_credential: flag(FORWARD_CREDENTIAL, false),
            api_key_header,
            identity_headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn ext(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_the_translator_keys_and_defaults_to_strict() {
        let p = RoutePolicy::from_context(&ext(&[
            (ROUTE, "shop/orders"),
            (REQUIRED, "false"),
            (SCOPES, "orders:read, orders:write"),
            (SHADOW, "true"),
            (FORWARD_CREDENTIAL, "true"),
            (API_KEY_HEADER, "X-Key"),
            (
                IDENTITY_HEADER_NAMES,
                "user=x-id-user,account=x-id-account,scopes=x-id-scopes",
            ),
        ]));
        assert_eq!(p.route, "shop/orders");
        assert!(!p.required && p.shadow && p.forward_credential);
        assert_eq!(p.scopes, vec!["orders:read", "orders:write"]);
        assert_eq!(p.api_key_header.as_deref(), Some("x-key"));
        assert_eq!(p.identity_headers.unwrap().user, "x-id-user");
        let strict = RoutePolicy::from_context(&HashMap::new());
        assert!(strict.required && !strict.shadow && !strict.forward_credential);
        assert!(strict.scopes.is_empty());
        assert_eq!(
            (strict.api_key_header, strict.identity_headers),
            (None, None)
        );
    }

    #[test]
    fn odd_header_names_in_the_context_fall_back_to_the_service_setting() {
        for (k, v) in [
            (API_KEY_HEADER, "x key"),
            (API_KEY_HEADER, "authorization"),
            (API_KEY_HEADER, ":path"),
            (IDENTITY_HEADER_NAMES, "user=authorization"),
            (IDENTITY_HEADER_NAMES, "role=x"),
            (IDENTITY_HEADER_NAMES, "user=x-a,account=x-a"),
        ] {
            let p = RoutePolicy::from_context(&ext(&[(k, v)]));
            assert_eq!(
                (p.api_key_header, p.identity_headers),
                (None, None),
                "{k}={v}"
            );
        }
    }
}
