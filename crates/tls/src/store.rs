//! The last good certificate per Host (and TLS material per Service), and what is
//! wrong with the current one.
use std::collections::BTreeMap;

use portcullis_api::{Certificate, CertificateState, ObjectKey, TrustBundle};

use crate::check::{EXPIRY_WARNING_DAYS, check, check_ca, check_client};

/// What a Service's files hold now (each `Err` when it could not be read).
pub struct ServiceSource {
    pub ca: Result<String, String>,
    /// `(chain, key)`, when the Service sets a client certificate.
    pub client: Option<Result<(String, String), String>>,
}

#[derive(Default)]
pub struct Store {
    good: BTreeMap<ObjectKey, Certificate>,
    good_ca: BTreeMap<ObjectKey, TrustBundle>,
}

impl Store {
    /// Checks what the Host's source holds now (`Err` when it could not be read) and
    /// returns what to serve: the new certificate when it is good, else the last good
    /// one, with the problem. `hostname` is the Host's; `now` unix seconds.
    pub fn update(
        &mut self,
        host: &ObjectKey,
        hostname: &str,
        source: Result<(String, String), String>,
        now: i64,
    ) -> CertificateState {
        let checked = source.and_then(|(chain, key)| check(&chain, &key, hostname, now));
        let problem = match checked {
            Ok(cert) => {
                self.good.insert(host.clone(), cert);
                None
            }
            Err(e) => Some(e),
        };
        // The last good one must still be valid for this hostname, and not expired.
        let serving = self
            .good
            .get(host)
            .filter(|c| {
                c.not_after > now
                    && c.names
                        .iter()
                        .any(|n| crate::check::name_covers(n, hostname))
            })
            .cloned();
        CertificateState {
            expiring: expiring(serving.as_ref(), now),
            serving,
            problem,
            trusted_ca: None,
        }
    }

    /// As [`Store::update`] for a Service's upstream TLS: its trusted CAs and optional
    /// client certificate, each falling back to its last good version on its own.
    pub fn update_service(
        &mut self,
        service: &ObjectKey,
        source: ServiceSource,
        now: i64,
    ) -> CertificateState {
        let mut problems = Vec::new();
        match source.ca.and_then(|pem| check_ca(&pem, now)) {
            Ok(b) => {
                self.good_ca.insert(service.clone(), b);
            }
            Err(e) => problems.push(format!("caFile: {e}")),
        }
        let serving = match source.client {
            None => {
                self.good.remove(service);
                None
            }
            Some(client) => {
                match client.and_then(|(chain, key)| check_client(&chain, &key, now)) {
                    Ok(c) => {
                        self.good.insert(service.clone(), c);
                    }
                    Err(e) => problems.push(format!("clientCertificate: {e}")),
                }
                self.good
                    .get(service)
                    .filter(|c| c.not_after > now)
                    .cloned()
            }
        };
        CertificateState {
            expiring: expiring(serving.as_ref(), now),
            serving,
            trusted_ca: self.good_ca.get(service).cloned(),
            problem: (!problems.is_empty()).then(|| problems.join("; ")),
        }
    }

    /// Forgets Hosts and Services that no longer exist.
    pub fn retain(&mut self, keep: impl Fn(&ObjectKey) -> bool) {
        self.good.retain(|k, _| keep(k));
        self.good_ca.retain(|k, _| keep(k));
    }
}

/// A warning when `cert` expires within [`EXPIRY_WARNING_DAYS`].
fn expiring(cert: Option<&Certificate>, now: i64) -> Option<String> {
    let c = cert?;
    let days = (c.not_after - now) / 86_400;
    (days < EXPIRY_WARNING_DAYS).then(|| {
        format!(
            "the certificate (sha256 {}) expires in {days} day(s); renew it",
            &c.fingerprint[..16]
        )
    })
}
