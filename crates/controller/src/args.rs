//! Flags shared by every control-plane mode (`serve`, `controller`): what the
//! translator needs to know about the deployment.
use portcullis_translate::Options;

#[derive(Clone, Debug, clap::Args)]
pub struct GatewayArgs {
    /// Address Envoy's HTTP listener binds.
    #[arg(long, env = "PORTCULLIS_LISTEN_ADDRESS", default_value = "0.0.0.0")]
    pub listen_address: String,
    /// Port of Envoy's HTTP listener (0: the kernel picks one per Envoy).
    #[arg(long, env = "PORTCULLIS_LISTEN_PORT", default_value_t = 10000)]
    pub listen_port: u16,
    /// Port of Envoy's HTTPS listener, served once a Host has a certificate (0: the
    /// kernel picks one).
    #[arg(long, env = "PORTCULLIS_HTTPS_PORT", default_value_t = 10443)]
    pub https_port: u16,
    /// `namespace/name` of the Host whose certificate clients without SNI get (default:
    /// the oldest Host with a certificate).
    #[arg(long, env = "PORTCULLIS_DEFAULT_HOST")]
    pub default_host: Option<String>,
    /// `host:port` of `portcullis authz` (Routes with `auth` answer 503 without it).
    #[arg(long, env = "PORTCULLIS_AUTHZ_ADDR")]
    pub authz_addr: Option<String>,
    /// `host:port` of `portcullis ratelimit` (rate limits are not enforced without it).
    #[arg(long, env = "PORTCULLIS_RATELIMIT_ADDR")]
    pub ratelimit_addr: Option<String>,
    /// Envoy writes a JSON line per request here (`/dev/stdout`: Envoy's console).
    /// Formerly --access-log / PORTCULLIS_ACCESS_LOG (still read, with a warning).
    #[arg(long = "accesslog-file", env = "PORTCULLIS_ACCESSLOG_FILE")]
    pub access_log: Option<String>,
    /// `host:port` of `portcullis accesslog`: Envoy streams a record per request
    /// there (gRPC ALS), for scrubbing and a stdout, file or Kafka sink. Formerly
    /// --access-log-service / PORTCULLIS_ACCESS_LOG_SERVICE (still read, with a warning).
    #[arg(long = "accesslog-addr", env = "PORTCULLIS_ACCESSLOG_ADDR")]
    pub access_log_service: Option<String>,
    /// Request headers to include in those records, comma-separated (credentials among
    /// them are scrubbed by the service). Formerly --access-log-headers /
    /// PORTCULLIS_ACCESS_LOG_HEADERS (still read, with a warning).
    #[arg(
        long = "accesslog-headers",
        env = "PORTCULLIS_ACCESSLOG_HEADERS",
        value_delimiter = ','
    )]
    pub access_log_headers: Vec<String>,
    /// The API key header `portcullis authz` is configured with (`apiKeyHeader`).
    #[arg(long, env = "PORTCULLIS_AUTHZ_KEY_HEADER", default_value = "x-api-key")]
    pub authz_key_header: String,
    /// `host:port` of an OTLP/gRPC collector Envoy sends its spans to.
    #[arg(long, env = "PORTCULLIS_OTLP_COLLECTOR")]
    pub otlp_collector: Option<String>,
    /// Percent of requests Envoy starts a trace for.
    #[arg(long, env = "PORTCULLIS_TRACE_SAMPLING", default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub trace_sampling: u32,
}

impl GatewayArgs {
    pub fn into_options(self) -> Options {
        let Self {
            listen_address,
            listen_port,
            https_port,
            default_host,
            authz_addr,
            ratelimit_addr,
            access_log,
            access_log_service,
            access_log_headers,
            authz_key_header,
            otlp_collector,
            trace_sampling,
        } = self;
        Options {
            listen_address,
            listen_port,
            https_port: Some(https_port),
            default_host,
            authz: authz_addr,
            ratelimit: ratelimit_addr,
            access_log,
            access_log_service,
            access_log_headers: access_log_headers
                .into_iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            authz_key_header: authz_key_header.to_ascii_lowercase(),
            otlp_collector,
            trace_sampling_percent: trace_sampling,
        }
    }
}
