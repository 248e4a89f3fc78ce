//! Certificates as validation sees them: already loaded and checked by the control
//! plane (crates/tls parses PEM; this crate stays free of crypto), keyed by the Host
//! that names them, or by the Service whose upstream TLS uses them. The private key is carried for translation into an SDS Secret and
//! never shown: `Debug` and `Serialize` of anything holding it leave it out.
use std::{collections::BTreeMap, fmt};

use crate::ObjectKey;

/// A private key in PEM. Cannot be printed.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PrivateKey(pub String);

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

/// A checked certificate: chain and key match, it covers its Host's hostname, and it
/// is within its validity period (as of the control plane's clock when it was loaded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    /// The PEM chain, leaf first.
    pub chain_pem: String,
    pub key: PrivateKey,
    /// Unix seconds.
    pub not_after: i64,
    /// SHA-256 of the leaf (DER), hex: names the certificate in status and logs.
    pub fingerprint: String,
    /// DNS names the leaf covers.
    pub names: Vec<String>,
}

/// A checked bundle of trusted CA certificates (PEM), for verifying a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustBundle {
    pub pem: String,
    /// Certificates in the bundle.
    pub count: usize,
    /// SHA-256 of the first certificate (DER), hex: names the bundle in status.
    pub fingerprint: String,
}

/// What the control plane knows about one Host's certificate, or one Service's
/// upstream TLS material.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificateState {
    /// The certificate to serve: the current one, or the last good one when the
    /// current one is bad. For a Service: the client certificate it presents.
    pub serving: Option<Certificate>,
    /// For a Service: the CAs trusted to sign its backends' certificates (the current
    /// bundle, or the last good one).
    pub trusted_ca: Option<TrustBundle>,
    /// Why the current certificate is not the one served (unparsable, key mismatch,
    /// expired, not covering the hostname, source missing).
    pub problem: Option<String>,
    /// Set when the served certificate expires within 14 days.
    pub expiring: Option<String>,
}

/// Certificate states by Host and by Service (keys differ by kind).
pub type Certificates = BTreeMap<ObjectKey, CertificateState>;
