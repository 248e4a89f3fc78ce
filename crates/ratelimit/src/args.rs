//! `portcullis ratelimit`: flags and the process wiring (config source, store, gRPC and
//! HTTP servers). The binary crate only parses [`Args`] and calls [`run`].
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use prometheus::Registry;

use crate::clock::{Clock, SystemClock};
use crate::envoy_format::EnvoyConfig;
use crate::limit::{Algorithm, FailurePolicy};
use crate::limiter::Limiter;
use crate::metrics::Metrics;
use crate::portcullis_config::Defaults;
use crate::store::{MemoryStore, RedisStore, RedisTarget, Store};
use crate::table::{LimitTable, Limits, fnv64};
use crate::xds_client::{XdsClientConfig, run_xds_client};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    Memory,
    Redis,
    RedisCluster,
}

/// Flags of `portcullis ratelimit`; each has a `PORTCULLIS_RATELIMIT_…` twin.
#[derive(Debug, Clone, clap::Parser)]
pub struct Args {
    /// gRPC address (RateLimitService and health).
    #[arg(
        long,
        env = "PORTCULLIS_RATELIMIT_GRPC_ADDR",
        default_value = "0.0.0.0:8081"
    )]
    pub grpc_addr: SocketAddr,
    /// HTTP address for /metrics and /healthz.
    #[arg(
        long,
        env = "PORTCULLIS_RATELIMIT_METRICS_ADDR",
        default_value = "0.0.0.0:9091"
    )]
    pub metrics_addr: SocketAddr,
    /// Where counters live.
    #[arg(
        long,
        env = "PORTCULLIS_RATELIMIT_STORE",
        value_enum,
        default_value = "memory"
    )]
    pub store: StoreKind,
    /// Redis URL(s); several (comma-separated) seed a Redis Cluster.
    #[arg(
        long = "redis-url",
        env = "PORTCULLIS_RATELIMIT_REDIS_URLS",
        value_delimiter = ',',
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_urls: Vec<String>,
    /// Bound on one store call; past it each limit follows its failure policy.
    #[arg(long, env = "PORTCULLIS_RATELIMIT_STORE_TIMEOUT", default_value = "20ms", value_parser = humantime::parse_duration)]
    pub store_timeout: Duration,
    /// Control plane ADS address (e.g. http://127.0.0.1:18000): limits from Route manifests.
    #[arg(
        long,
        env = "PORTCULLIS_RATELIMIT_XDS_ADDR",
        conflicts_with = "config_file"
    )]
    pub xds_addr: Option<String>,
    /// Node id sent to the control plane.
    #[arg(
        long,
        env = "PORTCULLIS_RATELIMIT_NODE_ID",
        default_value = "portcullis-ratelimit"
    )]
    pub node_id: String,
    /// Standalone: an envoyproxy/ratelimit-format YAML file (reloaded when it changes).
    #[arg(long, env = "PORTCULLIS_RATELIMIT_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    /// What limits without their own policy do when the store fails: allow | deny.
    #[arg(
        long,
        env = "PORTCULLIS_RATELIMIT_ON_STORE_FAILURE",
        default_value = "allow"
    )]
    pub on_store_failure: FailurePolicy,
    /// Algorithm of limits without their own: sliding | fixed.
    #[arg(
        long,
        env = "PORTCULLIS_RATELIMIT_ALGORITHM",
        default_value = "sliding"
    )]
    pub algorithm: Algorithm,
    /// Answer keys known to be over their limit locally until their quota returns.
    #[arg(long, env = "PORTCULLIS_RATELIMIT_LOCAL_CACHE", default_value_t = true, action = clap::ArgAction::Set)]
    pub local_cache: bool,
}

/// How often the config file is checked for changes.
const FILE_POLL: Duration = Duration::from_secs(1);
/// How often expired in-memory counters are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Serve until `shutdown` resolves, on listeners the caller bound (tests bind port 0).
pub async fn run(
    args: Args,
    grpc: tokio::net::TcpListener,
    metrics_http: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Args {
        grpc_addr: _,
        metrics_addr: _,
        store,
        redis_urls,
        store_timeout,
        xds_addr,
        node_id,
        config_file,
        on_store_failure,
        algorithm,
        local_cache,
    } = args;
    let defaults = Defaults {
        algorithm,
        on_store_failure,
    };
    let registry = Registry::new();
    let metrics = Metrics::new(&registry)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let table = Arc::new(LimitTable::default());

    let stop = portcullis_telemetry::Shutdown::new(shutdown);
    let stopped = || stop.signal();

    match (xds_addr, config_file) {
        (Some(_), Some(_)) => bail!("--xds-addr and --config-file are exclusive"),
        (Some(addr), None) => {
            let cfg = XdsClientConfig::new(addr, node_id, defaults);
            tokio::spawn(run_xds_client(
                cfg,
                table.clone(),
                metrics.clone(),
                stopped(),
            ));
        }
        (None, Some(path)) => {
            let text = load_file(&path, &table, &metrics, defaults)?;
            tokio::spawn(watch_file(
                path,
                text,
                table.clone(),
                metrics.clone(),
                defaults,
                stopped(),
            ));
        }
        (None, None) => tracing::warn!("no --xds-addr or --config-file: every request is allowed"),
    }

    let store: Arc<dyn Store> = match store {
        StoreKind::Memory => {
            let m = Arc::new(MemoryStore::new());
            m.spawn_sweeper(clock.clone(), SWEEP_EVERY);
            m
        }
        StoreKind::Redis => {
            let url = redis_urls.first().context("--redis-url is empty")?;
            RedisStore::connect(RedisTarget::Single(url.clone()))
        }
        StoreKind::RedisCluster => RedisStore::connect(RedisTarget::Cluster(redis_urls)),
    };
    let limiter = Arc::new(
        Limiter::builder(table)
            .store(store)
            .clock(clock)
            .store_timeout(store_timeout)
            .local_cache(local_cache)
            .metrics(metrics)
            .build(),
    );
    tracing::info!(grpc = ?grpc.local_addr().ok(), http = ?metrics_http.local_addr().ok(), "rate-limit service serving");
    let (g, h) = tokio::join!(
        crate::grpc::serve(grpc, limiter, stopped()),
        crate::http::serve(metrics_http, registry, stopped()),
    );
    g.context("gRPC server")?;
    h.context("HTTP server")?;
    Ok(())
}

/// Binds `args.grpc_addr` and `args.metrics_addr`, then [`run`]s.
pub async fn run_bound(
    args: Args,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grpc = portcullis_telemetry::bind(args.grpc_addr, "--grpc-addr").await?;
    let http = portcullis_telemetry::bind(args.metrics_addr, "--metrics-addr").await?;
    run(args, grpc, http, shutdown).await
}

/// Loads an envoyproxy-format file into `table`; returns its text.
pub fn load_file(
    path: &std::path::Path,
    table: &LimitTable,
    metrics: &Metrics,
    defaults: Defaults,
) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let cfg = EnvoyConfig::parse(&text, defaults)
        .with_context(|| format!("loading {}", path.display()))?;
    let version = format!("file-{:016x}", fnv64(text.as_bytes()));
    metrics.config_applied("file", &version, cfg.len());
    table.swap(Limits::Envoy(cfg), version);
    Ok(text)
}

/// Reloads the file when its content changes; a bad edit is logged and the previous
/// limits stay.
async fn watch_file(
    path: PathBuf,
    mut last: String,
    table: Arc<LimitTable>,
    metrics: Metrics,
    defaults: Defaults,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(FILE_POLL) => {}
        }
        let Ok(text) = tokio::fs::read_to_string(&path).await else {
            continue;
        };
        if text == last {
            continue;
        }
        match EnvoyConfig::parse(&text, defaults) {
            Ok(cfg) => {
                let version = format!("file-{:016x}", fnv64(text.as_bytes()));
                metrics.config_applied("file", &version, cfg.len());
                tracing::info!(path = %path.display(), %version, "rate-limit config reloaded");
                table.swap(Limits::Envoy(cfg), version);
            }
            Err(e) => {
                metrics.config_rejected.with_label_values(&["file"]).inc();
                tracing::warn!(path = %path.display(), error = %e, "rate-limit config refused; keeping the previous one");
            }
        }
        last = text;
    }
}
