//! New connections per second, one request each: a certificate for the benchmark's
//! Host, and a client that opens a connection (TCP, or TCP + TLS through rustls), sends
//! one `GET` with `connection: close`, reads the answer and starts over. The same loop
//! serves plain HTTP and HTTPS, so only the handshake differs; rustls says for each
//! connection whether its handshake resumed a session.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use rustls::{ClientConfig, HandshakeKind, RootCertStore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::gateway::quantile;

/// A CA and a leaf it signed for `hostname` (ECDSA P-256, rcgen's default key type).
pub struct Pki {
    pub ca_pem: String,
    pub chain_pem: String,
    pub key_pem: String,
}

pub fn pki(hostname: &str) -> anyhow::Result<Pki> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "portcullis bench CA");
    let ca_pem = ca.self_signed(&ca_key)?.pem();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let mut leaf = rcgen::CertificateParams::new(vec![hostname.to_string()])?;
    leaf.not_before = rcgen::date_time_ymd(2020, 1, 1);
    leaf.not_after = rcgen::date_time_ymd(2100, 1, 1);
    let key = rcgen::KeyPair::generate()?;
    let chain_pem = leaf.signed_by(&key, &issuer)?.pem();
    Ok(Pki {
        ca_pem,
        chain_pem,
        key_pem: key.serialize_pem(),
    })
}

/// A client trusting `ca_pem`, speaking HTTP/1.1; `resume` keeps rustls's default
/// in-memory session store (TLS 1.3 tickets), otherwise every handshake is full.
pub fn connector(ca_pem: &str, resume: bool) -> anyhow::Result<TlsConnector> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Where the connections go: Envoy's port, and TLS with the SNI name when set.
#[derive(Clone)]
pub struct Target {
    pub port: u16,
    pub host: String,
    pub tls: Option<TlsConnector>,
}

pub struct Conns {
    pub connections: u64,
    pub per_sec: f64,
    /// Handshakes that resumed a session, as rustls reports them.
    pub resumed: u64,
    /// Connections that failed or did not get a 200.
    pub bad: u64,
    /// Connect to the end of the answer.
    pub p50: Duration,
    pub p99: Duration,
}

/// Reads until the server closes; a TLS peer closing without close_notify is an error
/// for rustls, but what was read before it is the whole answer.
async fn read_all(s: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) {
    let _ = s.read_to_end(buf).await;
}

/// One connection, one request: whether its handshake resumed a session.
async fn one(t: &Target, request: &[u8]) -> anyhow::Result<bool> {
    let tcp = TcpStream::connect(("127.0.0.1", t.port)).await?;
    tcp.set_nodelay(true)?;
    let mut answer = Vec::with_capacity(1024);
    let resumed = match &t.tls {
        None => {
            let mut s = tcp;
            s.write_all(request).await?;
            read_all(&mut s, &mut answer).await;
            false
        }
        Some(c) => {
            let name = ServerName::try_from(t.host.clone())?;
            let mut s = c.connect(name, tcp).await.context("TLS handshake")?;
            let resumed = s.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
            s.write_all(request).await?;
            read_all(&mut s, &mut answer).await;
            resumed
        }
    };
    anyhow::ensure!(
        answer.starts_with(b"HTTP/1.1 200"),
        "answer: {:?}",
        String::from_utf8_lossy(&answer[..answer.len().min(80)])
    );
    Ok(resumed)
}

/// `concurrency` loops of connect + one request + close, for `duration` after a 1 s
/// warm-up (which also fills the session store when resuming).
pub async fn run(t: &Target, concurrency: usize, duration: Duration) -> anyhow::Result<Conns> {
    let request = Arc::new(
        format!(
            "GET /new HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n",
            t.host
        )
        .into_bytes(),
    );
    let round = |d: Duration| {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let (t, request, stop) = (t.clone(), request.clone(), stop.clone());
                tokio::spawn(async move {
                    let (mut took, mut resumed, mut bad) = (Vec::new(), 0u64, 0u64);
                    while !stop.load(Ordering::Relaxed) {
                        let start = Instant::now();
                        match one(&t, &request).await {
                            Ok(r) => resumed += u64::from(r),
                            Err(_) => bad += 1,
                        }
                        took.push(start.elapsed());
                    }
                    (took, resumed, bad)
                })
            })
            .collect();
        async move {
            let started = Instant::now();
            tokio::time::sleep(d).await;
            stop.store(true, Ordering::Relaxed);
            let (mut took, mut resumed, mut bad) = (Vec::new(), 0, 0);
            for task in tasks {
                let (t, r, b) = task.await.context("connection loop")?;
                took.extend(t);
                resumed += r;
                bad += b;
            }
            took.sort();
            anyhow::Ok(Conns {
                connections: took.len() as u64,
                per_sec: took.len() as f64 / started.elapsed().as_secs_f64(),
                resumed,
                bad,
                p50: quantile(&took, 0.5),
                p99: quantile(&took, 0.99),
            })
        }
    };
    round(Duration::from_secs(1)).await?;
    round(duration).await
}
