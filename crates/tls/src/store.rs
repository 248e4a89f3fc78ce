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

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_and_client() -> (String, String, String) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["gateway".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (ca.pem(), leaf.pem(), key.serialize_pem())
    }

    fn now() -> i64 {
        // rcgen's default validity starts in 1975 and ends in 4096.
        2_000_000_000
    }

    #[test]
    fn a_service_keeps_its_last_good_ca_and_client_certificate() {
        let (ca, cert, key) = ca_and_client();
        let svc = ObjectKey::service("t", "s");
        let mut store = Store::default();
        let good = store.update_service(
            &svc,
            ServiceSource {
                ca: Ok(ca.clone()),
                client: Some(Ok((cert.clone(), key.clone()))),
            },
            now(),
        );
        assert!(good.problem.is_none(), "{:?}", good.problem);
        assert_eq!(good.trusted_ca.as_ref().unwrap().count, 1);
        assert!(good.serving.is_some());
        // A half-written CA and a wrong key: both refused, the good ones kept.
        let (_, _, other_key) = ca_and_client();
        let bad = store.update_service(
            &svc,
            ServiceSource {
                ca: Ok("-----BEGIN CERTIFICATE-----\nAAAA".into()),
                client: Some(Ok((cert, other_key))),
            },
            now(),
        );
        let problem = bad.problem.unwrap();
        assert!(problem.contains("caFile:"), "{problem}");
        assert!(
            problem.contains("clientCertificate: the private key does not match"),
            "{problem}"
        );
        assert!(!problem.contains("PRIVATE"), "{problem}");
        assert_eq!(bad.trusted_ca, good.trusted_ca);
        assert_eq!(bad.serving, good.serving);
    }

    #[test]
    fn a_ca_bundle_must_hold_parsable_unexpired_certificates_in_bounds() {
        let (ca, _, key) = ca_and_client();
        assert!(check_ca("", now()).unwrap_err().contains("no certificate"));
        assert!(
            check_ca(&key, now())
                .unwrap_err()
                .contains("no certificate")
        );
        assert!(
            check_ca(&ca, 200_000_000_000)
                .unwrap_err()
                .contains("expired")
        );
        let huge = ca.repeat(crate::MAX_CA_CERTIFICATES + 1);
        assert!(check_ca(&huge, now()).unwrap_err().contains("allowed"));
        let two = ca.repeat(2);
        assert_eq!(check_ca(&two, now()).unwrap().count, 2);
    }
}
