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
    /// `context_extensions` key: the header API keys are read from (the control plane's
    /// `--api-key-header`). Absent: the service's own (deprecated) `apiKeyHeader`.
    pub const API_KEY_HEADER: &str = "portcullis.auth.api_key_header";
    /// `context_extensions` key: the identity header names, in the
    /// [`IdentityHeaderNames`] text form (the control plane's `--identity-headers`).
    /// Absent: the service's own (deprecated) `identityHeaders`.
    pub const IDENTITY_HEADER_NAMES: &str = "portcullis.auth.identity_headers";

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

    /// The names of the three identity headers. Text form (flag, env and context
    /// extension): `user=<name>,account=<name>,scopes=<name>`, any subset, in any order;
    /// a name not given keeps its default.
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    pub struct IdentityHeaderNames {
        pub user: String,
        pub account: String,
        pub scopes: String,
    }

    impl Default for IdentityHeaderNames {
        fn default() -> Self {
            IdentityHeaderNames {
                user: IDENTITY_USER_HEADER.into(),
                account: IDENTITY_ACCOUNT_HEADER.into(),
                scopes: IDENTITY_SCOPES_HEADER.into(),
            }
        }
    }

    impl IdentityHeaderNames {
        pub fn all(&self) -> [&str; 3] {
            [&self.user, &self.account, &self.scopes]
        }

        /// Parses the text form; names are lower-cased. The error says what to write.
        pub fn parse(text: &str) -> Result<IdentityHeaderNames, String> {
            let mut names = IdentityHeaderNames::default();
            for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let Some((field, name)) = part.split_once('=') else {
                    return Err(format!(
                        "`{part}`: write field=header-name, e.g. user=x-auth-user"
                    ));
                };
                let name = name.trim().to_ascii_lowercase();
                let slot = match field.trim() {
                    "user" => &mut names.user,
                    "account" => &mut names.account,
                    "scopes" => &mut names.scopes,
                    other => {
                        return Err(format!(
                            "`{other}` is not an identity header; use user, account or scopes"
                        ));
                    }
                };
                *slot = name;
            }
            Ok(names)
        }

        /// The names must be usable header names, distinct from each other and from the
        /// headers credentials arrive in (an upstream must never mistake one for the
        /// other).
        pub fn check(&self, api_key_header: &str) -> Result<(), String> {
            for (field, name) in [
                ("user", &self.user),
                ("account", &self.account),
                ("scopes", &self.scopes),
            ] {
                check_header_name(name).map_err(|e| format!("{field}: {e}"))?;
                if name == api_key_header || name == "authorization" {
                    return Err(format!(
                        "{field}: `{name}` carries credentials; pick another name"
                    ));
                }
            }
            let [u, a, s] = self.all();
            if u == a || u == s || a == s {
                return Err("user, account and scopes need three different names".into());
            }
            Ok(())
        }
    }

    impl std::fmt::Display for IdentityHeaderNames {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "user={},account={},scopes={}",
                self.user, self.account, self.scopes
            )
        }
    }

    /// Headers no setting may name: Envoy owns them or they frame the message.
    const RESERVED: &[&str] = &[
        "host",
        "connection",
        "content-length",
        "content-type",
        "cookie",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
        "x-request-id",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-envoy-original-path",
    ];

    /// A lower-case HTTP header name (letters, digits, `-`, `_`; at most 100 bytes) that
    /// is neither a pseudo-header nor one Envoy or HTTP framing owns.
    pub fn check_header_name(name: &str) -> Result<(), String> {
        if name.is_empty()
            || name.len() > 100
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "`{name}` is not a header name; use 1 to 100 lower-case letters, digits, - or _"
            ));
        }
        if RESERVED.contains(&name) || name.starts_with("x-envoy-") {
            return Err(format!(
                "`{name}` is owned by Envoy or HTTP itself; pick another name"
            ));
        }
        Ok(())
    }
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

    #[test]
    fn identity_header_names_round_trip_and_refuse_bad_names() {
        use authz::IdentityHeaderNames as N;
        let d = N::default();
        assert_eq!(N::parse(&d.to_string()), Ok(d.clone()));
        assert_eq!(N::parse(""), Ok(d.clone()));
        let n = N::parse(" scopes = X-Id-Scopes , user=x-id-user").unwrap();
        assert_eq!(
            n.all(),
            ["x-id-user", authz::IDENTITY_ACCOUNT_HEADER, "x-id-scopes"]
        );
        assert_eq!(N::parse(&n.to_string()), Ok(n.clone()));
        assert!(n.check("x-api-key").is_ok());
        for (text, want) in [
            ("user", "write field=header-name"),
            ("role=x-role", "use user, account or scopes"),
        ] {
            assert!(N::parse(text).unwrap_err().contains(want), "{text}");
        }
        for (text, want) in [
            ("user=x-api-key", "carries credentials"),
            ("user=Authorization", "carries credentials"),
            ("user=x-portcullis-account", "three different names"),
            ("account=host", "owned by Envoy"),
            ("scopes=x-envoy-internal", "owned by Envoy"),
            ("user=x y", "not a header name"),
            ("user=", "not a header name"),
        ] {
            let err = N::parse(text).unwrap().check("x-api-key").unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
        assert!(authz::check_header_name(&"a".repeat(101)).is_err());
    }
}

/// mTLS between Portcullis components: how a client certificate names the Envoy node it
/// may subscribe as, and the static secrets an Envoy bootstrap defines for its own
/// client certificate (the translator's gRPC clusters refer to them by name).
pub mod mtls {
    /// A client certificate's URI subject alternative name `NODE_URI_PREFIX<node-id>`
    /// lets it subscribe to xDS as `<node-id>`; a trailing `*` grants every node id
    /// that starts with what precedes it (one certificate for a Deployment's pods).
    pub const NODE_URI_PREFIX: &str = "spiffe://portcullis/node/";
    /// Bootstrap static secret: Envoy's client certificate and key (file paths).
    pub const CLIENT_CERT_SECRET: &str = "portcullis-client-cert";
    /// Bootstrap static secret: the CA that signed the Portcullis servers' certificates.
    pub const SERVER_CA_SECRET: &str = "portcullis-server-ca";

    /// With path-based SDS (`--component-mtls-sds-dir DIR`, the chart), Envoy reads each
    /// of the two secrets above from this file instead of its bootstrap: the file names
    /// the certificate files and the directory to watch, so a renewed certificate
    /// applies without restarting Envoy.
    pub fn sds_file(dir: &str, secret: &str) -> String {
        format!("{}/{secret}.json", dir.trim_end_matches('/'))
    }
}
