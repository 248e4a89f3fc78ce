//! `portcullis ratelimit`'s flags. Each has a `PORTCULLIS_RATELIMIT_…` twin; flags left
//! unset fall back to envoyproxy/ratelimit's environment variables (`envoy_env`), then
//! to the defaults of `--compat` (see `settings`).
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::envoy_env::{EnvoyEnv, Secret};
use crate::limit::{Algorithm, FailurePolicy};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    Memory,
    Redis,
    RedisCluster,
}

/// Whose defaults apply where Portcullis and envoyproxy/ratelimit differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Compat {
    /// Sliding windows, refused requests not counted, RateLimit-* and Retry-After on
    /// every answer, local over-limit cache on.
    #[default]
    Portcullis,
    /// envoyproxy/ratelimit exactly: fixed windows, every matched counter counted even
    /// when refused, headers only with LIMIT_RESPONSE_HEADERS_ENABLED, no Retry-After,
    /// local cache only with LOCAL_CACHE_SIZE_IN_BYTES.
    Envoyproxy,
}

#[derive(Debug, Clone, clap::Parser)]
pub struct Args {
    /// gRPC address (RateLimitService and health) [default: 0.0.0.0:8081; GRPC_HOST, GRPC_PORT]
    #[arg(long, env = "PORTCULLIS_RATELIMIT_GRPC_ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    /// mTLS of the gRPC port (--tls-cert, --tls-key, --client-ca, --insecure).
    #[command(flatten)]
    pub tls: portcullis_tls::mtls::MtlsArgs,
    /// HTTP address for /metrics, /healthz and /healthcheck [default: 0.0.0.0:9091; HOST, PORT]
    #[arg(long, env = "PORTCULLIS_RATELIMIT_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Where counters live [default: memory, or redis when REDIS_URL is set]
    #[arg(long, env = "PORTCULLIS_RATELIMIT_STORE", value_enum)]
    pub store: Option<StoreKind>,
    /// Redis URL(s), redis:// or rediss:// (TLS), password in the userinfo; several
    /// (comma-separated) seed a Redis Cluster [default: redis://127.0.0.1:6379; REDIS_URL]
    #[arg(
        long = "redis-url",
        env = "PORTCULLIS_RATELIMIT_REDIS_URLS",
        value_delimiter = ','
    )]
    pub redis_urls: Vec<String>,
    /// CA certificate (PEM) that signed the Redis server's certificate [REDIS_TLS_CACERT]
    #[arg(long, env = "PORTCULLIS_RATELIMIT_REDIS_TLS_CA")]
    pub redis_tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for Redis servers that require one [REDIS_TLS_CLIENT_CERT]
    #[arg(
        long,
        env = "PORTCULLIS_RATELIMIT_REDIS_TLS_CERT",
        requires = "redis_tls_key"
    )]
    pub redis_tls_cert: Option<PathBuf>,
    /// Its key (PEM) [REDIS_TLS_CLIENT_KEY]
    #[arg(
        long,
        env = "PORTCULLIS_RATELIMIT_REDIS_TLS_KEY",
        requires = "redis_tls_cert"
    )]
    pub redis_tls_key: Option<PathBuf>,
    /// Secret the counter-key hash is keyed with; every replica sharing Redis needs the
    /// same one. Without it: random per process (memory), a public key (Redis)
    #[arg(
        long,
        env = "PORTCULLIS_RATELIMIT_COUNTER_KEY_SECRET",
        hide_env_values = true
    )]
    pub counter_key_secret: Option<Secret>,
    /// File holding that secret (a mounted Kubernetes Secret)
    #[arg(
        long,
        env = "PORTCULLIS_RATELIMIT_COUNTER_KEY_SECRET_FILE",
        conflicts_with = "counter_key_secret"
    )]
    pub counter_key_secret_file: Option<PathBuf>,
    /// Prefix of every counter key [CACHE_KEY_PREFIX]
    #[arg(long, env = "PORTCULLIS_RATELIMIT_KEY_PREFIX")]
    pub key_prefix: Option<String>,
    /// Bound on one store call; past it each limit follows its failure policy.
    #[arg(long, env = "PORTCULLIS_RATELIMIT_STORE_TIMEOUT", default_value = "20ms", value_parser = humantime::parse_duration)]
    pub store_timeout: Duration,
    /// Most counters the memory store holds; past it, it evicts (and counts evictions).
    #[arg(long, env = "PORTCULLIS_RATELIMIT_MEMORY_MAX_KEYS", default_value_t = crate::store::DEFAULT_MAX_KEYS)]
    pub memory_max_keys: usize,
    /// Control plane ADS address (e.g. http://127.0.0.1:18000): limits from Route manifests.
    #[arg(long, env = "PORTCULLIS_RATELIMIT_XDS_ADDR", conflicts_with_all = ["config_file", "runtime_root"])]
    pub xds_addr: Option<String>,
    /// Node id sent to the control plane.
    #[arg(
        long,
        env = "PORTCULLIS_RATELIMIT_NODE_ID",
        default_value = "portcullis-ratelimit"
    )]
    pub node_id: String,
    /// Client certificate (PEM) for an https:// --xds-addr; it must name --node-id
    /// (URI SAN spiffe://portcullis/node/<node-id>).
    #[arg(long, env = "PORTCULLIS_RATELIMIT_XDS_TLS_CERT")]
    pub xds_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --xds-tls-cert.
    #[arg(long, env = "PORTCULLIS_RATELIMIT_XDS_TLS_KEY")]
    pub xds_tls_key: Option<PathBuf>,
    /// CA (PEM) that signed the control plane's certificate, for an https:// --xds-addr.
    #[arg(long, env = "PORTCULLIS_RATELIMIT_XDS_CA")]
    pub xds_ca: Option<PathBuf>,
    /// Standalone: one envoyproxy/ratelimit or Limitador YAML file (reloaded when it changes).
    #[arg(
        long,
        env = "PORTCULLIS_RATELIMIT_CONFIG_FILE",
        conflicts_with = "runtime_root"
    )]
    pub config_file: Option<PathBuf>,
    /// Standalone: envoyproxy's runtime directory; files are read from
    /// ROOT/SUBDIRECTORY/APPDIRECTORY/** and reloaded on any change [RUNTIME_ROOT]
    #[arg(long, env = "PORTCULLIS_RATELIMIT_RUNTIME_ROOT")]
    pub runtime_root: Option<PathBuf>,
    /// [RUNTIME_SUBDIRECTORY]
    #[arg(long, env = "PORTCULLIS_RATELIMIT_RUNTIME_SUBDIRECTORY")]
    pub runtime_subdirectory: Option<PathBuf>,
    /// [default: config; RUNTIME_APPDIRECTORY]
    #[arg(long, env = "PORTCULLIS_RATELIMIT_RUNTIME_APPDIRECTORY")]
    pub runtime_appdirectory: Option<PathBuf>,
    /// Skip files and directories named .* in the runtime directory [RUNTIME_IGNOREDOTFILES]
    #[arg(long, env = "PORTCULLIS_RATELIMIT_RUNTIME_IGNORE_DOTFILES", action = clap::ArgAction::Set)]
    pub runtime_ignore_dotfiles: Option<bool>,
    /// Let one domain be split over several files [MERGE_DOMAIN_CONFIG]
    #[arg(long, env = "PORTCULLIS_RATELIMIT_MERGE_DOMAIN_CONFIG", action = clap::ArgAction::Set)]
    pub merge_domain_config: Option<bool>,
    /// What limits without their own policy do when the store fails: allow | deny.
    #[arg(
        long,
        env = "PORTCULLIS_RATELIMIT_ON_STORE_FAILURE",
        default_value = "allow"
    )]
    pub on_store_failure: FailurePolicy,
    /// Whose defaults apply where the two services differ (see the compatibility table).
    #[arg(long, env = "PORTCULLIS_RATELIMIT_COMPAT", value_enum, default_value_t)]
    pub compat: Compat,
    /// Algorithm of limits without their own: sliding | fixed [default: by --compat]
    #[arg(long, env = "PORTCULLIS_RATELIMIT_ALGORITHM")]
    pub algorithm: Option<Algorithm>,
    /// Count refused requests too, as envoyproxy does [default: by --compat;
    /// STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT=true turns it off]
    #[arg(long, env = "PORTCULLIS_RATELIMIT_COUNT_REFUSED", action = clap::ArgAction::Set)]
    pub count_refused: Option<bool>,
    /// Send RateLimit-Limit/Remaining/Reset [default: by --compat; LIMIT_RESPONSE_HEADERS_ENABLED]
    #[arg(long, env = "PORTCULLIS_RATELIMIT_HEADERS", action = clap::ArgAction::Set)]
    pub rate_limit_headers: Option<bool>,
    /// Send Retry-After on refusals [default: by --compat]
    #[arg(long, env = "PORTCULLIS_RATELIMIT_RETRY_AFTER", action = clap::ArgAction::Set)]
    pub retry_after: Option<bool>,
    /// Answer keys known to be over their limit locally until their quota returns
    /// [default: by --compat; LOCAL_CACHE_SIZE_IN_BYTES]
    #[arg(long, env = "PORTCULLIS_RATELIMIT_LOCAL_CACHE", action = clap::ArgAction::Set)]
    pub local_cache: Option<bool>,
    /// Never refuse; count and report what would be refused [SHADOW_MODE]
    #[arg(long, env = "PORTCULLIS_RATELIMIT_SHADOW_MODE", action = clap::ArgAction::Set)]
    pub shadow_mode: Option<bool>,
    /// Every limit in envoyproxy's quota mode [QUOTA_MODE]
    #[arg(long, env = "PORTCULLIS_RATELIMIT_QUOTA_MODE", action = clap::ArgAction::Set)]
    pub quota_mode: Option<bool>,
    /// Most distinct stat keys (and `limit` label values) in /metrics; more are `_other`.
    #[arg(long, env = "PORTCULLIS_RATELIMIT_STATS_MAX_KEYS", default_value_t = crate::stats::DEFAULT_MAX_KEYS)]
    pub stats_max_keys: usize,
    /// envoyproxy/ratelimit's environment variables; `run_bound` reads them.
    #[arg(skip)]
    pub envoy: EnvoyEnv,
}
