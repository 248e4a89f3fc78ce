//! The webhook's certificate: a CA made at start (kept in memory only) and a serving
//! certificate it signs for the webhook Service's DNS names. The CA's PEM is the
//! caBundle the ValidatingWebhookConfiguration must carry. With cert-manager the
//! chart mounts a certificate instead and none of this runs.
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, pem::PemObject},
};

/// A serving certificate and the CA bundle that verifies it.
pub struct Issued {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Makes a fresh CA and a serving certificate for `dns_names` (e.g.
/// `portcullis-webhook.portcullis-system.svc`).
pub fn self_signed(dns_names: &[String]) -> Result<Issued, rcgen::Error> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "portcullis webhook CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(dns_names.to_vec())?;
    params.distinguished_name.push(
        DnType::CommonName,
        dns_names
            .first()
            .map(String::as_str)
            .unwrap_or("portcullis"),
    );
    let cert = params.signed_by(&key, &ca)?;
    Ok(Issued {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// rustls server configuration from PEM text (ours, or cert-manager's files).
pub fn server_config(cert_pem: &str, key_pem: &str) -> anyhow::Result<Arc<ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .or_else(|_| PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes()).map(Into::into))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_a_chain_rustls_accepts() {
        let issued = self_signed(&["portcullis-webhook.system.svc".into()]).unwrap();
        assert!(issued.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_ne!(issued.ca_pem, issued.cert_pem);
        server_config(&issued.cert_pem, &issued.key_pem).unwrap();
    }
}
