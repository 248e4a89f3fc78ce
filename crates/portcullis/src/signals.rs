//! The process-wide stop signal every subcommand shares.

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is called, not
/// when first polled: a signal during start-up is then caught instead of killing the
/// process with the default action (which would orphan `up`'s Envoy).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    async move {
        tokio::select! {
            _ = recv(term.as_mut()) => {}
            _ = recv(int.as_mut()) => {}
        }
        tracing::info!("shutting down");
    }
}

async fn recv(s: Option<&mut tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}
