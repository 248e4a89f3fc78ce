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
    KeyPair, KeyUsagePurpose, SanType,
};

/// A CA made now; its key stays in memory.
pub struct LocalCa(CertifiedIssuer<'static, KeyPair>);

/// A leaf certificate and its key, PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl LocalCa {
    pub fn new(common_name: &str) -> Result<Self, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ok(LocalCa(CertifiedIssuer::self_signed(
            params,
            KeyPair::generate()?,
        )?))
    }

    pub fn ca_pem(&self) -> String {
        self.0.pem()
    }

    /// A leaf named `common_name`, valid for `hosts` (DNS names or IP addresses) as a
    /// server and for the xDS node ids `nodes` as a client.
    pub fn issue(
        &self,
        common_name: &str,
        hosts: &[&str],
        nodes: &[&str],
    ) -> Result<Issued, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
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
        let cert = params.signed_by(&key, &self.0)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
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
