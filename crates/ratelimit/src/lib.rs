//! Portcullis rate-limit service: Envoy's `RateLimitService` answered from limits the
//! control plane serves over xDS (or an envoyproxy/ratelimit YAML file), counted in
//! memory, Redis or Redis Cluster with a sliding (default) or fixed window.
//!
//! Request flow: [`Limiter::should_rate_limit`] matches descriptors in the
//! [`LimitTable`], answers keys known to be over from the local over-limit cache,
//! otherwise makes one bounded call to the [`Store`] (one Lua script on Redis), and
//! builds statuses plus `RateLimit-*` / `Retry-After` headers. See README.md.
#![forbid(unsafe_code)]

mod algorithm;
mod args;
mod backoff;
mod clock;
mod envoy_format;
mod grpc;
mod http;
mod limit;
mod limiter;
mod local_cache;
mod metrics;
mod portcullis_config;
mod response;
mod table;
mod xds_client;

pub mod store;

/// Generated types of `proto/portcullis/ratelimit/v1/config.proto` (crate
/// `portcullis-proto`, shared with the control plane that publishes them).
pub use portcullis_proto::ratelimit::v1 as pb;

pub use algorithm::{Counts, Verdict, retry_after_secs};
pub use args::{Args, StoreKind, load_file, run, run_bound};
pub use clock::{Clock, ManualClock, SystemClock};
pub use envoy_format::{EnvoyConfig, FormatError};
pub use grpc::{RateLimitGrpc, serve as serve_grpc};
pub use http::router as http_router;
pub use limit::{Algorithm, FailurePolicy, Limit, Window};
pub use limiter::{DEFAULT_STORE_TIMEOUT, Limiter, LimiterBuilder};
pub use metrics::Metrics;
pub use portcullis_config::{
    ConfigError, DOMAIN, Defaults, LIMIT_KEY, PortcullisLimits, TYPE_URL, apply_rate_limit_configs,
};
pub use store::{Store, StoreError};
pub use table::{LimitTable, Limits, Matched};
pub use xds_client::{XdsClientConfig, run_xds_client};
