//! Flags shared by every control-plane mode (`serve`, `controller`): what the
//! translator needs to know about the deployment.
use portcullis_contract::authz::{self as contract, IdentityHeaderNames};
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
    #[command(flatten)]
    pub headers: HeaderArgs,
    /// `host:port` of an OTLP/gRPC collector Envoy sends its spans to.
    #[arg(long, env = "PORTCULLIS_OTLP_COLLECTOR")]
    pub otlp_collector: Option<String>,
    /// Percent of requests Envoy starts a trace for.
    #[arg(long, env = "PORTCULLIS_TRACE_SAMPLING", default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub trace_sampling: u32,
    /// Envoy calls authz, ratelimit and accesslog over mTLS, presenting the client
    /// certificate of its bootstrap (`portcullis bootstrap --client-cert`); turn on
    /// when those services run with --tls-cert/--tls-key/--client-ca.
    #[arg(long, env = "PORTCULLIS_COMPONENT_MTLS")]
    pub component_mtls: bool,
    /// With --component-mtls: Envoy's certificate and CA come from path-based SDS files
    /// DIR/portcullis-client-cert.json and DIR/portcullis-server-ca.json (the chart puts
    /// them in Envoy's bootstrap ConfigMap), so a renewed Secret applies without
    /// restarting Envoy. Empty: the bootstrap's static secrets.
    #[arg(
        long,
        env = "PORTCULLIS_COMPONENT_MTLS_SDS_DIR",
        requires = "component_mtls"
    )]
    pub component_mtls_sds_dir: Option<String>,
}

impl GatewayArgs {
    /// The translator's options; fails when the header names conflict.
    pub fn into_options(self) -> anyhow::Result<Options> {
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
            headers,
            otlp_collector,
            trace_sampling,
            component_mtls,
            component_mtls_sds_dir,
        } = self;
        let (api_key_header, identity_headers) = headers.resolve()?;
        Ok(Options {
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
            api_key_header,
            identity_headers,
            otlp_collector,
            trace_sampling_percent: trace_sampling,
            component_mtls,
            component_mtls_sds_dir,
        })
    }
}

/// The header names the control plane owns (`serve`, `controller` and `up`): Envoy
/// strips client-sent identity headers by them, forwards the API key header to
/// `portcullis authz`, and tells the service both names with every Check of a Route
/// with `auth`, so the service needs no setting of its own.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct HeaderArgs {
    /// Header clients send API keys in [default: x-api-key].
    #[arg(long, env = "PORTCULLIS_API_KEY_HEADER", value_parser = key_header)]
    pub api_key_header: Option<String>,
    /// Deprecated spelling of --api-key-header, kept for one release.
    #[arg(long, env = "PORTCULLIS_AUTHZ_KEY_HEADER", hide = true, value_parser = key_header)]
    pub authz_key_header: Option<String>,
    /// Identity header names, `user=<name>,account=<name>,scopes=<name>` (any subset;
    /// the rest keep x-portcullis-user, x-portcullis-account, x-portcullis-scopes).
    #[arg(long, env = "PORTCULLIS_IDENTITY_HEADERS", value_parser = identity_headers)]
    pub identity_headers: Option<IdentityHeaderNames>,
}

impl HeaderArgs {
    /// The API key header and identity header names, checked against each other.
    pub fn resolve(self) -> anyhow::Result<(String, IdentityHeaderNames)> {
        let key = match (self.api_key_header, self.authz_key_header) {
            (Some(new), Some(old)) => {
                tracing::warn!(
                    used = %new,
                    ignored = %old,
                    "--authz-key-header / PORTCULLIS_AUTHZ_KEY_HEADER is deprecated and ignored: --api-key-header / PORTCULLIS_API_KEY_HEADER is set"
                );
                new
            }
            (Some(new), None) => new,
            (None, Some(old)) => {
                tracing::warn!(
                    "--authz-key-header / PORTCULLIS_AUTHZ_KEY_HEADER is deprecated and will be removed in the next release: use --api-key-header / PORTCULLIS_API_KEY_HEADER"
                );
                old
            }
            (None, None) => contract::DEFAULT_API_KEY_HEADER.into(),
        };
        let names = self.identity_headers.unwrap_or_default();
        names
            .check(&key)
            .map_err(|e| anyhow::anyhow!("--identity-headers: {e}"))?;
        Ok((key, names))
    }
}

fn key_header(s: &str) -> Result<String, String> {
    let name = s.trim().to_ascii_lowercase();
    contract::check_header_name(&name)?;
    if name == "authorization" {
        return Err("Authorization carries bearer tokens already; pick another name".into());
    }
    Ok(name)
}

fn identity_headers(s: &str) -> Result<IdentityHeaderNames, String> {
    let names = IdentityHeaderNames::parse(s)?;
    for n in names.all() {
        contract::check_header_name(n)?;
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        headers: HeaderArgs,
    }

    fn parse(args: &[&str]) -> Result<(String, IdentityHeaderNames), String> {
        let cli = Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.headers.resolve().map_err(|e| e.to_string())
    }

    #[test]
    fn one_flag_per_name_with_the_old_spelling_as_an_alias() {
        let (key, names) = parse(&[]).unwrap();
        assert_eq!(key, "x-api-key");
        assert_eq!(names, IdentityHeaderNames::default());
        assert_eq!(parse(&["--api-key-header", "X-Key"]).unwrap().0, "x-key");
        assert_eq!(parse(&["--authz-key-header", "x-old"]).unwrap().0, "x-old");
        let both = parse(&["--api-key-header", "x-new", "--authz-key-header", "x-old"]);
        assert_eq!(both.unwrap().0, "x-new", "the new spelling wins");
        let (_, names) = parse(&["--identity-headers", "user=X-Id-User"]).unwrap();
        assert_eq!(names.user, "x-id-user");
        assert_eq!(names.scopes, contract::IDENTITY_SCOPES_HEADER);
    }

    #[test]
    fn bad_names_are_refused_naming_the_flag() {
        for (args, want) in [
            (&["--api-key-header", "x key"][..], "--api-key-header"),
            (&["--api-key-header", "authorization"][..], "bearer tokens"),
            (&["--api-key-header", ":path"][..], "not a header name"),
            (
                &["--identity-headers", "role=x-role"][..],
                "--identity-headers",
            ),
            (&["--identity-headers", "user=host"][..], "owned by Envoy"),
            (
                &[
                    "--identity-headers",
                    "user=x-key",
                    "--api-key-header",
                    "x-key",
                ][..],
                "--identity-headers: user: `x-key` carries credentials",
            ),
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }
}
