//! The validating admission webhook: `kubectl apply` of a bad or conflicting Route or
//! Service fails with the same message `portcullis validate` prints.
//!
//! [`admission`] decides (pure, against the live index); [`tls`] makes the serving
//! certificate; [`server`] serves HTTPS; [`ca_bundle`] tells the API server to trust it.
pub mod admission;
pub mod ca_bundle;
pub mod server;
pub mod tls;
