//! Portcullis API: the `Route` and `Service` custom resources, the parser that turns
//! manifests into them, and the validator that decides which objects are served.
//!
//! Data flow: YAML (a directory or the Kubernetes API) → [`Route`]/[`Service`] objects
//! → [`validate::validate`] → a [`Model`] of accepted objects in precedence order plus one
//! [`validate::Report`] per object. Everything here is pure: no I/O, no clocks.
#![forbid(unsafe_code)]

pub mod certificate;
pub mod crds;
pub mod defaults;
pub mod duration;
pub mod explain;
pub mod host;
pub mod isolate;
pub mod manifest;
pub mod model;
pub mod policy;
pub mod precedence;
pub mod route;
pub mod service;
pub mod shadow;
pub mod status;
pub mod table;
pub mod validate;

pub use certificate::{Certificate, CertificateState, Certificates, TrustBundle};
pub use duration::Duration;
pub use host::{Host, HostSpec, HostTls};
pub use manifest::{Document, Objects, ParseError, parse_documents};
pub use model::{Model, Name, ObjectKey, RouteEntry};
pub use route::{Backend, HeaderMatch, PathMatch, Route, RouteMatch, RouteSpec, RouteTracing};
pub use service::{
    ClientCertificate, Destination, Protocol, Service, ServiceRef, ServiceSpec, ServiceTls,
};
pub use status::{Condition, ObjectStatus};

/// API group of every Portcullis resource.
pub const GROUP: &str = "portcullis.dev";
/// API version served by this release.
pub const VERSION: &str = "v1alpha1";
