//! The `Host` resource: a hostname, the certificate that serves it, and which
//! namespaces may route on it.
//!
//! Without a Host, any team's Route may name any hostname. A Host makes a hostname
//! owned: only Routes from the namespaces it admits are served for it (others get
//! `Accepted=False`, reason `NotAllowedByHost`), and Routes without hosts are not
//! copied into it unless their namespace is admitted. It also turns on HTTPS for the
//! hostname: a filter chain chosen by SNI, its certificate served over SDS.
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Duration, status::ObjectStatus};

/// A hostname owned by a team, with its TLS settings.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "portcullis.dev",
    version = "v1alpha1",
    kind = "Host",
    plural = "hosts",
    shortname = "pchost",
    category = "portcullis",
    doc = "A Host owns a hostname: its certificate (HTTPS at the edge, chosen by SNI) and the namespaces whose Routes may serve it. See docs/api.md and docs/tls.md.",
    namespaced,
    status = "ObjectStatus",
    printcolumn = r#"{"name":"Hostname","type":"string","jsonPath":".spec.hostname"}"#,
    printcolumn = r#"{"name":"Secret","type":"string","jsonPath":".spec.tls.secretName"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Certificate","type":"string","jsonPath":".status.conditions[?(@.type==\"ResolvedRefs\")].status"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostSpec {
    /// `api.example.com`, or `*.example.com` for every subdomain not owned by a more
    /// specific Host.
    pub hostname: String,
    /// HTTPS for this hostname (default: plain HTTP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<HostTls>,
    /// Which namespaces' Routes may serve this hostname (default: the Host's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_routes: Option<AllowedRoutes>,
}

/// Where the certificate comes from, and how TLS is offered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostTls {
    /// A `kubernetes.io/tls` Secret in the Host's namespace (Kubernetes mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// PEM certificate chain file (file mode), relative to the manifest directory or
    /// absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_file: Option<String>,
    /// PEM private key file (file mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// Lowest TLS version offered: "1.2" (default) or "1.3".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
    /// ALPN protocols offered (default `[h2, http/1.1]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
    /// `Strict-Transport-Security` on HTTPS responses (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<Hsts>,
    /// Plain-HTTP requests for this hostname get a 301 to HTTPS (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hsts {
    /// How long browsers remember to use HTTPS only, e.g. 31536000s (one year).
    pub max_age: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_sub_domains: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preload: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllowedRoutes {
    /// Namespace names; `"*"` admits every namespace.
    #[serde(default)]
    pub namespaces: Vec<String>,
}

/// ALPN protocols Envoy's HTTP connection manager speaks.
pub const ALPN: &[&str] = &["h2", "http/1.1"];

impl HostSpec {
    /// Does this Host admit Routes from `namespace`? `own` is the Host's namespace.
    pub fn admits(&self, own: &str, namespace: &str) -> bool {
        match &self.allowed_routes {
            Some(a) if !a.namespaces.is_empty() => {
                a.namespaces.iter().any(|n| n == "*" || n == namespace)
            }
            _ => own == namespace,
        }
    }
}

impl HostTls {
    pub fn min_version(&self) -> &str {
        self.min_version.as_deref().unwrap_or("1.2")
    }

    pub fn alpn(&self) -> Vec<String> {
        if self.alpn.is_empty() {
            ALPN.iter().map(|s| s.to_string()).collect()
        } else {
            self.alpn.clone()
        }
    }

    pub fn redirect(&self) -> bool {
        self.redirect.unwrap_or(true)
    }
}
