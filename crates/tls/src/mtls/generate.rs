//! A local CA and the leaf certificates it signs, for `portcullis up` and the tests:
//! every leaf can serve (DNS names, IP addresses) and be a client (URI names of the
//! xDS nodes it may subscribe as).
use std::{
    io::Write,
    net::IpAddr,
    path::{Path, PathBuf},
};

use portcullis_contract::mtls::NODE_URI_PREFIX;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::FromDer;

/// A CA: made now (its key in memory), or restored from the PEM parts a previous
/// [`LocalCa::new`] produced (the controller keeps them in a Secret).
pub struct LocalCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

/// A leaf certificate and its key, PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

fn ca_params(common_name: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

impl LocalCa {
    pub fn new(common_name: &str) -> Result<Self, rcgen::Error> {
        Self::with_validity(common_name, None)
    }

    /// A CA valid from an hour ago for `lifetime` (rcgen's far-future default when
    /// `None`).
    pub fn with_validity(
        common_name: &str,
        lifetime: Option<std::time::Duration>,
    ) -> Result<Self, rcgen::Error> {
        let mut params = ca_params(common_name)?;
        if let Some(lifetime) = lifetime {
            set_validity(&mut params, lifetime);
        }
        let certified = CertifiedIssuer::self_signed(params.clone(), KeyPair::generate()?)?;
        let cert_pem = certified.pem();
        let key = KeyPair::from_pem(&certified.key().serialize_pem())?;
        Ok(LocalCa {
            issuer: Issuer::new(params, key),
            cert_pem,
        })
    }

    /// The CA whose certificate is `cert_pem` and key `key_pem`. The subject is read
    /// back from the certificate, so what it signs names the right issuer.
    pub fn restore(cert_pem: &str, key_pem: &str) -> Result<Self, String> {
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| format!("the CA certificate is not PEM ({e})"))?;
        let der: rustls_pki_types::CertificateDer<'_> = der;
        let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(&der)
            .map_err(|e| format!("the CA certificate does not parse ({e})"))?;
        let common_name = parsed
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .ok_or("the CA certificate has no common name")?
            .to_string();
        let key = KeyPair::from_pem(key_pem).map_err(|_| "the CA key is not a PEM key")?;
        if key.subject_public_key_info() != parsed.public_key().raw {
            return Err("the CA key does not match the CA certificate".into());
        }
        let params = ca_params(&common_name).map_err(|e| e.to_string())?;
        Ok(LocalCa {
            issuer: Issuer::new(params, key),
            cert_pem: cert_pem.to_string(),
        })
    }

    pub fn ca_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// The CA's private key, PEM: only for storing it where [`LocalCa::restore`] reads it.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A leaf named `common_name`, valid for `hosts` (DNS names or IP addresses) as a
    /// server and for the xDS node ids `nodes` as a client.
    pub fn issue(
        &self,
        common_name: &str,
        hosts: &[&str],
        nodes: &[&str],
    ) -> Result<Issued, rcgen::Error> {
        self.issue_for(common_name, hosts, nodes, None)
    }

    /// As [`LocalCa::issue`], valid from an hour ago (clock skew) for `lifetime`.
    pub fn issue_for(
        &self,
        common_name: &str,
        hosts: &[&str],
        nodes: &[&str],
        lifetime: Option<std::time::Duration>,
    ) -> Result<Issued, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        if let Some(lifetime) = lifetime {
            set_validity(&mut params, lifetime);
        }
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        for host in hosts {
            params.subject_alt_names.push(match host.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*host).try_into()?),
            });
        }
        for node in nodes {
            params
                .subject_alt_names
                .push(SanType::URI(format!("{NODE_URI_PREFIX}{node}").try_into()?));
        }
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn set_validity(params: &mut CertificateParams, lifetime: std::time::Duration) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + lifetime;
}

/// Why the leaf `cert_pem` should be issued again at `now` (unix seconds): it does not
/// parse, it was not signed by the CA `ca_pem` (the CA was replaced), or less than a
/// third of its lifetime is left. `None` when it is good.
pub fn renewal_reason(cert_pem: &str, ca_pem: &str, now: i64) -> Option<String> {
    let parse = |pem: &str| -> Option<(i64, i64, Vec<u8>, Vec<u8>)> {
        let der: rustls_pki_types::CertificateDer<'_> =
            rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes()).ok()?;
        let (_, c) = x509_parser::certificate::X509Certificate::from_der(&der).ok()?;
        Some((
            c.validity().not_before.timestamp(),
            c.validity().not_after.timestamp(),
            c.issuer().as_raw().to_vec(),
            c.subject().as_raw().to_vec(),
        ))
    };
    let Some((from, until, issuer, _)) = parse(cert_pem) else {
        return Some("the certificate does not parse".into());
    };
    let Some((_, _, _, ca_subject)) = parse(ca_pem) else {
        return Some("the CA certificate stored with it does not parse".into());
    };
    if issuer != ca_subject || !signed_by(cert_pem, ca_pem) {
        return Some("it was not signed by the current CA".into());
    }
    let left = until - now;
    if left < (until - from) / 3 {
        return Some(format!("{} s of its lifetime left", left.max(0)));
    }
    None
}

/// Whether `cert_pem`'s signature verifies with `ca_pem`'s key.
fn signed_by(cert_pem: &str, ca_pem: &str) -> bool {
    let der = |pem: &str| -> Option<rustls_pki_types::CertificateDer<'static>> {
        rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes()).ok()
    };
    let (Some(cert), Some(ca)) = (der(cert_pem), der(ca_pem)) else {
        return false;
    };
    let (Ok((_, cert)), Ok((_, ca))) = (
        x509_parser::certificate::X509Certificate::from_der(&cert),
        x509_parser::certificate::X509Certificate::from_der(&ca),
    ) else {
        return false;
    };
    cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// Paths of one component's files in a [`write_dir`] directory.
#[derive(Clone, Debug)]
pub struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// Writes `ca.pem` and `<name>.pem` + `<name>-key.pem` per leaf into `dir`, created
/// owner-only (0700; keys 0600).
pub fn write_dir(
    dir: &Path,
    ca: &LocalCa,
    leaves: &[(&str, &Issued)],
) -> std::io::Result<Vec<Files>> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // An existing directory keeps its mode otherwise.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let write = |path: &Path, text: &str, mode: u32| -> std::io::Result<()> {
        let _ = std::fs::remove_file(path);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)?
            .write_all(text.as_bytes())
    };
    let ca_path = dir.join("ca.pem");
    write(&ca_path, &ca.ca_pem(), 0o644)?;
    let mut out = Vec::new();
    for (name, issued) in leaves {
        let files = Files {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}-key.pem")),
            ca: ca_path.clone(),
        };
        write(&files.cert, &issued.cert_pem, 0o644)?;
        write(&files.key, &issued.key_pem, 0o600)?;
        out.push(files);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn now() -> i64 {
        OffsetDateTime::now_utc().unix_timestamp()
    }

    #[test]
    fn a_restored_ca_signs_leaves_the_original_certificate_verifies() {
        let ca = LocalCa::with_validity(
            "test CA",
            Some(std::time::Duration::from_secs(3650 * 86_400)),
        )
        .unwrap();
        let restored = LocalCa::restore(&ca.ca_pem(), &ca.key_pem()).unwrap();
        let leaf = restored
            .issue_for(
                "authz",
                &["authz.ns.svc"],
                &[],
                Some(std::time::Duration::from_secs(90 * 86_400)),
            )
            .unwrap();
        assert_eq!(renewal_reason(&leaf.cert_pem, &ca.ca_pem(), now()), None);
    }

    #[test]
    fn restore_refuses_a_key_of_another_ca_without_quoting_it() {
        let (a, b) = (LocalCa::new("a").unwrap(), LocalCa::new("b").unwrap());
        let err = LocalCa::restore(&a.ca_pem(), &b.key_pem()).err().unwrap();
        assert!(err.contains("does not match"), "{err}");
        let err = LocalCa::restore(&a.ca_pem(), "not a key").err().unwrap();
        assert!(err.contains("not a PEM key"), "{err}");
        assert!(!err.contains(&b.key_pem()[40..80]));
    }

    #[test]
    fn renewal_is_due_after_two_thirds_of_the_lifetime_or_under_another_ca() {
        let ca = LocalCa::new("current").unwrap();
        let leaf = ca
            .issue_for(
                "x",
                &["x"],
                &[],
                Some(std::time::Duration::from_secs(90 * 86_400)),
            )
            .unwrap();
        let t = now();
        assert_eq!(
            renewal_reason(&leaf.cert_pem, &ca.ca_pem(), t + 55 * DAY),
            None
        );
        let late = renewal_reason(&leaf.cert_pem, &ca.ca_pem(), t + 62 * DAY).unwrap();
        assert!(late.contains("lifetime left"), "{late}");
        let expired = renewal_reason(&leaf.cert_pem, &ca.ca_pem(), t + 100 * DAY).unwrap();
        assert!(expired.starts_with("0 s"), "{expired}");

        // Same subject, different key: the signature, not the name, decides.
        let impostor = LocalCa::new("current").unwrap();
        let other = renewal_reason(&leaf.cert_pem, &impostor.ca_pem(), t).unwrap();
        assert!(other.contains("not signed by the current CA"), "{other}");
        let garbage = renewal_reason(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            &ca.ca_pem(),
            t,
        );
        assert_eq!(garbage.as_deref(), Some("the certificate does not parse"));
    }
}
