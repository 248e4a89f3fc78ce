//! The last good certificate per Host, and what is wrong with the current one.
use std::collections::BTreeMap;

use portcullis_api::{Certificate, CertificateState, ObjectKey};

use crate::check::{EXPIRY_WARNING_DAYS, check};

#[derive(Default)]
pub struct Store {
    good: BTreeMap<ObjectKey, Certificate>,
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
        let expiring = serving.as_ref().and_then(|c| {
            let days = (c.not_after - now) / 86_400;
            (days < EXPIRY_WARNING_DAYS).then(|| {
                format!(
                    "the certificate (sha256 {}) expires in {days} day(s); renew it",
                    &c.fingerprint[..16]
                )
            })
        });
        CertificateState {
            serving,
            problem,
            expiring,
        }
    }

    /// Forgets Hosts that no longer exist.
    pub fn retain(&mut self, keep: impl Fn(&ObjectKey) -> bool) {
        self.good.retain(|k, _| keep(k));
    }
}
