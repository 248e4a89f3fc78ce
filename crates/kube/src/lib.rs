//! Kubernetes mode of the control plane (`portcullis controller`).
//!
//! Data flow: kube-rs watchers ([`watch`]) fill a synchronous [`index`]; the
//! [`controller`] loop turns the index into reconcile input, resolves `serviceRef`s
//! through EndpointSlices ([`endpoints`]), and publishes through the same
//! validate → reconcile → translate → xDS path as file mode. The lease holder
//! ([`lease`]) computes conditions, including Envoy's ACK/NACK ([`programmed`]), and
//! writes the changed ones through one queue ([`status`]). Every replica serves xDS
//! and the admission [`webhook`], and publishes what its Envoys run ([`fleet`],
//! [`fleet_sync`]) so the holder's `Programmed` covers the whole fleet.
#![forbid(unsafe_code)]

pub mod args;
pub mod component_certs;
pub mod controller;
mod core_indexed;
pub mod endpoints;
#[cfg(test)]
mod fixtures;
pub mod fleet;
pub mod fleet_sync;
pub mod index;
pub mod lease;
pub mod metrics;
pub mod programmed;
pub mod run;
pub mod secrets;
pub mod status;
pub mod watch;
pub mod webhook;

pub use args::Args;
pub use run::run;
