//! `portcullis authz` process wiring: configuration → stores, cache and authorizer →
//! the gRPC and metrics servers, all stopped by one shared [`Shutdown`].
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use portcullis_process::Shutdown;
use prometheus::Registry;

use crate::args::Args;
use crate::cache::IdentityCache;
use crate::check::Authorizer;
use crate::config::{Config, FileSection, KeyStoreSection};
use crate::grpc::AuthzGrpc;
use crate::jwt::JwtValidator;
use crate::metrics::Metrics;
use crate::store::{FileStore, IntrospectionStore, KeyStore, PostgresStore};

/// How often a key file is checked for changes.
const KEY_FILE_POLL: Duration = Duration::from_secs(1);

/// Builds the service from the configuration: stores, cache, authorizer.
pub fn build(args: &Args, metrics: &Metrics) -> anyhow::Result<AuthzGrpc> {
    let mut config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(p) = &args.keys_file {
        config.key_store = Some(KeyStoreSection::File(FileSection {
            path: p.clone(),
            reload_every: None,
        }));
    }
    if let Some(ttl) = args.cache_ttl {
        config.cache.ttl = Some(ttl);
    }
    if let Some(h) = &args.api_key_header {
        config.api_key_header = Some(h.clone());
    }
    if config.api_key_header.is_some() || config.identity_headers.is_some() {
        tracing::warn!(
            "apiKeyHeader, identityHeaders and --api-key-header (PORTCULLIS_AUTHZ_API_KEY_HEADER) are deprecated: \
             the control plane sends its --api-key-header and --identity-headers with every Check, and those win; \
             these settings only apply to Checks that come without them"
        );
    }
    let cache = IdentityCache::new(config.cache());
    {
        let cache = cache.clone();
        metrics.watch_cache_entries(move || cache.entries());
    }
    let keys: Option<Arc<dyn KeyStore>> = match &config.key_store {
        None => {
            tracing::warn!("no key store configured: API keys and opaque tokens are refused");
            None
        }
        Some(KeyStoreSection::File(f)) => {
            let store = Arc::new(FileStore::load(&f.path)?);
            tracing::info!(path = %f.path.display(), keys = store.len(), "key file loaded");
            let (m, c) = (metrics.clone(), cache.clone());
            store.spawn_reloader(f.reload_every.unwrap_or(KEY_FILE_POLL), move |r| {
                m.key_reload(r.is_ok());
                if r.is_ok() {
                    // Revocations take effect now rather than after the TTL.
                    c.clear();
                }
            });
            Some(store)
        }
        Some(KeyStoreSection::Introspection(i)) => Some(Arc::new(IntrospectionStore::new(
            i.to_config(args.client_secret.clone()),
            metrics.clone(),
        )?)),
        Some(KeyStoreSection::Postgres(p)) => Some(Arc::new(PostgresStore::new(
            p.to_config(args.postgres_url.clone())?,
            metrics.clone(),
        )?)),
    };
    let jwt: Option<Arc<dyn KeyStore>> = match &config.jwt {
        Some(j) => Some(Arc::new(JwtValidator::new(j.to_config())?)),
        None => None,
    };
    let authorizer = Authorizer::new(&config.api_key_header(), cache, keys, jwt, metrics.clone());
    Ok(AuthzGrpc::new(
        Arc::new(authorizer),
        config.identity_headers(),
    ))
}

/// Serve until `shutdown` resolves.
pub async fn run(
    args: Args,
    grpc: tokio::net::TcpListener,
    metrics_http: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let registry = Registry::new();
    let metrics = Metrics::new(&registry)?;
    let transport = args.tls.transport(grpc.local_addr()?, "--grpc-addr")?;
    let service = build(&args, &metrics)?;
    let stop = Shutdown::new(shutdown);
    tracing::info!(grpc = ?grpc.local_addr().ok(), http = ?metrics_http.local_addr().ok(), ?transport, "authz service serving");
    let (g, h) = tokio::join!(
        crate::grpc::serve(grpc, &transport, service, stop.signal()),
        portcullis_process::serve_metrics(metrics_http, registry, stop.signal()),
    );
    g.context("gRPC server")?;
    h.context("HTTP server")?;
    Ok(())
}

/// [`run`] on the addresses in `args`.
pub async fn run_bound(
    args: Args,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grpc = portcullis_process::bind(args.grpc_addr, "--grpc-addr").await?;
    let http = portcullis_process::bind(args.metrics_addr, "--metrics-addr").await?;
    run(args, grpc, http, shutdown).await
}
