//! The `Service` resource: where traffic goes and how to treat the upstream.
//!
//! Traffic policy (pools, health checks, outlier detection, load balancing) is added as
//! optional sibling fields of `destinations`; absent fields mean Portcullis' defaults.
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    Duration,
    policy::{ConnectionPool, HealthCheck, LoadBalancer, OutlierDetection, RetryBudget},
    status::ObjectStatus,
};

/// Request timeout when neither the Service nor the Route sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for any request timeout: longer requests belong on another path.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Upstream TCP connect timeout default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// An upstream service: a weighted set of destinations across regions.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "portcullis.dev",
    version = "v1alpha1",
    kind = "Service",
    plural = "services",
    shortname = "pcsvc",
    shortname = "psvc",
    category = "portcullis",
    doc = "A Service is where a Route's traffic goes: weighted destinations across regions, with timeouts, connection pools, health checks and outlier detection. See docs/api.md.",
    namespaced,
    status = "ObjectStatus",
    printcolumn = r#"{"name":"Timeout","type":"string","jsonPath":".spec.timeout"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Programmed","type":"string","jsonPath":".status.conditions[?(@.type==\"Programmed\")].status"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    /// Where requests go. Traffic is split by `weight` (weighted random).
    pub destinations: Vec<Destination>,
    /// Whole-request timeout (default 10s, at most 60s). A Route may override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Upstream TCP connect timeout (default 2s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Duration>,
    /// Protocol spoken to the destinations (default http1).
    #[serde(default)]
    pub protocol: Protocol,
    /// How a destination is picked (default weighted random).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    /// Pool limits (overflow fails fast with 503) and connection lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPool>,
    /// Retries in flight as a share of requests in flight (default 20%, at least 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
    /// Active health checks (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Passive health checks (default on: 5 consecutive 5xx eject for 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS to the destinations, verified against `caFile`, optionally with a client
    /// certificate (mTLS). Default: plaintext. Health checks follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServiceTls>,
}

/// TLS from the gateway to a Service's destinations. The backend's certificate is
/// always verified: against the trusted CAs, and its subject alternative names against
/// `subjectAltNames` (default: the SNI name).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceTls {
    /// Server name sent in the TLS handshake (default: the destinations' host name
    /// when the addresses are names; none for IP addresses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// PEM bundle of the CAs trusted to sign the backend's certificate (file mode),
    /// relative to the manifest directory or absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// A Secret in the Service's namespace holding `ca.crt` (Kubernetes mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_name: Option<String>,
    /// Exact DNS names or URIs (`spiffe://…`), one of which the backend's certificate
    /// must carry (default: the SNI name). Required for IP-address destinations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// The certificate the gateway presents to backends that require client
    /// certificates (mTLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<ClientCertificate>,
}

/// The gateway's client certificate for one Service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientCertificate {
    /// PEM certificate chain file (file mode), relative to the manifest directory or
    /// absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_file: Option<String>,
    /// PEM private key file (file mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
    /// A `kubernetes.io/tls` Secret in the Service's namespace (Kubernetes mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

/// One place a Service's traffic can go.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    /// Unique within the Service; names the endpoint in stats and logs.
    pub name: String,
    /// `host:port` or `ip:port` (IPv6 as `[::1]:8080`). Exactly one of `address` and
    /// `serviceRef` is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// A Kubernetes Service in the same namespace, resolved through its EndpointSlices
    /// (controller mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_ref: Option<ServiceRef>,
    /// Relative share of traffic (default 1; 0 drains the destination).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Region (Envoy locality) of the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Gets traffic only while the other destinations are unhealthy (Envoy priority 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<bool>,
}

impl Destination {
    pub fn weight(&self) -> u32 {
        self.weight.unwrap_or(1)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceRef {
    pub name: String,
    pub port: u16,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Http1,
    Http2,
}

impl ServiceSpec {
    /// The SNI name sent to the destinations: `tls.sni`, else the host name shared by
    /// every `address` destination (none when they are IPs or name different hosts).
    pub fn sni(&self) -> Option<String> {
        let tls = self.tls.as_ref()?;
        if let Some(s) = &tls.sni {
            return Some(s.clone());
        }
        let mut names = self
            .destinations
            .iter()
            .map(|d| d.address.as_deref().and_then(host_name_of));
        let first = names.next()??;
        names.all(|n| n.as_deref() == Some(&first)).then_some(first)
    }

    /// The names the backend's certificate must carry one of: `tls.subjectAltNames`,
    /// else the SNI name.
    pub fn subject_alt_names(&self) -> Vec<String> {
        match &self.tls {
            Some(t) if !t.subject_alt_names.is_empty() => t.subject_alt_names.clone(),
            Some(_) => self.sni().into_iter().collect(),
            None => Vec::new(),
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }

    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT)
    }
}

/// The host name of a `host:port` address; none for IP addresses (bracketed IPv6 too)
/// and for text without a port. Validation checks addresses fully; this is only the
/// default SNI.
fn host_name_of(address: &str) -> Option<String> {
    let (host, _) = address.rsplit_once(':')?;
    let is_ip = host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok();
    (!is_ip && !host.is_empty()).then(|| host.to_string())
}
