//! Loading file-based limits into the table, and reloading them when the files
//! change. A bad load is refused as a whole: the previous limits stay, the error is
//! logged with the file and field, and `portcullis_ratelimit_config_rejected_total`
//! (envoyproxy: `config_load_error`) counts it.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::config_source::{FileSource, Fingerprint};
use crate::counter_key::digest_hex;
use crate::file_limits::{FileLimits, LoadOptions};
use crate::metrics::Metrics;
use crate::table::{LimitTable, Limits};

/// How often the files are checked for changes.
pub const POLL: Duration = Duration::from_millis(500);

/// Reads, validates and applies the files; returns the limit count and version.
pub fn load_files(
    source: &FileSource,
    opts: LoadOptions,
    table: &LimitTable,
    metrics: &Metrics,
) -> anyhow::Result<(usize, String)> {
    let files = source.read()?;
    let limits = FileLimits::load(&files, opts)?;
    let parts: Vec<&[u8]> = files
        .iter()
        .flat_map(|f| [f.name.as_bytes(), f.text.as_bytes()])
        .collect();
    let version = format!("file-{}", digest_hex(&parts));
    let n = limits.len();
    metrics.config_applied("file", &version, n);
    table.swap(Limits::Files(limits), version.clone());
    Ok((n, version))
}

/// Checks the files every `every` and reloads on change, until `shutdown`.
pub async fn watch_files(
    source: FileSource,
    opts: LoadOptions,
    mut last: Option<Fingerprint>,
    table: Arc<LimitTable>,
    metrics: Metrics,
    every: Duration,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(every) => {}
        }
        let src = source.clone();
        let Ok(Ok(now)) = tokio::task::spawn_blocking(move || src.fingerprint()).await else {
            // Missing for a moment (a swap in progress) or gone: keep what serves.
            continue;
        };
        if last.as_ref() == Some(&now) {
            continue;
        }
        let (src, t, m) = (source.clone(), table.clone(), metrics.clone());
        let loaded = tokio::task::spawn_blocking(move || load_files(&src, opts, &t, &m)).await;
        match loaded {
            Ok(Ok((limits, version))) => {
                tracing::info!(source = %source.describe(), %version, limits, "rate-limit config reloaded");
            }
            Ok(Err(e)) => {
                metrics.config_refused("file");
                tracing::warn!(source = %source.describe(), error = %format!("{e:#}"), "rate-limit config refused; keeping the previous one");
            }
            Err(e) => tracing::error!(error = %e, "rate-limit config reload failed"),
        }
        last = Some(now);
    }
}
