//! What the process runs with, resolved from [`Args`]: a flag (or its
//! `PORTCULLIS_RATELIMIT_*` twin) wins, then envoyproxy's variable, then the default
//! of `--compat`. A pure function, so every combination is testable.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::args::{Args, Compat, StoreKind};
use crate::behaviour::Behaviour;
use crate::config_source::{FileSource, RuntimeDir};
use crate::counter_key::CounterKeys;
use crate::file_limits::LoadOptions;
use crate::limit::{Algorithm, Defaults};
use crate::response::HeaderStyle;
use crate::store::{Counting, RedisTls};

/// Where limits come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    None,
    Xds { addr: String, node_id: String },
    Files(FileSource),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    pub kind: StoreKind,
    pub redis_urls: Vec<String>,
    pub tls: RedisTls,
    pub memory_max_keys: usize,
}

#[derive(Debug)]
pub struct Settings {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub prometheus_addr: Option<SocketAddr>,
    pub source: Source,
    pub load: LoadOptions,
    pub store: StoreSettings,
    pub store_timeout: Duration,
    pub keys: CounterKeys,
    /// Redis without a secret: keys hashed with the public key (warned about).
    pub keys_public: bool,
    pub local_cache_entries: usize,
    pub behaviour: Behaviour,
    pub stats_max_keys: usize,
}

/// Roughly what one local-cache entry costs, to turn envoyproxy's byte size into entries.
const LOCAL_CACHE_ENTRY_BYTES: u64 = 128;

impl Settings {
    pub fn resolve(args: &Args) -> anyhow::Result<Settings> {
        let e = &args.envoy;
        let envoyproxy = args.compat == Compat::Envoyproxy;
        let defaults = Defaults {
            algorithm: args.algorithm.unwrap_or(if envoyproxy {
                Algorithm::Fixed
            } else {
                Algorithm::Sliding
            }),
            on_store_failure: args.on_store_failure,
        };
        let count_refused = args.count_refused.unwrap_or(
            // envoyproxy's switch only matters when on: it stops counting refused requests.
            envoyproxy && e.stop_cache_key_increment_when_overlimit != Some(true),
        );
        let local_cache_entries = match (args.local_cache, e.local_cache_size_in_bytes) {
            (Some(false), _) => 0,
            (Some(true), _) => crate::local_cache::DEFAULT_MAX_ENTRIES,
            (None, Some(bytes)) => (bytes / LOCAL_CACHE_ENTRY_BYTES) as usize,
            (None, None) if envoyproxy => 0,
            (None, None) => crate::local_cache::DEFAULT_MAX_ENTRIES,
        };
        let portcullis_headers = HeaderStyle::default();
        let headers = HeaderStyle {
            rate_limit: args
                .rate_limit_headers
                .or(e.limit_response_headers_enabled)
                .unwrap_or(!envoyproxy),
            limit_name: e
                .limit_limit_header
                .clone()
                .unwrap_or(portcullis_headers.limit_name),
            remaining_name: e
                .limit_remaining_header
                .clone()
                .unwrap_or(portcullis_headers.remaining_name),
            reset_name: e
                .limit_reset_header
                .clone()
                .unwrap_or(portcullis_headers.reset_name),
            retry_after: args.retry_after.unwrap_or(!envoyproxy),
        };
        let behaviour = Behaviour {
            counting: if count_refused {
                Counting::All
            } else {
                Counting::Admitted
            },
            global_shadow: args.shadow_mode.or(e.shadow_mode).unwrap_or(false),
            global_quota: args.quota_mode.or(e.quota_mode).unwrap_or(false),
            headers,
            near_limit_ratio: e.near_limit_ratio.unwrap_or(0.8),
        };

        let store = store_settings(args)?;
        let prefix = args
            .key_prefix
            .clone()
            .or_else(|| e.cache_key_prefix.clone())
            .unwrap_or_default();
        if prefix.contains(['{', '}']) {
            bail!(
                "the key prefix {prefix:?} (CACHE_KEY_PREFIX) may not contain {{ or }}: they would move the Redis Cluster hash tag"
            );
        }
        let secret = match (&args.counter_key_secret, &args.counter_key_secret_file) {
            (Some(s), _) => Some(s.0.clone().into_bytes()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("--counter-key-secret-file {}", path.display()))?;
                Some(text.trim_end_matches(['\r', '\n']).as_bytes().to_vec())
            }
            (None, None) => None,
        };
        if secret.as_ref().is_some_and(|s| s.len() < 16) {
            bail!(
                "the counter key secret is shorter than 16 bytes; use a random value of 32 bytes or more"
            );
        }
        let keys_public = secret.is_none() && store.kind != StoreKind::Memory;
        let keys = match (secret, store.kind) {
            (Some(s), _) => CounterKeys::new(Some(&s), &prefix),
            (None, StoreKind::Memory) => CounterKeys::new(None, &prefix),
            (None, _) => CounterKeys::public(&prefix),
        };

        Ok(Settings {
            grpc_addr: args
                .grpc_addr
                .or(e.grpc_addr)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 8081))),
            http_addr: args
                .metrics_addr
                .or(e.http_addr)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 9091))),
            prometheus_addr: e.prometheus_addr,
            source: source(args)?,
            load: LoadOptions {
                defaults,
                merge_domains: args
                    .merge_domain_config
                    .or(e.merge_domain_config)
                    .unwrap_or(false),
            },
            store,
            store_timeout: args.store_timeout,
            keys,
            keys_public,
            local_cache_entries,
            behaviour,
            stats_max_keys: args.stats_max_keys,
        })
    }
}

fn store_settings(args: &Args) -> anyhow::Result<StoreSettings> {
    let e = &args.envoy;
    let kind = match (args.store, &e.redis_urls) {
        (Some(k), _) => k,
        (None, Some(_)) if e.redis_cluster == Some(true) => StoreKind::RedisCluster,
        (None, Some(_)) => StoreKind::Redis,
        (None, None) => StoreKind::Memory,
    };
    let redis_urls = if !args.redis_urls.is_empty() {
        args.redis_urls.clone()
    } else {
        e.redis_urls
            .clone()
            .unwrap_or_else(|| vec!["redis://127.0.0.1:6379".into()])
    };
    if kind == StoreKind::Redis && redis_urls.len() > 1 {
        bail!(
            "--redis-url lists {} URLs for --store redis: one Redis, or --store redis-cluster",
            redis_urls.len()
        );
    }
    Ok(StoreSettings {
        kind,
        redis_urls,
        tls: RedisTls {
            ca: args.redis_tls_ca.clone().or_else(|| e.redis_tls_ca.clone()),
            cert: args
                .redis_tls_cert
                .clone()
                .or_else(|| e.redis_tls_cert.clone()),
            key: args
                .redis_tls_key
                .clone()
                .or_else(|| e.redis_tls_key.clone()),
        },
        memory_max_keys: args.memory_max_keys,
    })
}

fn source(args: &Args) -> anyhow::Result<Source> {
    let e = &args.envoy;
    let root = args.runtime_root.clone().or_else(|| e.runtime_root.clone());
    let runtime = root.map(|root| {
        FileSource::Runtime(RuntimeDir {
            root,
            subdirectory: args
                .runtime_subdirectory
                .clone()
                .or_else(|| e.runtime_subdirectory.clone())
                .unwrap_or_default(),
            app_directory: args
                .runtime_appdirectory
                .clone()
                .or_else(|| e.runtime_appdirectory.clone())
                .unwrap_or_else(|| PathBuf::from("config")),
            ignore_dotfiles: args
                .runtime_ignore_dotfiles
                .or(e.runtime_ignoredotfiles)
                .unwrap_or(false),
        })
    });
    let file = args.config_file.clone().map(FileSource::File);
    Ok(match (&args.xds_addr, file, runtime) {
        (Some(addr), None, None) => Source::Xds {
            addr: addr.clone(),
            node_id: args.node_id.clone(),
        },
        (None, Some(f), None) | (None, None, Some(f)) => Source::Files(f),
        (None, None, None) => Source::None,
        _ => bail!(
            "limits come from one place: --xds-addr, --config-file or the runtime directory (--runtime-root / RUNTIME_ROOT), not several"
        ),
    })
}

#[cfg(test)]
#[path = "settings_tests.rs"]
mod tests;
