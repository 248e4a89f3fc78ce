//! File mode's certificates: each Host's `tls.certificateFile`/`keyFile` and each
//! Service's `tls.caFile`/`clientCertificate`, read and checked on every reload, the
//! last good one kept (portcullis-tls). The files are part
//! of what the directory watcher fingerprints, so replacing one (a renewal, a
//! `mv` of a new pair) reaches Envoy over SDS without a restart.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

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
        let mut files = Reads::default();
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
            let source = files.pair(cert, key);
            let hkey = ObjectKey::new("Host", &host.metadata);
            let state = self.store.update(&hkey, &host.spec.hostname, source, now);
            if let Some(p) = &state.problem {
                tracing::warn!(host = %hkey, problem = p, "certificate refused");
            }
            out.insert(hkey, state);
        }
        self.store.retain(|k| out.contains_key(k));
        self.files = files.0.into_keys().collect();
        out
    }

    /// A Service's trusted CAs and client certificate, when it sets `tls`.
    fn load_service(
        &mut self,
        base: &Path,
        svc: &portcullis_api::Service,
        now: i64,
        out: &mut Certificates,
        files: &mut Reads,
    ) {
        let Some(tls) = &svc.spec.tls else { return };
        let Some(ca) = &tls.ca_file else { return };
        let ca = files.read(base.join(ca));
        let client = tls.client_certificate.as_ref().and_then(|c| {
            let (cert, key) = (
                base.join(c.certificate_file.as_ref()?),
                base.join(c.key_file.as_ref()?),
            );
            Some(files.pair(cert, key))
        });
        let source = portcullis_tls::ServiceSource { ca, client };
        let key = ObjectKey::new("Service", &svc.metadata);
        let state = self.store.update_service(&key, source, now);
        if let Some(p) = &state.problem {
            tracing::warn!(service = %key, problem = p, "upstream TLS material refused");
        }
        out.insert(key, state);
    }
}

/// The files one load read, each read once however many objects name it: a wildcard
/// certificate shared by many Hosts is read once per reload, not once per Host (at
/// 50 Hosts that was ~4% of a reload), and every Host naming it sees the same
/// version even when the file is replaced halfway through the load. The keys are what
/// the watcher fingerprints.
#[derive(Default)]
struct Reads(BTreeMap<PathBuf, Result<String, String>>);

impl Reads {
    fn read(&mut self, path: PathBuf) -> Result<String, String> {
        if let Some(text) = self.0.get(&path) {
            return text.clone();
        }
        let text = read(&path);
        self.0.insert(path, text.clone());
        text
    }

    /// A certificate and its key (the certificate's error first when both fail).
    fn pair(&mut self, cert: PathBuf, key: PathBuf) -> Result<(String, String), String> {
        let (cert, key) = (self.read(cert), self.read(key));
        cert.and_then(|c| key.map(|k| (c, k)))
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

#[cfg(test)]
#[path = "certificates_tests.rs"]
mod tests;
