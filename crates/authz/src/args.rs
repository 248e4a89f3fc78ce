//! Flags of `portcullis authz`. The binary crate parses [`Args`] and calls
//! `run` (run.rs) with listeners it bound (tests bind port 0).
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `portcullis authz`; each has a `PORTCULLIS_AUTHZ_…` twin. Flags override
/// the YAML file.
#[derive(Debug, Clone, clap::Parser)]
pub struct Args {
    /// gRPC address (Authorization and health).
    #[arg(
        long,
        env = "PORTCULLIS_AUTHZ_GRPC_ADDR",
        default_value = "0.0.0.0:8082"
    )]
    pub grpc_addr: SocketAddr,
    /// mTLS of the gRPC port (--tls-cert, --tls-key, --client-ca, --insecure).
    #[command(flatten)]
    pub tls: portcullis_tls::mtls::MtlsArgs,
    /// HTTP address for /metrics and /healthz.
    #[arg(
        long,
        env = "PORTCULLIS_AUTHZ_METRICS_ADDR",
        default_value = "0.0.0.0:9092"
    )]
    pub metrics_addr: SocketAddr,
    /// YAML configuration (key store, JWT, cache, header names).
    #[arg(long, env = "PORTCULLIS_AUTHZ_CONFIG")]
    pub config: Option<PathBuf>,
    /// Hashed API key file; replaces the configured key store.
    #[arg(long, env = "PORTCULLIS_AUTHZ_KEYS_FILE")]
    pub keys_file: Option<PathBuf>,
    /// Identity cache TTL (a revoked key works at most this long).
    #[arg(long, env = "PORTCULLIS_AUTHZ_CACHE_TTL", value_parser = humantime::parse_duration)]
    pub cache_ttl: Option<Duration>,
    /// Header carrying API keys. Deprecated: the control plane's `--api-key-header`
    /// reaches this service with every Check and wins; this applies only without it.
    #[arg(long, env = "PORTCULLIS_AUTHZ_API_KEY_HEADER")]
    pub api_key_header: Option<String>,
    /// Introspection client secret (kept out of the YAML file).
    #[arg(long, env = "PORTCULLIS_AUTHZ_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// PostgreSQL URL (kept out of the YAML file when it holds a password).
    #[arg(long, env = "PORTCULLIS_AUTHZ_POSTGRES_URL", hide_env_values = true)]
    pub postgres_url: Option<String>,
}
