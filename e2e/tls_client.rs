//! A test CA, certificates for hostnames, and an HTTPS client that reports which
//! certificate the server presented (rustls; no client library hides the handshake).
use std::{path::Path, sync::Arc, time::Duration};

use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

/// A CA that signs leaf certificates.
pub struct Ca {
    key: rcgen::KeyPair,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub pem: String,
}

impl Ca {
    pub fn new() -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "portcullis e2e CA");
        let cert = params.self_signed(&key).unwrap();
        let pem = cert.pem();
        let issuer = rcgen::Issuer::new(
            params,
            rcgen::KeyPair::from_pem(&key.serialize_pem()).unwrap(),
        );
        Ca { key, issuer, pem }
    }

    /// A leaf for `names`, valid from a day ago for `days`: (chain PEM, key PEM).
    pub fn leaf(&self, names: &[&str], days: i64) -> (String, String) {
        let _ = &self.key;
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(days);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A leaf with common name `cn` and DNS names `names`: (chain PEM, key PEM).
    pub fn named_leaf(&self, cn: &str, names: &[&str], days: i64) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(days);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn write_leaf(
        &self,
        dir: &Path,
        stem: &str,
        names: &[&str],
        days: i64,
    ) -> (String, String) {
        let (c, k) = self.leaf(names, days);
        crate::harness::write_atomic(&dir.join(format!("{stem}.crt")), &c);
        crate::harness::write_atomic(&dir.join(format!("{stem}.key")), &k);
        (c, k)
    }
}

/// What one HTTPS request saw.
pub struct Seen {
    pub status: u16,
    pub head: String,
    /// The leaf certificate the server presented (DER).
    pub leaf: Vec<u8>,
}

/// Accepts any certificate: for requests without SNI, where no name can be verified.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client trusting `ca_pem` (or anything, when `None`).
pub fn client(ca_pem: Option<&str>) -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let mut config = match ca_pem {
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            use rustls::pki_types::pem::PemObject;
            for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// `GET path` over TLS to 127.0.0.1:`port`, with SNI `sni` (an IP sends none).
pub async fn get(
    connector: &TlsConnector,
    port: u16,
    sni: &str,
    host: &str,
    path: &str,
) -> Result<Seen, String> {
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let mut tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| format!("handshake: {e}"))?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    tls.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(format!("no response: {text:?}"))?;
    let head = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string();
    Ok(Seen { status, head, leaf })
}

/// The DER of the (first) certificate in `pem`.
pub fn der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// After a rotation at `rotated`: polls `api.example.com` on `port` until it presents
/// `new` (any other certificate than `old` fails the test) and returns how long that
/// took; gives up after 10 s.
pub async fn wait_for_leaf(
    connector: &TlsConnector,
    port: u16,
    old: &[u8],
    new: &[u8],
    rotated: std::time::Instant,
) -> Duration {
    loop {
        let seen = get(connector, port, "api.example.com", "api.example.com", "/")
            .await
            .unwrap();
        if seen.leaf == new {
            return rotated.elapsed();
        }
        assert_eq!(seen.leaf, old, "neither the old nor the new certificate");
        assert!(
            rotated.elapsed() < Duration::from_secs(10),
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
