//! Portcullis rate-limit service: Envoy's `RateLimitService` answered from limits the
//! control plane serves over xDS, or from envoyproxy/ratelimit and Limitador files,
//! counted in memory, Redis or Redis Cluster with a sliding (default) or fixed window.
//!
//! Request flow: [`Limiter::should_rate_limit`] asks the [`LimitTable`] which limits
//! apply, answers keys known to be over from the local over-limit cache, otherwise
//! makes one bounded call to the [`Store`] (one Lua script on Redis), and builds
//! statuses plus `RateLimit-*` / `Retry-After` headers. See README.md.
//!
//! Module layers (imports point down only): `run` → `settings`/`args`/`envoy_env`,
//! `file_watch`, `xds_client`, `grpc`, `http` → `limiter` → `plan`, `report` →
//! `table` → sources (`portcullis_config`, `file_limits` → `envoy_format`,
//! `limitador`) → `matched`, `limit`; `store`, `algorithm`, `counter_key`, `stats`.
#![forbid(unsafe_code)]

mod algorithm;
mod args;
mod backoff;
mod behaviour;
mod clock;
mod config_source;
mod counter_key;
mod envoy_env;
mod envoy_format;
mod file_limits;
mod file_watch;
mod grpc;
mod http;
mod limit;
mod limitador;
mod limiter;
mod local_cache;
mod log_throttle;
mod matched;
mod metrics;
mod plan;
mod portcullis_config;
mod report;
mod response;
mod run;
mod settings;
mod stats;
mod table;
mod xds_client;

pub mod store;

/// Generated types of `proto/portcullis/ratelimit/v1/config.proto` (crate
/// `portcullis-proto`, shared with the control plane that publishes them).
pub use portcullis_proto::ratelimit::v1 as pb;

pub use algorithm::{Counts, Verdict, retry_after_secs};
pub use args::{Args, Compat, StoreKind};
pub use behaviour::Behaviour;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config_source::{FileSource, RuntimeDir};
pub use counter_key::CounterKeys;
pub use envoy_env::{EnvoyEnv, Secret};
pub use envoy_format::{EnvoyConfig, FormatError};
pub use file_limits::{ConfigFile, FileLimits, LoadOptions};
pub use file_watch::load_files;
pub use grpc::{RateLimitGrpc, serve as serve_grpc};
pub use http::router as http_router;
pub use limit::{Algorithm, Defaults, FailurePolicy, Limit, Window};
pub use limiter::{DEFAULT_STORE_TIMEOUT, Limiter, LimiterBuilder};
pub use matched::{Hit, StatKey};
pub use metrics::Metrics;
pub use portcullis_config::{ConfigError, DOMAIN, LIMIT_KEY, PortcullisLimits, TYPE_URL};
pub use response::HeaderStyle;
pub use run::{Listeners, run, run_bound};
pub use settings::{Settings, Source};
pub use store::{Counting, Store, StoreError};
pub use table::{LimitTable, Limits, apply_rate_limit_configs};
pub use xds_client::{XdsClientConfig, run_xds_client};
