//! Finding the credential in a request: an API key header (default `x-api-key`) or
//! `Authorization: Bearer <token>`. A bearer token shaped like a JWT (three base64url
//! parts) is validated locally; any other token is an opaque key for the key store.
use crate::request::Pairs;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    ApiKey(String),
    Jwt(String),
    Opaque(String),
}

/// Why no usable credential was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// Nothing presented.
    None,
    /// Something presented that is not a credential (e.g. `Authorization: Basic`).
    Malformed(&'static str),
}

/// Envoy lower-cases header names in `CheckRequest.attributes.request.http.headers`.
pub fn extract(headers: &(impl Pairs + ?Sized), key_header: &str) -> Result<Credential, Missing> {
    if let Some(key) = headers.value(key_header) {
        let key = key.trim();
        if key.is_empty() {
            return Err(Missing::Malformed("empty API key header"));
        }
        return Ok(Credential::ApiKey(key.to_string()));
    }
    let Some(auth) = headers.value("authorization") else {
        return Err(Missing::None);
    };
    let (scheme, token) = auth.trim().split_once(' ').unwrap_or((auth.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Missing::Malformed("Authorization scheme is not Bearer"));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(Missing::Malformed("empty bearer token"));
    }
    Ok(if looks_like_jwt(token) {
        Credential::Jwt(token.to_string())
    } else {
        Credential::Opaque(token.to_string())
    })
}

fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts[..2].iter().all(|p| !p.is_empty())
        && parts.iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        && parts[0].starts_with("eyJ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn h(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn api_key_header_wins_over_authorization() {
        let got = extract(
            &h(&[("x-api-key", " k1 "), ("authorization", "Bearer t")]),
            "x-api-key",
        );
        assert_eq!(got, Ok(Credential::ApiKey("k1".into())));
    }

    #[test]
    fn bearer_tokens_are_jwt_or_opaque() {
        let jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln";
        assert_eq!(
            extract(
                &h(&[("authorization", &format!("bearer {jwt}"))]),
                "x-api-key"
            ),
            Ok(Credential::Jwt(jwt.into()))
        );
        assert_eq!(
            extract(&h(&[("authorization", "Bearer abc.def")]), "x-api-key"),
            Ok(Credential::Opaque("abc.def".into()))
        );
    }

    #[test]
    fn missing_and_malformed_are_told_apart() {
        assert_eq!(extract(&h(&[]), "x-api-key"), Err(Missing::None));
        assert!(matches!(
            extract(&h(&[("authorization", "Basic dTpw")]), "x-api-key"),
            Err(Missing::Malformed(_))
        ));
        assert!(matches!(
            extract(&h(&[("authorization", "Bearer ")]), "x-api-key"),
            Err(Missing::Malformed(_))
        ));
        assert!(matches!(
            extract(&h(&[("x-api-key", "")]), "x-api-key"),
            Err(Missing::Malformed(_))
        ));
    }
}
