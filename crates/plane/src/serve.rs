//! `portcullis serve`: the file-mode control plane. Order of start-up matters: the
//! state file is served before the directory is read, so Envoys reconnecting to a
//! restarted control plane never see an empty or partial configuration.
use std::{
    future::Future,
    path::PathBuf,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use parking_lot::RwLock;
use portcullis_translate::Options;
use portcullis_xds::Cache;
use prometheus::Registry;
use tokio::net::TcpListener;

use crate::{
    admin::{self, AdminState},
    file_source::{Board, FileSource},
    publish::Publisher,
};

pub struct ServeConfig {
    pub config_dir: PathBuf,
    pub state_file: Option<PathBuf>,
    pub options: Options,
    /// How often the directory is checked for changes.
    pub poll_interval: Duration,
    /// The web console: where its signals come from.
    pub console: crate::console::ConsoleArgs,
    /// Objects served on top of the directory's (see [`FileSource::extra`]).
    pub extra: Vec<portcullis_api::Document>,
    /// `--require-host-ownership`: a Route's hostname is served only when a Host owns it.
    pub require_host_ownership: bool,
}

/// Runs until `shutdown` resolves, xDS in plaintext.
pub async fn run(
    config: ServeConfig,
    xds: TcpListener,
    admin: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let plaintext = portcullis_tls::mtls::Transport::Plaintext;
    run_with(config, plaintext, xds, admin, shutdown).await
}

/// [`run`] with xDS over `xds_transport` (mTLS: each Envoy subscribes only as the node
/// its client certificate names).
pub async fn run_with(
    config: ServeConfig,
    xds_transport: portcullis_tls::mtls::Transport,
    xds: TcpListener,
    admin: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let ServeConfig {
        config_dir,
        state_file,
        options,
        poll_interval,
        console,
        extra,
        require_host_ownership,
    } = config;
    let console = crate::console::Console::new(&console)?;
    let registry = Registry::new();
    let cache = Cache::new(&registry);
    let publisher = Publisher::new(cache.clone(), options, state_file, &registry);
    let ready = Arc::new(AtomicBool::new(false));
    let mut created = Default::default();
    if let Some(c) = publisher.restore() {
        created = c;
        ready.store(true, std::sync::atomic::Ordering::Release);
    }
    // The servers stop after the watcher, once `shutdown` has resolved.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = portcullis_process::Shutdown::new(async {
        let _ = stop_rx.await;
    });
    let stopped = || stop.signal();
    tracing::info!(xds = %xds.local_addr()?, xds_transport = ?xds_transport, admin = %admin.local_addr()?, dir = %config_dir.display(), "control plane starting");
    let xds_task = tokio::spawn({
        let (cache, stop) = (cache.clone(), stopped());
        async move { portcullis_xds::serve_with(xds, &xds_transport, cache, stop).await }
    });
    let board = Arc::new(RwLock::new(Board::default()));
    let model: Arc<RwLock<Arc<portcullis_api::Model>>> = Arc::default();
    let admin_state = AdminState {
        cache: cache.clone(),
        registry: registry.clone(),
        board: board.clone(),
        model: model.clone(),
        ready: ready.clone(),
    };
    let sampler = tokio::spawn(console.clone().run(stopped()));
    let admin_task = tokio::spawn({
        let shutdown = stopped();
        async move {
            portcullis_process::http::serve(admin, admin::router(admin_state, console), shutdown)
                .await
        }
    });

    let mut source = FileSource::new(config_dir.clone(), created);
    source.extra = extra;
    source.rules.require_host_ownership = require_host_ownership;
    // Certificate files named by Hosts, for the watcher (they may live anywhere).
    let cert_files: Arc<parking_lot::Mutex<Vec<PathBuf>>> = Arc::default();
    let mut reload = {
        let cert_files = cert_files.clone();
        move || {
            let (now_serving, _) = reload_and_publish(&mut source, &publisher, &board);
            *cert_files.lock() = source.certificates.files.clone();
            *model.write() = Arc::new(now_serving);
            ready.store(true, std::sync::atomic::Ordering::Release);
        }
    };
    reload();
    // Manifests and certificate files; plus the hour, so certificates nearing expiry
    // are re-checked (the CertificateExpiring condition) even when nothing changes.
    let fingerprint = move || {
        let certs = cert_files.lock().clone();
        let hour = (!certs.is_empty()).then(|| jiff::Timestamp::now().as_second() / 3600);
        (
            crate::files::fingerprint(&config_dir),
            crate::files::files_fingerprint(certs),
            hour,
        )
    };
    let watcher = tokio::spawn(crate::files::watch(
        fingerprint,
        poll_interval,
        Duration::from_millis(50),
        reload,
    ));

    shutdown.await;
    watcher.abort();
    let _ = stop_tx.send(());
    xds_task.await??;
    admin_task.await??;
    let _ = sampler.await;
    Ok(())
}

/// One reload as `portcullis serve` runs it on a change: read the directory, reconcile,
/// publish, and make the next board from the shown one. Returns the model served and
/// the snapshot version.
pub fn reload_and_publish(
    source: &mut FileSource,
    publisher: &Publisher,
    board: &RwLock<Board>,
) -> (portcullis_api::Model, String) {
    let reloaded = source.reload();
    let published = publisher.publish(&reloaded.model, &source.created);
    let version = published.version;
    tracing::info!(
        version,
        routes = reloaded.model.routes.len(),
        services = reloaded.model.services.len(),
        "published"
    );
    {
        // Held while the next board is made from it, so no reader sees it half-made.
        let mut shown = board.write();
        let now = crate::console::now_rfc3339();
        *shown = source.next_board(&mut shown, version.clone(), &published.failed, &now);
    }
    (reloaded.model, version)
}
