//! One certificate and key, checked.
use std::sync::Arc;

use portcullis_api::{Certificate, TrustBundle, certificate::PrivateKey};
use rustls::{crypto::ring::sign::any_supported_type, sign::CertifiedKey};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use x509_parser::{extensions::GeneralName, prelude::FromDer};

/// A certificate expiring within this many days raises `CertificateExpiring`.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// Checks `chain_pem` + `key_pem` for `hostname` at `now` (unix seconds). The error
/// says what is wrong and never quotes the key.
pub fn check(
    chain_pem: &str,
    key_pem: &str,
    hostname: &str,
    now: i64,
) -> Result<Certificate, String> {
    check_pair(chain_pem, key_pem, Some(hostname), now)
}

/// Checks a client certificate: as [`check`], without a hostname to cover.
pub fn check_client(chain_pem: &str, key_pem: &str, now: i64) -> Result<Certificate, String> {
    check_pair(chain_pem, key_pem, None, now)
}

/// Most certificates a trusted-CA bundle may hold.
pub const MAX_CA_CERTIFICATES: usize = 256;

/// Checks a bundle of trusted CA certificates: PEM, at least one, each parses.
/// Expired CAs are refused: Envoy would reject every backend they signed anyway.
pub fn check_ca(pem: &str, now: i64) -> Result<TrustBundle, String> {
    parse_ca(pem)?.at(pem, now)
}

/// What a CA bundle holds, whatever the time: [`check_ca`] is this, then
/// [`ParsedCa::at`].
pub(crate) fn parse_ca(pem: &str) -> Result<ParsedCa, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the CA bundle is not PEM ({e})"))?;
    if certs.is_empty() {
        return Err(
            "no certificate in the CA bundle (expected -----BEGIN CERTIFICATE-----)".into(),
        );
    }
    if certs.len() > MAX_CA_CERTIFICATES {
        return Err(format!(
            "{} certificates in the CA bundle, over the {MAX_CA_CERTIFICATES} allowed; trust only the CAs that sign this backend",
            certs.len()
        ));
    }
    let mut expiries = Vec::with_capacity(certs.len());
    for (i, der) in certs.iter().enumerate() {
        // Certificates are checked in order: one that does not parse is the answer
        // unless one before it has expired by then, so the list stops at it.
        match x509_parser::certificate::X509Certificate::from_der(der) {
            Ok((_, parsed)) => {
                let not_after = parsed.validity().not_after;
                expiries.push(Ok((
                    not_after.timestamp(),
                    format!(
                        "CA certificate {} ({}) expired at {not_after}",
                        i + 1,
                        parsed.subject()
                    ),
                )));
            }
            Err(e) => {
                expiries.push(Err(format!(
                    "CA certificate {} does not parse ({e})",
                    i + 1
                )));
                break;
            }
        }
    }
    Ok(ParsedCa {
        count: certs.len(),
        fingerprint: hex(ring::digest::digest(&ring::digest::SHA256, &certs[0]).as_ref()),
        expiries,
    })
}

/// A CA bundle parsed: what [`check_ca`] decides at any time.
pub(crate) struct ParsedCa {
    count: usize,
    fingerprint: String,
    /// Each certificate's expiry (unix seconds) and the error once it has passed, in
    /// bundle order, ending at the first that does not parse.
    expiries: Vec<Result<(i64, String), String>>,
}

impl ParsedCa {
    /// The bundle at `now`; `pem` is the text it was parsed from.
    pub(crate) fn at(&self, pem: &str, now: i64) -> Result<TrustBundle, String> {
        for expiry in &self.expiries {
            match expiry {
                Ok((not_after, _)) if now <= *not_after => {}
                Ok((_, expired)) => return Err(expired.clone()),
                Err(e) => return Err(e.clone()),
            }
        }
        Ok(TrustBundle {
            pem: pem.to_string(),
            count: self.count,
            fingerprint: self.fingerprint.clone(),
        })
    }
}

fn check_pair(
    chain_pem: &str,
    key_pem: &str,
    hostname: Option<&str>,
    now: i64,
) -> Result<Certificate, String> {
    parse_pair(chain_pem, key_pem)?.at(chain_pem, key_pem, hostname, now)
}

/// What a certificate chain and key hold, whatever the time or the hostname:
/// [`check`] is this, then [`ParsedPair::at`]. Deriving the key's public half is most
/// of it, which is why a [`crate::Store`] keeps the result while the material stays.
pub(crate) fn parse_pair(chain_pem: &str, key_pem: &str) -> Result<ParsedPair, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the certificate is not PEM ({e})"))?;
    let Some(leaf) = chain.first() else {
        return Err("no certificate in the PEM (expected -----BEGIN CERTIFICATE-----)".into());
    };
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| {
        "the private key is not a PEM private key (PKCS#8, PKCS#1 or SEC1)".to_string()
    })?;
    let signing = any_supported_type(&key).map_err(|_| {
        "the private key is of an unsupported type (use RSA, ECDSA P-256/P-384 or Ed25519)"
            .to_string()
    })?;
    if let Err(e) = CertifiedKey::new(chain.clone(), Arc::clone(&signing)).keys_match() {
        return Err(match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                "the private key does not match the certificate".into()
            }
            other => format!("the certificate cannot be used with the key ({other})"),
        });
    }
    let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(leaf)
        .map_err(|e| format!("the certificate does not parse ({e})"))?;
    let validity = parsed.validity();
    Ok(ParsedPair {
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        too_early: format!(
            "the certificate is not valid before {}",
            validity.not_before
        ),
        expired: format!("the certificate expired at {}", validity.not_after),
        fingerprint: hex(ring::digest::digest(&ring::digest::SHA256, leaf).as_ref()),
        names: dns_names(&parsed),
    })
}

/// A certificate and key that parse and match: what [`check`] decides at any time
/// and for any hostname.
pub(crate) struct ParsedPair {
    not_before: i64,
    not_after: i64,
    /// The errors before and after the validity period.
    too_early: String,
    expired: String,
    fingerprint: String,
    names: Vec<String>,
}

impl ParsedPair {
    /// The certificate at `now` for `hostname` (none for a client certificate);
    /// `chain_pem` and `key_pem` are the texts it was parsed from.
    pub(crate) fn at(
        &self,
        chain_pem: &str,
        key_pem: &str,
        hostname: Option<&str>,
        now: i64,
    ) -> Result<Certificate, String> {
        if now < self.not_before {
            return Err(self.too_early.clone());
        }
        if now > self.not_after {
            return Err(self.expired.clone());
        }
        let names = &self.names;
        if let Some(hostname) = hostname
            && !names.iter().any(|n| name_covers(n, hostname))
        {
            return Err(format!(
                "the certificate does not cover {hostname} (it names {}); issue one with {hostname} in its subject alternative names",
                if names.is_empty() {
                    "no DNS names".to_string()
                } else {
                    names.join(", ")
                }
            ));
        }
        Ok(Certificate {
            chain_pem: chain_pem.to_string(),
            key: PrivateKey(key_pem.to_string()),
            not_after: self.not_after,
            fingerprint: self.fingerprint.clone(),
            names: names.clone(),
        })
    }
}

fn dns_names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    let mut names: Vec<String> = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.dedup();
    names
}

/// Does a certificate name cover a Host's hostname? A TLS wildcard covers one label:
/// `*.example.com` covers `a.example.com` and the wildcard Host `*.example.com`, never
/// `a.b.example.com` or `example.com`.
pub fn name_covers(name: &str, hostname: &str) -> bool {
    if name == hostname {
        return true;
    }
    match (name.strip_prefix("*."), hostname.split_once('.')) {
        (Some(suffix), Some((label, rest))) => rest == suffix && label != "*" && !label.is_empty(),
        _ => false,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(names: &[&str], days: (i64, i64)) -> (String, String) {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let now = rcgen::date_time_ymd(2026, 12, 1);
        params.not_before = now + time::Duration::days(days.0);
        params.not_after = now + time::Duration::days(days.1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    const NOW: i64 = 1_796_083_200 + 86_400; // 2026-12-02

    #[test]
    fn a_good_certificate_passes_and_names_its_fingerprint() {
        let (c, k) = pair(&["api.example.com"], (-1, 90));
        let cert = check(&c, &k, "api.example.com", NOW).unwrap();
        assert_eq!(cert.names, ["api.example.com"]);
        assert_eq!(cert.fingerprint.len(), 64);
        assert!(
            !format!("{cert:?}").contains("PRIVATE KEY"),
            "Debug never shows the key"
        );
    }

    #[test]
    fn each_bad_certificate_is_refused_with_its_reason() {
        let (c, k) = pair(&["api.example.com"], (-1, 90));
        let (_, other_key) = pair(&["api.example.com"], (-1, 90));
        let cases = [
            (
                check("garbage", &k, "api.example.com", NOW),
                "no certificate",
            ),
            (
                check(&c, "garbage", "api.example.com", NOW),
                "not a PEM private key",
            ),
            (
                check(&c, &other_key, "api.example.com", NOW),
                "does not match",
            ),
            (
                check(&c, &k, "other.example.com", NOW),
                "does not cover other.example.com",
            ),
            (
                check(&c, &k, "api.example.com", NOW + 100 * 86_400),
                "expired",
            ),
            (
                check(&c, &k, "api.example.com", NOW - 10 * 86_400),
                "not valid before",
            ),
        ];
        for (result, want) in cases {
            let e = result.unwrap_err();
            assert!(e.contains(want), "{want:?} not in {e:?}");
            assert!(!e.contains("PRIVATE"), "{e}");
        }
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert!(name_covers("*.example.com", "a.example.com"));
        assert!(name_covers("*.example.com", "*.example.com"));
        assert!(!name_covers("*.example.com", "a.b.example.com"));
        assert!(!name_covers("*.example.com", "example.com"));
        assert!(!name_covers("a.example.com", "*.example.com"));
    }
}
