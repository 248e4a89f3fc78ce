//! Portcullis authentication service: Envoy's ext_authz `Authorization/Check`,
//! answering from API keys and tokens mapped to identities.
//!
//! Request flow: [`Authorizer::check`] reads the route's policy from the per-route
//! `context_extensions` the control plane sets, finds the credential, resolves it
//! through the [`IdentityCache`] (TTL, negative entries, single-flight coalescing,
//! stale grace) in front of a [`KeyStore`] (hashed key file, RFC 7662 introspection
//! with hedging and circuit breakers, PostgreSQL) or the local [`JwtValidator`], and
//! answers OK with identity headers and dynamic metadata, or 401/403/503 with a JSON
//! body. See README.md.
#![forbid(unsafe_code)]

mod answer;
mod args;
mod breaker;
mod cache;
mod check;
mod config;
mod credential;
mod grpc;
mod hedge;
mod identity;
mod jwks;
mod jwt;
mod limits;
mod metrics;
mod policies;
mod policy;
mod request;
mod response;
mod run;

pub mod store;

pub use answer::Answer;
pub use args::Args;
pub use breaker::{Breaker, BreakerConfig, BreakerState};
pub use cache::{CacheConfig, IdentityCache, Outcome};
pub use check::{Authorizer, Decision};
pub use config::{Config, ConfigError};
pub use grpc::{AuthzGrpc, serve as serve_grpc};
pub use hedge::{backoff, hedged};
pub use identity::{Digest, Identity};
pub use jwt::{JwksSource, JwtConfig, JwtValidator};
pub use metrics::Metrics;
pub use policy::RoutePolicy;
pub use request::{CheckCall, MapView, Pairs};
pub use response::IdentityHeaders;
pub use run::{build, run, run_bound};
pub use store::{KeyStore, StoreError};
