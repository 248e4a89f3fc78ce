//! File mode's certificates: each Host's `tls.certificateFile`/`keyFile` and each
//! Service's `tls.caFile`/`clientCertificate`, read and checked on every reload, the
//! last good one kept (portcullis-tls). The files are part
//! of what the directory watcher fingerprints, so replacing one (a renewal, a
//! `mv` of a new pair) reaches Envoy over SDS without a restart.
use std::path::{Path, PathBuf};

use portcullis_api::{Certificates, Document, ObjectKey};

/// Largest certificate or key file read.
const MAX_PEM_BYTES: u64 = 1 << 20;

#[derive(Default)]
pub struct FileCertificates {
    store: portcullis_tls::Store,
    /// Every file the current Hosts name, for the watcher.
    pub files: Vec<PathBuf>,
}

impl FileCertificates {
    /// Loads and checks the certificate of every Host in `docs`; `base` resolves
    /// relative paths.
    pub fn load<'a>(
        &mut self,
        base: &Path,
        docs: impl IntoIterator<Item = &'a Document>,
        now: i64,
    ) -> Certificates {
        let mut out = Certificates::new();
        let mut files = Vec::new();
        for doc in docs {
            if let Document::Service(svc) = doc {
                self.load_service(base, svc, now, &mut out, &mut files);
                continue;
            }
            let Document::Host(host) = doc else { continue };
            let Some(tls) = &host.spec.tls else { continue };
            let (Some(cert), Some(key)) = (&tls.certificate_file, &tls.key_file) else {
                continue;
            };
            let (cert, key) = (base.join(cert), base.join(key));
            let source = read(&cert).and_then(|c| read(&key).map(|k| (c, k)));
            let hkey = ObjectKey::new("Host", &host.metadata);
            let state = self.store.update(&hkey, &host.spec.hostname, source, now);
            if let Some(p) = &state.problem {
                tracing::warn!(host = %hkey, problem = p, "certificate refused");
            }
            out.insert(hkey, state);
            files.extend([cert, key]);
        }
        self.store.retain(|k| out.contains_key(k));
        self.files = files;
        out
    }

    /// A Service's trusted CAs and client certificate, when it sets `tls`.
    fn load_service(
        &mut self,
        base: &Path,
        svc: &portcullis_api::Service,
        now: i64,
        out: &mut Certificates,
        files: &mut Vec<PathBuf>,
    ) {
        let Some(tls) = &svc.spec.tls else { return };
        let Some(ca) = &tls.ca_file else { return };
        let ca = base.join(ca);
        files.push(ca.clone());
        let client = tls.client_certificate.as_ref().and_then(|c| {
            let (cert, key) = (
                base.join(c.certificate_file.as_ref()?),
                base.join(c.key_file.as_ref()?),
            );
            files.extend([cert.clone(), key.clone()]);
            Some(read(&cert).and_then(|c| read(&key).map(|k| (c, k))))
        });
        let source = portcullis_tls::ServiceSource {
            ca: read(&ca),
            client,
        };
        let key = ObjectKey::new("Service", &svc.metadata);
        let state = self.store.update_service(&key, source, now);
        if let Some(p) = &state.problem {
            tracing::warn!(service = %key, problem = p, "upstream TLS material refused");
        }
        out.insert(key, state);
    }
}

fn read(path: &Path) -> Result<String, String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    if size > MAX_PEM_BYTES {
        return Err(format!(
            "{} is {size} bytes; a PEM file is far smaller",
            path.display()
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}
