//! envoyproxy/ratelimit's environment variables, so a Deployment written for it runs
//! `portcullis ratelimit` unchanged. `portcullis ratelimit` reads them from the process
//! environment (`run_bound`); Portcullis' own flags and `PORTCULLIS_RATELIMIT_*`
//! variables win where both are set.
//!
//! Each variable is either mapped (parsed here, applied in `settings`), accepted
//! without effect (a warning names it and says why), or refused at start with the
//! reason, when running on would silently behave differently.
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::{Context, bail};

use self::names::{IGNORED, REFUSED};

#[path = "envoy_env_names.rs"]
mod names;

/// A value that must not reach logs (`Debug` shows `***`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// The mapped variables that were set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnvoyEnv {
    pub runtime_root: Option<PathBuf>,
    pub runtime_subdirectory: Option<PathBuf>,
    pub runtime_appdirectory: Option<PathBuf>,
    pub runtime_ignoredotfiles: Option<bool>,
    pub runtime_watch_root: Option<bool>,
    pub merge_domain_config: Option<bool>,
    pub grpc_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    /// `USE_PROMETHEUS=true`: `/metrics` also on `PROMETHEUS_ADDR` (default `:9090`).
    pub prometheus_addr: Option<SocketAddr>,
    /// `REDIS_URL` with `REDIS_SOCKET_TYPE`, `REDIS_AUTH` and `REDIS_TLS` applied.
    pub redis_urls: Option<Vec<String>>,
    pub redis_cluster: Option<bool>,
    pub redis_tls_ca: Option<PathBuf>,
    pub redis_tls_cert: Option<PathBuf>,
    pub redis_tls_key: Option<PathBuf>,
    pub cache_key_prefix: Option<String>,
    pub local_cache_size_in_bytes: Option<u64>,
    pub near_limit_ratio: Option<f64>,
    pub shadow_mode: Option<bool>,
    pub quota_mode: Option<bool>,
    pub stop_cache_key_increment_when_overlimit: Option<bool>,
    pub limit_response_headers_enabled: Option<bool>,
    pub limit_limit_header: Option<String>,
    pub limit_remaining_header: Option<String>,
    pub limit_reset_header: Option<String>,
    /// Set variables that have no effect here, with why.
    pub ignored: Vec<(&'static str, &'static str)>,
}

/// Whether a value means true, as Go's `strconv.ParseBool` reads it.
fn parse_bool(name: &str, v: &str) -> anyhow::Result<bool> {
    match v.trim() {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" | "" => Ok(false),
        other => bail!("{name}={other:?} is not a boolean: use true or false"),
    }
}

fn parse<T: std::str::FromStr>(name: &str, v: &str, what: &str) -> anyhow::Result<T> {
    v.trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{name}={v:?} is not {what}"))
}

/// `host:port` or `:port` (all addresses), as Go listens on.
fn listen_addr(name: &str, v: &str) -> anyhow::Result<SocketAddr> {
    let v = v.trim();
    let (host, port) = v
        .rsplit_once(':')
        .with_context(|| format!("{name}={v:?} is not host:port or :port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = if host.is_empty() {
        IpAddr::from([0, 0, 0, 0])
    } else {
        parse(name, host, "an IP address")?
    };
    Ok(SocketAddr::new(ip, parse(name, port, "a port")?))
}

impl EnvoyEnv {
    /// Reads envoyproxy's variables through `get` (the process environment in
    /// `run_bound`, a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<EnvoyEnv> {
        let b = |name: &str| get(name).map(|v| parse_bool(name, &v)).transpose();
        let s = |name: &str| get(name).filter(|v| !v.is_empty());
        let mut e = EnvoyEnv {
            runtime_root: s("RUNTIME_ROOT").map(PathBuf::from),
            runtime_subdirectory: s("RUNTIME_SUBDIRECTORY").map(PathBuf::from),
            runtime_appdirectory: s("RUNTIME_APPDIRECTORY").map(PathBuf::from),
            runtime_ignoredotfiles: b("RUNTIME_IGNOREDOTFILES")?,
            runtime_watch_root: b("RUNTIME_WATCH_ROOT")?,
            merge_domain_config: b("MERGE_DOMAIN_CONFIG")?,
            shadow_mode: b("SHADOW_MODE")?,
            quota_mode: b("QUOTA_MODE")?,
            stop_cache_key_increment_when_overlimit: b("STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT")?,
            limit_response_headers_enabled: b("LIMIT_RESPONSE_HEADERS_ENABLED")?,
            limit_limit_header: s("LIMIT_LIMIT_HEADER"),
            limit_remaining_header: s("LIMIT_REMAINING_HEADER"),
            limit_reset_header: s("LIMIT_RESET_HEADER"),
            cache_key_prefix: s("CACHE_KEY_PREFIX"),
            redis_tls_ca: s("REDIS_TLS_CACERT").map(PathBuf::from),
            redis_tls_cert: s("REDIS_TLS_CLIENT_CERT").map(PathBuf::from),
            redis_tls_key: s("REDIS_TLS_CLIENT_KEY").map(PathBuf::from),
            ..EnvoyEnv::default()
        };
        if let Some(v) = s("LOCAL_CACHE_SIZE_IN_BYTES") {
            e.local_cache_size_in_bytes =
                Some(parse("LOCAL_CACHE_SIZE_IN_BYTES", &v, "a byte count")?);
        }
        if let Some(v) = s("NEAR_LIMIT_RATIO") {
            let r: f64 = parse("NEAR_LIMIT_RATIO", &v, "a number")?;
            if !(0.0..=1.0).contains(&r) {
                bail!("NEAR_LIMIT_RATIO={v:?} is outside 0..=1");
            }
            e.near_limit_ratio = Some(r);
        }
        let host = |name: &str| -> anyhow::Result<Option<IpAddr>> {
            s(name)
                .map(|v| parse(name, &v, "an IP address"))
                .transpose()
        };
        let port = |name: &str| -> anyhow::Result<Option<u16>> {
            s(name).map(|v| parse(name, &v, "a port")).transpose()
        };
        let addr = |h: Option<IpAddr>, p: Option<u16>, default_port: u16| {
            (h.is_some() || p.is_some()).then(|| {
                SocketAddr::new(
                    h.unwrap_or(IpAddr::from([0, 0, 0, 0])),
                    p.unwrap_or(default_port),
                )
            })
        };
        e.grpc_addr = addr(host("GRPC_HOST")?, port("GRPC_PORT")?, 8081);
        e.http_addr = addr(host("HOST")?, port("PORT")?, 8080);
        if b("USE_PROMETHEUS")?.unwrap_or(false) {
            let a = s("PROMETHEUS_ADDR").unwrap_or_else(|| ":9090".into());
            e.prometheus_addr = Some(listen_addr("PROMETHEUS_ADDR", &a)?);
        }
        e.read_redis(&get)?;
        e.check_refused(&get)?;
        e.ignored = IGNORED
            .iter()
            .filter(|(name, _)| get(name).is_some())
            .copied()
            .collect();
        Ok(e)
    }

    fn read_redis(&mut self, get: &impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        if let Some(t) = get("BACKEND_TYPE").filter(|t| !t.eq_ignore_ascii_case("redis")) {
            bail!(
                "BACKEND_TYPE={t:?} is not supported: use redis (REDIS_URL) or the memory store (--store memory)"
            );
        }
        let cluster = match get("REDIS_TYPE").map(|t| t.to_ascii_lowercase()) {
            None => None,
            Some(t) if t == "single" => Some(false),
            Some(t) if t == "cluster" => Some(true),
            Some(t) if t == "sentinel" => bail!(
                "REDIS_TYPE=sentinel is not supported: point REDIS_URL at the master through a proxy, or use a Redis Cluster (REDIS_TYPE=cluster)"
            ),
            Some(t) => bail!("REDIS_TYPE={t:?} is not single, cluster or sentinel"),
        };
        self.redis_cluster = cluster;
        let Some(url) = get("REDIS_URL").filter(|u| !u.is_empty()) else {
            return Ok(());
        };
        let unix = match get("REDIS_SOCKET_TYPE").map(|t| t.to_ascii_lowercase()) {
            // envoyproxy's default is unix (its default URL is a nutcracker socket), but
            // a `host:port` URL is almost always meant as TCP.
            None => !url.contains(':'),
            Some(t) if t == "unix" => true,
            Some(t) if t == "tcp" => false,
            Some(t) => bail!("REDIS_SOCKET_TYPE={t:?} is not tcp or unix"),
        };
        let tls = get("REDIS_TLS")
            .map(|v| parse_bool("REDIS_TLS", &v))
            .transpose()?
            .unwrap_or(false);
        let auth = get("REDIS_AUTH").filter(|a| !a.is_empty());
        let userinfo = auth.map(|a| match a.split_once(':') {
            Some((user, pass)) => format!("{}:{}@", encode(user), encode(pass)),
            None => format!(":{}@", encode(&a)),
        });
        let urls = url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| {
                if u.contains("://") {
                    return Ok(u.to_string());
                }
                if unix {
                    if tls {
                        bail!("REDIS_TLS=true with a unix socket REDIS_URL: TLS needs host:port");
                    }
                    return Ok(format!("redis+unix://{u}"));
                }
                let scheme = if tls { "rediss" } else { "redis" };
                Ok(format!(
                    "{scheme}://{}{u}",
                    userinfo.as_deref().unwrap_or("")
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if urls.is_empty() {
            bail!("REDIS_URL is empty");
        }
        if urls.len() > 1 && cluster != Some(true) {
            bail!(
                "REDIS_URL lists several hosts: set REDIS_TYPE=cluster (sentinel is not supported)"
            );
        }
        self.redis_urls = Some(urls);
        Ok(())
    }

    fn check_refused(&self, get: &impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        if let Some(t) = get("CONFIG_TYPE").filter(|t| !t.eq_ignore_ascii_case("FILE")) {
            bail!(
                "CONFIG_TYPE={t:?} is not supported: use files (CONFIG_TYPE=FILE), or Portcullis' control plane (--xds-addr)"
            );
        }
        for (name, why) in REFUSED {
            let set = match get(name) {
                None => false,
                // Flags: only `true` changes anything.
                Some(v)
                    if matches!(
                        *name,
                        "GRPC_SERVER_USE_TLS"
                            | "REDIS_PERSECOND"
                            | "REDIS_TLS_SKIP_HOSTNAME_VERIFICATION"
                    ) =>
                {
                    parse_bool(name, &v)?
                }
                Some(v) => !v.is_empty(),
            };
            if set {
                bail!("{name} is set: {why}");
            }
        }
        Ok(())
    }

    /// The log filter and JSON switch of `LOG_LEVEL` / `LOG_FORMAT` (logrus level names).
    pub fn log_settings(get: impl Fn(&str) -> Option<String>) -> (Option<String>, bool) {
        let level = get("LOG_LEVEL").and_then(|l| {
            Some(
                match l.to_ascii_lowercase().as_str() {
                    "trace" => "trace",
                    "debug" => "debug",
                    "info" => "info",
                    "warn" | "warning" => "warn",
                    "error" | "fatal" | "panic" => "error",
                    _ => return None,
                }
                .to_string(),
            )
        });
        let json = get("LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json"));
        (level, json)
    }
}

/// Percent-encodes what cannot stand in a URL's userinfo.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "envoy_env_tests.rs"]
mod tests;
