//! The flags and the rule that decides between mTLS and plaintext.
use std::{net::SocketAddr, path::PathBuf};

use super::Acceptor;

/// The TLS flags of a Portcullis gRPC server.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct MtlsArgs {
    /// PEM certificate chain this gRPC server presents. With --tls-key and --client-ca
    /// the server speaks mTLS only; the files are re-read when they change.
    #[arg(long, env = "PORTCULLIS_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "PORTCULLIS_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) a client certificate must chain to; clients without one are
    /// refused during the handshake.
    #[arg(long, env = "PORTCULLIS_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Serve plaintext gRPC on a non-loopback address: anyone who reaches the port can
    /// call it. Without TLS flags a loopback address is plaintext anyway.
    #[arg(long, env = "PORTCULLIS_INSECURE")]
    pub insecure: bool,
}

/// How a gRPC server talks to its clients.
#[derive(Clone)]
pub enum Transport {
    Plaintext,
    Mtls(Acceptor),
}

impl Transport {
    pub fn is_mtls(&self) -> bool {
        matches!(self, Transport::Mtls(_))
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Plaintext => "plaintext",
            Transport::Mtls(_) => "mTLS",
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MtlsError {
    #[error(
        "--tls-cert, --tls-key and --client-ca go together (mTLS); missing {0} \
         (or drop the others to serve plaintext)"
    )]
    Partial(String),
    #[error("--insecure contradicts --tls-cert/--tls-key/--client-ca; give one or the other")]
    InsecureWithCertificates,
    #[error(
        "{flag} {addr} is not a loopback address, and plaintext gRPC there lets anyone who \
         reaches the port call it: give --tls-cert, --tls-key and --client-ca \
         (PORTCULLIS_TLS_CERT, PORTCULLIS_TLS_KEY, PORTCULLIS_CLIENT_CA) to require client \
         certificates, or --insecure (PORTCULLIS_INSECURE=true) to serve plaintext anyway"
    )]
    NotLoopback { flag: String, addr: SocketAddr },
    #[error("{0}")]
    Load(String),
}

impl MtlsArgs {
    /// The transport for a server bound to `addr` (`flag` names the address flag in
    /// errors). Loads the certificates now, so a bad file stops the start-up.
    pub fn transport(&self, addr: SocketAddr, flag: &str) -> Result<Transport, MtlsError> {
        let given = [
            ("--tls-cert", &self.tls_cert),
            ("--tls-key", &self.tls_key),
            ("--client-ca", &self.client_ca),
        ];
        let missing: Vec<&str> = given
            .iter()
            .filter(|(_, p)| p.is_none())
            .map(|(f, _)| *f)
            .collect();
        match (&self.tls_cert, &self.tls_key, &self.client_ca) {
            (Some(cert), Some(key), Some(ca)) => {
                if self.insecure {
                    return Err(MtlsError::InsecureWithCertificates);
                }
                Acceptor::load(cert, key, ca)
                    .map(Transport::Mtls)
                    .map_err(MtlsError::Load)
            }
            _ if missing.len() < given.len() => Err(MtlsError::Partial(missing.join(", "))),
            _ if self.insecure || addr.ip().is_loopback() => {
                if !addr.ip().is_loopback() {
                    tracing::warn!(%addr, "{flag}: serving plaintext gRPC on a non-loopback address (--insecure)");
                }
                Ok(Transport::Plaintext)
            }
            _ => Err(MtlsError::NotLoopback {
                flag: flag.to_string(),
                addr,
            }),
        }
    }

    /// These flags as arguments, for a component started with a parsed command line
    /// (`portcullis up`).
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (flag, path) in [
            ("--tls-cert", &self.tls_cert),
            ("--tls-key", &self.tls_key),
            ("--client-ca", &self.client_ca),
        ] {
            if let Some(p) = path {
                out.push(flag.to_string());
                out.push(p.to_string_lossy().into_owned());
            }
        }
        if self.insecure {
            out.push("--insecure".into());
        }
        out
    }
}

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;
