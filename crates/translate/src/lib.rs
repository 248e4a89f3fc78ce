//! Model → Envoy resources. Pure: the same [`Model`] and [`Options`] always give the same
//! resources, so the output can be golden-tested and versioned by content.
//!
//! One listener (HTTP connection manager fed by RDS over ADS), one route configuration
//! with a virtual host per host (plus `*` for host-less Routes), one cluster per
//! Service, and one load assignment per EDS-fed cluster. Plus, for `portcullis
//! ratelimit`, one `RateLimitConfig` per Route limit.
#![forbid(unsafe_code)]

mod access_log;
mod cluster;
mod cluster_policy;
pub mod component_tls;
use portcullis_api::defaults;
pub mod filters;
pub mod host_routes;
mod incremental;
mod listener;
mod proto;
mod rate_limit_config;
mod route;
mod route_policy;
pub mod tls;
mod trace;
pub mod upstream_tls;

use envoy_types::pb::envoy::config::{
    cluster::v3::Cluster, endpoint::v3::ClusterLoadAssignment, listener::v3::Listener,
    route::v3::RouteConfiguration,
};
use portcullis_api::{Model, ObjectKey, isolate::isolate};

pub use cluster::{cluster_name, write_cluster_name};
pub use incremental::Incremental;
pub use portcullis_proto::ratelimit::v1::{
    RateLimitConfig, TYPE_URL as RATE_LIMIT_CONFIG_TYPE_URL,
};
pub use rate_limit_config::limit_name;
pub use route::route_name;

/// Name of the one RouteConfiguration served over RDS.
pub const ROUTE_CONFIG_NAME: &str = "portcullis";
/// Name of the HTTP listener.
pub const LISTENER_NAME: &str = "http";

/// Deployment facts that are not part of the manifests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Address Envoy's HTTP listener binds.
    pub listen_address: String,
    /// Port of the HTTP listener; 0 lets the kernel choose (tests read it back from
    /// Envoy's admin API).
    pub listen_port: u16,
    /// Port of the HTTPS listener (served once a Host has a certificate); `None`: no
    /// HTTPS.
    pub https_port: Option<u16>,
    /// `namespace/name` of the Host whose certificate clients without SNI get (default:
    /// the oldest Host with a certificate).
    pub default_host: Option<String>,
    /// `host:port` of `portcullis authz`; without it, Routes with `auth` answer 503.
    pub authz: Option<String>,
    /// The header API keys arrive in (`--api-key-header`): Envoy sends the authz service
    /// only this, `authorization` and the tracing headers, and each Route with `auth`
    /// tells the service the name in its context extensions.
    pub api_key_header: String,
    /// The identity header names (`--identity-headers`): stripped from every request,
    /// and told to the authz service per Route, which sets them.
    pub identity_headers: portcullis_contract::authz::IdentityHeaderNames,
    /// `host:port` of `portcullis ratelimit`; without it, rate limits are not enforced.
    pub ratelimit: Option<String>,
    /// Where Envoy writes its JSON access log (`/dev/stdout` for the console).
    pub access_log: Option<String>,
    /// `host:port` of `portcullis accesslog` (Envoy's gRPC access log service).
    pub access_log_service: Option<String>,
    /// Envoy calls authz, ratelimit and accesslog over mTLS, with the client certificate
    /// of its bootstrap (see [`component_tls`]).
    pub component_mtls: bool,
    /// With `component_mtls`: Envoy reads its client certificate and the servers' CA
    /// from path-based SDS files in this directory (renewals apply without a restart)
    /// instead of its bootstrap's static secrets.
    pub component_mtls_sds_dir: Option<String>,
    /// Request headers Envoy includes in gRPC access log entries (scrubbed there).
    pub access_log_headers: Vec<String>,
    /// `host:port` of an OTLP/gRPC collector; without it Envoy does not trace.
    pub otlp_collector: Option<String>,
    /// Share of requests Envoy starts a trace for (a client's sampled `traceparent` is
    /// always honoured), in percent.
    pub trace_sampling_percent: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            listen_address: "0.0.0.0".into(),
            listen_port: 10000,
            https_port: None,
            default_host: None,
            authz: None,
            api_key_header: portcullis_contract::authz::DEFAULT_API_KEY_HEADER.into(),
            identity_headers: Default::default(),
            ratelimit: None,
            access_log: None,
            access_log_service: None,
            component_mtls: false,
            component_mtls_sds_dir: None,
            access_log_headers: Vec::new(),
            otlp_collector: None,
            trace_sampling_percent: 1,
        }
    }
}

/// Resources already encoded (protobuf), by name. Shared bytes: what an edit did not
/// change is the very allocation the previous build handed over, so the snapshot knows
/// it again without reading it (`portcullis_xds::EncodedResource`). Names are shared
/// too: a build hands each one on to the snapshot by a pointer, not a copy (at 2k
/// Services, copying every cluster's and assignment's name twice per edit showed).
pub type Encoded = Vec<(std::sync::Arc<str>, prost::bytes::Bytes)>;

/// Everything Envoy needs, by xDS type, and what `portcullis ratelimit` needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resources {
    pub listeners: Vec<Listener>,
    pub route_configs: Vec<RouteConfiguration>,
    /// The RouteConfigurations already encoded, by name, from [`Incremental`] (which
    /// leaves `route_configs` empty): the same resources, never decoded again.
    pub encoded_route_configs: Encoded,
    pub clusters: Vec<Cluster>,
    pub load_assignments: Vec<ClusterLoadAssignment>,
    /// The Services' clusters and load assignments already encoded, by name, from
    /// [`Incremental`] (which then leaves them out of `clusters` and
    /// `load_assignments`; the gRPC service clusters stay there).
    pub encoded_clusters: Encoded,
    pub encoded_load_assignments: Encoded,
    /// One per Route limit, sorted by name. Produced whether or not Envoy is given a
    /// rate-limit service: they only describe the limits, and a service subscribes to
    /// them on its own (type URL [`RATE_LIMIT_CONFIG_TYPE_URL`]).
    pub rate_limit_configs: Vec<RateLimitConfig>,
    /// SDS: one TLS certificate per Host that has one; per Service with TLS, its
    /// trusted CAs and client certificate.
    pub secrets: Vec<envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret>,
    /// Objects whose translation panicked (a bug), with the panic message; they are
    /// left out, along with the Routes that send to a failed Service. The control plane
    /// reports them as `Accepted=False`, reason `InternalError`.
    pub failed: Vec<(ObjectKey, String)>,
}

/// Translates the validated model. Never panics: each object's translation runs
/// isolated (see [`portcullis_api::isolate`]).
pub fn translate(model: &Model, options: &Options) -> Resources {
    build(model, options, None)
}

/// [`translate`]; with `incremental`, the routing comes from it, encoded.
fn build(model: &Model, options: &Options, mut incremental: Option<&mut Incremental>) -> Resources {
    let mut clusters = Vec::new();
    let mut load_assignments = Vec::new();
    let mut failed = Vec::new();
    let service_clusters = match incremental.as_deref_mut() {
        Some(memo) => Some(memo.service_clusters(model, &mut failed)),
        None => {
            for (key, service) in &model.services {
                match service_cluster(model, key, service) {
                    Ok((cluster, assignment)) => {
                        clusters.push(cluster);
                        load_assignments.extend(assignment);
                    }
                    Err(panic) => failed.push((key.clone(), panic)),
                }
            }
            None
        }
    };
    for (name, addr) in [
        (filters::AUTHZ_CLUSTER, &options.authz),
        (filters::RATELIMIT_CLUSTER, &options.ratelimit),
        (trace::OTEL_CLUSTER, &options.otlp_collector),
        (access_log::ALS_CLUSTER, &options.access_log_service),
    ] {
        if let Some(addr) = addr {
            let mut cluster = cluster::grpc_cluster(name, addr);
            // The collector is not a Portcullis component: it has no certificate of ours.
            if options.component_mtls && name != trace::OTEL_CLUSTER {
                cluster.transport_socket = Some(component_tls::upstream(
                    addr,
                    options.component_mtls_sds_dir.as_deref(),
                ));
            }
            clusters.push(cluster);
        }
    }
    let (route_configs, encoded_route_configs) = match (incremental, &service_clusters) {
        (Some(memo), Some(s)) => (
            Vec::new(),
            memo.route_configs(model, options, &s.changed, &mut failed),
        ),
        _ => {
            let full = route::route_configuration(model, options, &mut failed);
            (host_routes::split(full, model, options), Vec::new())
        }
    };
    let (encoded_clusters, encoded_load_assignments) =
        service_clusters.map_or_else(Default::default, |s| (s.clusters, s.assignments));
    let rate_limit_configs = rate_limit_config::rate_limit_configs(model, &mut failed);
    failed.sort();
    failed.dedup_by(|a, b| a.0 == b.0);
    let mut listeners = vec![listener::http_listener(options)];
    listeners.extend(tls::https_listener(model, options));
    Resources {
        listeners,
        secrets: {
            let mut s = tls::secrets(model);
            s.extend(upstream_tls::secrets(model));
            s
        },
        route_configs,
        encoded_route_configs,
        clusters,
        load_assignments,
        encoded_clusters,
        encoded_load_assignments,
        rate_limit_configs,
        failed,
    }
}

/// One Service's cluster and load assignment, isolated: a panic leaves out only it.
fn service_cluster(
    model: &Model,
    key: &ObjectKey,
    service: &portcullis_api::Service,
) -> Result<(Cluster, Option<ClusterLoadAssignment>), String> {
    isolate(|| {
        let (mut cluster, assignment) = cluster::service_cluster(key, service);
        cluster.transport_socket = upstream_tls::transport_socket(model, key, service);
        (cluster, assignment)
    })
}

/// The Service a cluster name came from (inverse of [`cluster_name`]).
pub fn service_of_cluster(name: &str) -> Option<ObjectKey> {
    let (ns, svc) = name.split_once('/')?;
    Some(ObjectKey::service(ns, svc))
}
