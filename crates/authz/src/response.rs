//! Turning a [`Decision`] into Envoy's `CheckResponse`.
//!
//! Allowed: identity headers set on the upstream request (overwriting anything the
//! client sent), the ones without a value removed, the consumed credential removed
//! (unless the Route forwards it), and dynamic metadata
//! `{user, account, apiKey}` under `envoy.filters.http.ext_authz` for the rate
//! limiter's identity dimensions (`apiKey` is the key's public id, never the key).
//! Denied: 401 / 403 / 503 with `WWW-Authenticate` and a small JSON body whose `error`
//! is a stable code.
use std::collections::HashMap;

use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, header_value_option::HeaderAppendAction,
};
use envoy_types::pb::envoy::service::auth::v3::{
    CheckResponse, DeniedHttpResponse, OkHttpResponse, check_response::HttpResponse,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use envoy_types::pb::google::rpc::Status;

use portcullis_contract::authz as contract;

use crate::check::Decision;
use crate::identity::Identity;

/// Names of the headers identities are forwarded in.
pub type IdentityHeaders = contract::IdentityHeaderNames;

// google.rpc.Code values.
const OK: i32 = 0;
const PERMISSION_DENIED: i32 = 7;
const UNAVAILABLE: i32 = 14;
const UNAUTHENTICATED: i32 = 16;

/// `admit` is false only for an enforced (non-shadow) denial. `strip`: headers to
/// remove from an admitted request (the credential it was admitted on).
pub fn build(
    decision: &Decision,
    admit: bool,
    names: &IdentityHeaders,
    strip: &[&str],
    route: &str,
    request_id: &str,
) -> CheckResponse {
    if admit {
        let identity = match decision {
            Decision::Allowed(id) => Some(id.as_ref()),
            // Shadow mode lets denials through without an identity: the upstream must
            // not mistake a shadow-denied caller for an authenticated one.
            _ => None,
        };
        return ok(identity, names, strip);
    }
    let (http, rpc, code, message, challenge) = match decision {
        Decision::Unauthenticated { code, reason } => (
            401,
            UNAUTHENTICATED,
            *code,
            reason.clone(),
            Some(match *code {
                "missing_credentials" => r#"Bearer realm="portcullis""#.to_string(),
                _ => r#"Bearer realm="portcullis", error="invalid_token""#.to_string(),
            }),
        ),
        Decision::Forbidden { missing, .. } => (
            403,
            PERMISSION_DENIED,
            "insufficient_scope",
            format!("missing scopes: {}", missing.join(" ")),
            Some(format!(
                r#"Bearer realm="portcullis", error="insufficient_scope", scope="{}""#,
                missing.join(" ")
            )),
        ),
        Decision::Unavailable { .. } => (
            503,
            UNAVAILABLE,
            "identity_unavailable",
            // The backend's error stays in our logs; clients learn only that it failed.
            "the identity service is unavailable; retry shortly".to_string(),
            None,
        ),
        Decision::Allowed(_) | Decision::Anonymous => unreachable!("admitted above"),
    };
    let body = serde_json::json!({
        "error": code,
        "message": message,
        "route": route,
        "requestId": request_id,
    });
    let mut headers = vec![
        header("content-type", "application/json"),
        header("cache-control", "no-store"),
    ];
    if let Some(c) = challenge {
        headers.push(header("www-authenticate", &c));
    }
    if http == 503 {
        headers.push(header("retry-after", "1"));
    }
    CheckResponse {
        status: Some(Status {
            code: rpc,
            message: code.to_string(),
            ..Default::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: http }),
            headers,
            body: body.to_string(),
        })),
        ..Default::default()
    }
}

fn ok(identity: Option<&Identity>, names: &IdentityHeaders, strip: &[&str]) -> CheckResponse {
    let mut set = Vec::new();
    let mut remove: Vec<String> = strip.iter().map(|h| h.to_string()).collect();
    let mut metadata = HashMap::new();
    let (user, account, scopes) = identity
        .map(|id| (id.user.clone(), id.account.clone(), id.scopes.join(" ")))
        .unwrap_or_default();
    for (name, value, meta) in [
        (&names.user, user, Some(contract::METADATA_USER)),
        (&names.account, account, Some(contract::METADATA_ACCOUNT)),
        (&names.scopes, scopes, None),
    ] {
        if value.is_empty() {
            remove.push(name.to_string());
            continue;
        }
        if let Some(key) = meta {
            metadata.insert(key.to_string(), string(&value));
        }
        set.push(header(name, &value));
    }
    if let Some(id) = identity {
        metadata.insert(contract::METADATA_API_KEY.into(), string(&id.key_id));
    }
    CheckResponse {
        status: Some(Status {
            code: OK,
            ..Default::default()
        }),
        dynamic_metadata: (!metadata.is_empty()).then_some(Struct { fields: metadata }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: set,
            headers_to_remove: remove,
            ..Default::default()
        })),
    }
}

fn string(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_string())),
    }
}

fn header(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn names() -> IdentityHeaders {
        IdentityHeaders::default()
    }

    fn headers(r: &CheckResponse) -> Vec<(String, String)> {
        let hs = match &r.http_response {
            Some(HttpResponse::OkResponse(o)) => &o.headers,
            Some(HttpResponse::DeniedResponse(d)) => &d.headers,
            _ => panic!("no http response"),
        };
        hs.iter()
            .map(|h| {
                let h = h.header.as_ref().unwrap();
                (h.key.clone(), h.value.clone())
            })
            .collect()
    }

    #[test]
    fn allowed_sets_identity_and_metadata_and_removes_empty_headers() {
        let id = Arc::new(Identity {
            user: "alice".into(),
            scopes: vec!["a".into(), "b".into()],
            key_id: "k1".into(),
            ..Default::default()
        });
        let r = build(
            &Decision::Allowed(id),
            true,
            &names(),
            &["x-api-key", "authorization"],
            "ns/r",
            "rid",
        );
        assert_eq!(r.status.as_ref().unwrap().code, OK);
        assert_eq!(
            headers(&r),
            vec![
                ("x-portcullis-user".into(), "alice".into()),
                ("x-portcullis-scopes".into(), "a b".into())
            ]
        );
        let Some(HttpResponse::OkResponse(ok)) = &r.http_response else {
            panic!()
        };
        assert_eq!(
            ok.headers_to_remove,
            vec!["x-api-key", "authorization", "x-portcullis-account"]
        );
        let md = &r.dynamic_metadata.as_ref().unwrap().fields;
        assert_eq!(md.get("user"), Some(&string("alice")));
        assert_eq!(md.get("apiKey"), Some(&string("k1")));
        assert!(!md.contains_key("account"));
    }

    #[test]
    fn anonymous_and_shadow_admits_strip_every_identity_header() {
        for d in [
            Decision::Anonymous,
            Decision::Unauthenticated {
                code: "invalid_credentials",
                reason: "x".into(),
            },
        ] {
            let r = build(&d, true, &names(), &[], "ns/r", "rid");
            let Some(HttpResponse::OkResponse(ok)) = &r.http_response else {
                panic!()
            };
            assert!(ok.headers.is_empty());
            assert_eq!(ok.headers_to_remove.len(), 3);
            assert!(r.dynamic_metadata.is_none());
        }
    }

    #[test]
    fn denials_carry_status_challenge_and_a_stable_code() {
        let cases = [
            (
                Decision::Unauthenticated {
                    code: "missing_credentials",
                    reason: "send one".into(),
                },
                401,
                Some(r#"Bearer realm="portcullis""#),
            ),
            (
                Decision::Forbidden {
                    identity: Arc::default(),
                    missing: vec!["w".into()],
                },
                403,
                Some(r#"Bearer realm="portcullis", error="insufficient_scope", scope="w""#),
            ),
            (
                Decision::Unavailable {
                    reason: "db down: secret detail".into(),
                },
                503,
                None,
            ),
        ];
        for (d, status, challenge) in cases {
            let r = build(&d, false, &names(), &["x-api-key"], "ns/r", "rid-1");
            let Some(HttpResponse::DeniedResponse(denied)) = &r.http_response else {
                panic!()
            };
            assert_eq!(denied.status.as_ref().unwrap().code, status);
            assert_ne!(r.status.as_ref().unwrap().code, OK);
            let hs = headers(&r);
            let www = hs
                .iter()
                .find(|(k, _)| k == "www-authenticate")
                .map(|(_, v)| v.as_str());
            assert_eq!(www, challenge);
            let body: serde_json::Value = serde_json::from_str(&denied.body).unwrap();
            assert_eq!(body["requestId"], "rid-1");
            assert!(
                !denied.body.contains("secret detail"),
                "backend errors stay in logs"
            );
        }
    }
}
