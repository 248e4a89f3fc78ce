//! mTLS between Portcullis components. Every gRPC server (xDS, authz, ratelimit,
//! accesslog) takes the same [`MtlsArgs`]: with a certificate, its key and a client CA it
//! accepts only clients whose certificate chains to that CA; without them it serves
//! plaintext, and only on a loopback address unless `--insecure` says otherwise.
mod acceptor;
mod args;
mod client;
mod conn;
pub mod generate;
mod node;

pub use acceptor::Acceptor;
pub use args::{MtlsArgs, MtlsError, Transport};
pub use client::{ClientTls, channel};
pub use conn::{Conn, Peer, incoming};
pub use node::{NodeGrant, node_grants};

/// rustls with ring, the one provider the workspace builds (never the process default,
/// which is ambiguous when a dependency enables another).
pub(crate) fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain, naming the flag in the error.
pub(crate) fn read_certs(
    path: &std::path::Path,
    flag: &str,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, String> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    let bytes = std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{flag} {}: not PEM ({e})", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{flag} {}: no certificate in it (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// Reads a PEM private key; the error never quotes the file.
pub(crate) fn read_key(
    path: &std::path::Path,
    flag: &str,
) -> Result<rustls_pki_types::PrivateKeyDer<'static>, String> {
    use rustls_pki_types::{PrivateKeyDer, pem::PemObject};
    let bytes = std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| {
        format!(
            "{flag} {}: not a PEM private key (PKCS#8, PKCS#1 or SEC1)",
            path.display()
        )
    })
}

/// A root store of every certificate in a PEM CA bundle.
pub(crate) fn read_roots(
    path: &std::path::Path,
    flag: &str,
) -> Result<std::sync::Arc<rustls::RootCertStore>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(path, flag)? {
        roots.add(cert).map_err(|e| {
            format!(
                "{flag} {}: not a usable CA certificate ({e})",
                path.display()
            )
        })?;
    }
    Ok(std::sync::Arc::new(roots))
}

/// gRPC runs over HTTP/2 only.
pub(crate) const ALPN_H2: &[u8] = b"h2";
