//! The client side: a Portcullis component calling another over mTLS (the rate-limit
//! service's ADS stream to the control plane; tests).
use std::{path::Path, sync::Arc};

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tonic::transport::{Channel, Endpoint, Uri};

/// A client certificate and the CA that signed the servers' certificates.
#[derive(Clone, Debug)]
pub struct ClientTls(Arc<ClientConfig>);

impl ClientTls {
    /// Loads the files; `flags` names them in errors (cert, key, CA).
    pub fn load(cert: &Path, key: &Path, ca: &Path, flags: [&str; 3]) -> Result<Self, String> {
        let chain = super::read_certs(cert, flags[0])?;
        let key_der = super::read_key(key, flags[1])?;
        let roots = super::read_roots(ca, flags[2])?;
        let mut config = ClientConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key_der)
            .map_err(|e| format!("{} with {}: {e}", flags[0], flags[1]))?;
        config.alpn_protocols = vec![super::ALPN_H2.to_vec()];
        Ok(ClientTls(Arc::new(config)))
    }

    /// The rustls configuration (for clients that are not tonic channels).
    pub fn rustls(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.0)
    }

    /// Trusts `ca` and presents no certificate (what an attacker without one does).
    pub fn without_client_cert(ca: &Path) -> Result<Self, String> {
        let roots = super::read_roots(ca, "CA")?;
        let mut config = ClientConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS versions: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![super::ALPN_H2.to_vec()];
        Ok(ClientTls(Arc::new(config)))
    }
}

/// Connects `endpoint` (an `https://host:port` URI) over TLS; the server's certificate
/// must name `host` (DNS name or IP address).
pub async fn channel(
    endpoint: Endpoint,
    tls: &ClientTls,
) -> Result<Channel, tonic::transport::Error> {
    let config = Arc::clone(&tls.0);
    let connector = tower::service_fn(move |uri: Uri| {
        let config = Arc::clone(&config);
        async move {
            let host = uri
                .host()
                .ok_or_else(|| std::io::Error::other("the xDS URI has no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(host)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    endpoint.connect_with_connector(connector).await
}
