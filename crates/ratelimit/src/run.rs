//! `portcullis ratelimit`: the process wiring (config source, store, gRPC and HTTP
//! servers), in the shape every Portcullis process has: `run(args, listeners,
//! shutdown)`, and `run_bound` binding the listeners from the flags first.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus::Registry;
use tokio::net::TcpListener;

use crate::args::{Args, StoreKind};
use crate::clock::{Clock, SystemClock};
use crate::envoy_env::EnvoyEnv;
use crate::file_watch::{POLL, load_files, watch_files};
use crate::limiter::Limiter;
use crate::metrics::Metrics;
use crate::settings::{Settings, Source};
use crate::store::{MemoryStore, RedisStore, RedisTarget, Store};
use crate::table::LimitTable;
use crate::xds_client::{XdsClientConfig, run_xds_client};

/// How often expired in-memory counters are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// The sockets the process serves on (tests bind port 0).
pub struct Listeners {
    /// RateLimitService and gRPC health.
    pub grpc: TcpListener,
    /// /metrics, /healthz, /healthcheck.
    pub http: TcpListener,
    /// envoyproxy's `USE_PROMETHEUS` port: /metrics again.
    pub prometheus: Option<TcpListener>,
}

impl Listeners {
    pub fn new(grpc: TcpListener, http: TcpListener) -> Self {
        Listeners {
            grpc,
            http,
            prometheus: None,
        }
    }

    /// Binds the addresses of `settings`, naming the flag of any that fails.
    pub async fn bind(settings: &Settings) -> anyhow::Result<Self> {
        let bind = portcullis_process::bind;
        Ok(Listeners {
            grpc: bind(settings.grpc_addr, "--grpc-addr (GRPC_HOST/GRPC_PORT)").await?,
            http: bind(settings.http_addr, "--metrics-addr (HOST/PORT)").await?,
            prometheus: match settings.prometheus_addr {
                Some(a) => Some(bind(a, "PROMETHEUS_ADDR").await?),
                None => None,
            },
        })
    }
}

/// Reads envoyproxy's environment variables, binds, then [`run`]s.
pub async fn run_bound(
    mut args: Args,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    args.envoy = EnvoyEnv::from_lookup(|k| std::env::var(k).ok())
        .context("envoyproxy/ratelimit environment")?;
    for (name, why) in &args.envoy.ignored {
        tracing::warn!(
            variable = name,
            "envoyproxy/ratelimit setting has no effect here: {why}"
        );
    }
    let listeners = Listeners::bind(&Settings::resolve(&args)?).await?;
    run(args, listeners, shutdown).await
}

/// Serves until `shutdown` resolves.
pub async fn run(
    args: Args,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let s = Settings::resolve(&args)?;
    let transport = args
        .tls
        .transport(listeners.grpc.local_addr()?, "--grpc-addr")?;
    if s.keys_public {
        tracing::warn!(
            "no counter key secret: counter keys in Redis are hashed with a public key; set PORTCULLIS_RATELIMIT_COUNTER_KEY_SECRET (the same on every replica)"
        );
    }
    let registry = Registry::new();
    let metrics = Metrics::with_max_keys(&registry, s.stats_max_keys)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let table = Arc::new(LimitTable::default());
    let stop = portcullis_process::Shutdown::new(shutdown);

    match s.source.clone() {
        Source::Xds { addr, node_id } => {
            let mut cfg = XdsClientConfig::new(addr, node_id, s.load.defaults);
            cfg.tls = crate::xds_client::client_tls(&args, &cfg.addr)?;
            tokio::spawn(run_xds_client(
                cfg,
                table.clone(),
                metrics.clone(),
                stop.signal(),
            ));
        }
        Source::Files(source) => {
            // The first load decides whether the process starts at all.
            let first = source.fingerprint().ok();
            let (limits, version) = load_files(&source, s.load, &table, &metrics)
                .with_context(|| format!("loading {}", source.describe()))?;
            tracing::info!(source = %source.describe(), %version, limits, "rate-limit config loaded");
            tokio::spawn(watch_files(
                source,
                s.load,
                first,
                table.clone(),
                metrics.clone(),
                POLL,
                stop.signal(),
            ));
        }
        Source::None => tracing::warn!(
            "no --xds-addr, --config-file or runtime directory: every request is allowed"
        ),
    }

    let store: Arc<dyn Store> = match s.store.kind {
        StoreKind::Memory => {
            let m = Arc::new(MemoryStore::with_max_keys(
                s.store.memory_max_keys,
                metrics.memory_evictions.clone(),
            ));
            let gauge = metrics.memory_keys.clone();
            m.spawn_sweeper(clock.clone(), SWEEP_EVERY, move |n| gauge.set(n as i64));
            m
        }
        StoreKind::Redis => {
            let url = s.store.redis_urls.first().context("--redis-url is empty")?;
            RedisStore::connect_with(RedisTarget::Single(url.clone()), &s.store.tls)?
        }
        StoreKind::RedisCluster => RedisStore::connect_with(
            RedisTarget::Cluster(s.store.redis_urls.clone()),
            &s.store.tls,
        )?,
    };
    let limiter = Arc::new(
        Limiter::builder(table)
            .store(store)
            .clock(clock)
            .store_timeout(s.store_timeout)
            .local_cache_entries(s.local_cache_entries)
            .counter_keys(s.keys)
            .behaviour(s.behaviour)
            .metrics(metrics)
            .build(),
    );
    let Listeners {
        grpc,
        http,
        prometheus,
    } = listeners;
    tracing::info!(grpc = ?grpc.local_addr().ok(), http = ?http.local_addr().ok(), ?transport, "rate-limit service serving");
    let prometheus = async {
        match prometheus {
            Some(l) => crate::http::serve(l, registry.clone(), stop.signal()).await,
            None => Ok(()),
        }
    };
    let (g, h, p) = tokio::join!(
        crate::grpc::serve_with(grpc, &transport, limiter, stop.signal()),
        crate::http::serve(http, registry.clone(), stop.signal()),
        prometheus,
    );
    g.context("gRPC server")?;
    h.context("HTTP server")?;
    p.context("PROMETHEUS_ADDR server")?;
    Ok(())
}
