//! The server side of mTLS: a rustls configuration built from three files and rebuilt
//! when one of them changes, so a rotated certificate (cert-manager renewing a Secret,
//! an operator replacing a file) is used by the next connection without a restart.
use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::SystemTime,
};

use rustls::{ServerConfig, server::WebPkiClientVerifier};

/// Accepts TLS connections that present a client certificate signed by the client CA.
#[derive(Clone)]
pub struct Acceptor(Arc<Inner>);

struct Inner {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
    current: Mutex<Loaded>,
}

struct Loaded {
    stamp: Stamp,
    config: Arc<ServerConfig>,
}

/// Modification time and length of each file: a change of either means "re-read".
type Stamp = [Option<(SystemTime, u64)>; 3];

impl Acceptor {
    /// Loads and checks the files now; the error names the flag and the problem.
    pub fn load(cert: &Path, key: &Path, ca: &Path) -> Result<Self, String> {
        let inner = Inner {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            ca: ca.to_path_buf(),
            current: Mutex::new(Loaded {
                stamp: [None; 3],
                config: Arc::new(build(cert, key, ca)?),
            }),
        };
        let stamp = inner.stamp();
        inner.lock().stamp = stamp;
        Ok(Acceptor(Arc::new(inner)))
    }

    /// The configuration for the next handshake: re-read if a file changed since the
    /// last look; a bad replacement is logged and the previous configuration kept.
    pub fn config(&self) -> Arc<ServerConfig> {
        let inner = &self.0;
        let stamp = inner.stamp();
        let mut current = inner.lock();
        if stamp != current.stamp {
            // Recorded even on failure: a broken file is reported once, not per
            // connection; the next write to it changes the stamp again.
            current.stamp = stamp;
            match build(&inner.cert, &inner.key, &inner.ca) {
                Ok(config) => {
                    current.config = Arc::new(config);
                    tracing::info!(cert = %inner.cert.display(), "gRPC server certificate reloaded");
                }
                Err(e) => tracing::warn!("{e}; keeping the previous certificate"),
            }
        }
        Arc::clone(&current.config)
    }
}

impl Inner {
    fn stamp(&self) -> Stamp {
        let one = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
        };
        [one(&self.cert), one(&self.key), one(&self.ca)]
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn build(cert: &Path, key: &Path, ca: &Path) -> Result<ServerConfig, String> {
    let provider = super::provider();
    let chain = super::read_certs(cert, "--tls-cert")?;
    let key_der = super::read_key(key, "--tls-key")?;
    let roots = super::read_roots(ca, "--client-ca")?;
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(&provider))
        .build()
        .map_err(|e| format!("--client-ca {}: {e}", ca.display()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            format!(
                "--tls-cert {} with --tls-key {}: {e}",
                cert.display(),
                key.display()
            )
        })?;
    config.alpn_protocols = vec![super::ALPN_H2.to_vec()];
    Ok(config)
}
