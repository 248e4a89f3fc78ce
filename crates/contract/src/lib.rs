//! The wire contract between the control plane and the services Envoy calls.
//!
//! The translator writes these names into Envoy's configuration (rate-limit descriptors,
//! ext_authz context extensions, identity headers); Envoy passes them through untouched;
//! `portcullis authz`, `portcullis ratelimit` and `portcullis accesslog` read them back.
//! A name that differs on one side breaks auth or limits silently, so each one lives
//! here once and both sides import it. No dependencies: every crate can afford it.
#![forbid(unsafe_code)]

/// The rate-limit service: descriptors Envoy sends and the config served over xDS.
pub mod ratelimit {
    /// The rate-limit domain of every descriptor the translator emits.
    pub const DOMAIN: &str = "portcullis";
    /// First entry of every descriptor: its value is the limit's name,
    /// `namespace/route/limit`, which selects the limit's windows.
    pub const LIMIT_KEY: &str = "portcullis.limit";
    /// Dimensions a limit may count by, besides `header:<name>`. Each is also the
    /// descriptor key Envoy sends for it.
    pub const DIMENSIONS: &[&str] = &[API_KEY, USER, CLIENT_IP, ROUTE, METHOD];
    pub const API_KEY: &str = "apiKey";
    pub const USER: &str = "user";
    pub const CLIENT_IP: &str = "clientIP";
    pub const ROUTE: &str = "route";
    pub const METHOD: &str = "method";
    /// `header:<name>`: the value of a request header.
    pub const HEADER_PREFIX: &str = "header:";
    /// Dimensions whose value only exists after authentication: limits naming them
    /// run after ext_authz, every other limit before it.
    pub const IDENTITY_DIMENSIONS: &[&str] = &[API_KEY, USER];

    /// Is `dim` a dimension the translator and the service both understand?
    pub fn is_dimension(dim: &str) -> bool {
        DIMENSIONS.contains(&dim)
            || dim.strip_prefix(HEADER_PREFIX).is_some_and(|h| {
                !h.is_empty() && h.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
            })
    }
}

/// The ext_authz service: per-route policy in, identity out.
pub mod authz {
    /// `context_extensions` key: the Route (`namespace/name`), for logs and metrics.
    pub const ROUTE: &str = "portcullis.route";
    /// `context_extensions` key: `"true"` when credentials are required.
    pub const REQUIRED: &str = "portcullis.auth.required";
    /// `context_extensions` key: scopes the identity must hold, comma-separated.
    pub const SCOPES: &str = "portcullis.auth.scopes";
    /// `context_extensions` key: `"true"` to decide and log, but admit everything.
    pub const SHADOW: &str = "portcullis.auth.shadow";
    /// `context_extensions` key: `"true"` to keep the credential on the upstream request.
    pub const FORWARD_CREDENTIAL: &str = "portcullis.auth.forward_credential";

    /// Envoy's ext_authz filter name, which is also the dynamic metadata namespace its
    /// `CheckResponse.dynamic_metadata` lands in (read by rate limits and access logs).
    pub const METADATA_NAMESPACE: &str = "envoy.filters.http.ext_authz";
    /// Dynamic metadata field: the authenticated user.
    pub const METADATA_USER: &str = super::ratelimit::USER;
    /// Dynamic metadata field: the account the user belongs to.
    pub const METADATA_ACCOUNT: &str = "account";
    /// Dynamic metadata field: the API key's public id (never the key itself).
    pub const METADATA_API_KEY: &str = super::ratelimit::API_KEY;

    /// The header API keys are read from unless configured otherwise.
    pub const DEFAULT_API_KEY_HEADER: &str = "x-api-key";

    /// Headers the identity is forwarded upstream in. Only `portcullis authz` may set
    /// them: Envoy strips client-sent copies on every request.
    pub const IDENTITY_USER_HEADER: &str = "x-portcullis-user";
    pub const IDENTITY_ACCOUNT_HEADER: &str = "x-portcullis-account";
    pub const IDENTITY_SCOPES_HEADER: &str = "x-portcullis-scopes";
    pub const IDENTITY_HEADERS: &[&str] = &[
        IDENTITY_USER_HEADER,
        IDENTITY_ACCOUNT_HEADER,
        IDENTITY_SCOPES_HEADER,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_dimensions_need_a_name() {
        assert!(ratelimit::is_dimension("clientIP"));
        assert!(ratelimit::is_dimension("header:x-team"));
        assert!(!ratelimit::is_dimension("header:"));
        assert!(!ratelimit::is_dimension("header:a b"));
        assert!(!ratelimit::is_dimension("ip"));
    }
}
