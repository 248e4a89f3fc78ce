//! Generic Envoy ADS (Aggregated Discovery Service) server.
//!
//! Serves opaque typed resources ([`Resource`], a name plus a protobuf
//! `Any`) from an immutable, content-versioned [`Snapshot`] held in a
//! [`Cache`], over both State-of-the-World and Delta ADS. It knows nothing
//! about what the resources mean beyond the push order of the well-known
//! cluster/endpoint/listener/route types.
#![forbid(unsafe_code)]

mod body;
mod cache;
mod debug;
mod delta;
mod hash;
mod inbound;
pub mod limits;
mod metrics;
mod nodes;
mod order;
mod server;
mod session;
mod snapshot;
mod sotw;
mod stream;
mod subscription;
mod wire;

pub use cache::Cache;
#[doc(hidden)]
pub use inbound::read_requests;
pub use nodes::{NackStatus, NodeStatus, Protocol, TypeStatus};
pub use server::{AdsServer, AdsService, MAX_MESSAGE_SIZE, serve, serve_with, service};
pub use session::{DeltaSession, SotwSession};
pub use snapshot::{EncodedResource, Resource, Snapshot, SnapshotError};

/// Type URLs of the resource types whose relative push order matters.
pub mod type_url {
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    pub const ROUTE_CONFIGURATION: &str =
        "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    pub const CLUSTER_LOAD_ASSIGNMENT: &str =
        "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    /// SDS: TLS certificates with their private keys.
    pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
}
