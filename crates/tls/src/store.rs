//! The last good certificate per Host (and TLS material per Service), and what is
//! wrong with the current one.
use std::collections::BTreeMap;

use portcullis_api::{Certificate, CertificateState, ObjectKey, TrustBundle};

use crate::check::{EXPIRY_WARNING_DAYS, ParsedCa, ParsedPair, parse_ca, parse_pair};

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
    /// The material last checked per object and what it parsed to, so checking the
    /// same material again (every reconcile checks every object's, against the clock)
    /// only compares texts and dates: parsing a key pair was most of a reconcile's
    /// certificate work, and 5% of a one-Route edit at 10k Routes with 50 HTTPS Hosts.
    pairs: BTreeMap<ObjectKey, Parsed<(String, String), ParsedPair>>,
    cas: BTreeMap<ObjectKey, Parsed<String, ParsedCa>>,
}

/// Material as it was read and what parsing it gave.
struct Parsed<I, T> {
    input: I,
    result: Result<T, String>,
}

/// What `input` parses to, parsed only when it differs from what was last parsed
/// for `object`.
fn parsed<'a, I: PartialEq, T>(
    memo: &'a mut BTreeMap<ObjectKey, Parsed<I, T>>,
    object: &ObjectKey,
    input: I,
    parse: impl FnOnce(&I) -> Result<T, String>,
) -> &'a Parsed<I, T> {
    let stale = memo.get(object).is_none_or(|p| p.input != input);
    if stale {
        let result = parse(&input);
        memo.insert(object.clone(), Parsed { input, result });
    }
    &memo[object]
}

impl Store {
    /// [`crate::check`] or [`crate::check_client`] of `(chain, key)` for `object`.
    fn check_pair(
        &mut self,
        object: &ObjectKey,
        (chain, key): (String, String),
        hostname: Option<&str>,
        now: i64,
    ) -> Result<Certificate, String> {
        let p = parsed(&mut self.pairs, object, (chain, key), |(c, k)| {
            parse_pair(c, k)
        });
        let (chain, key) = &p.input;
        match &p.result {
            Ok(pair) => pair.at(chain, key, hostname, now),
            Err(e) => Err(e.clone()),
        }
    }

    /// [`crate::check_ca`] of `pem` for `object`.
    fn check_ca(
        &mut self,
        object: &ObjectKey,
        pem: String,
        now: i64,
    ) -> Result<TrustBundle, String> {
        let p = parsed(&mut self.cas, object, pem, |pem| parse_ca(pem));
        match &p.result {
            Ok(ca) => ca.at(&p.input, now),
            Err(e) => Err(e.clone()),
        }
    }
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
        let checked = source.and_then(|pair| self.check_pair(host, pair, Some(hostname), now));
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
        match source.ca.and_then(|pem| self.check_ca(service, pem, now)) {
            Ok(b) => {
                self.good_ca.insert(service.clone(), b);
            }
            Err(e) => problems.push(format!("caFile: {e}")),
        }
        let serving = match source.client {
            None => {
                self.good.remove(service);
                self.pairs.remove(service);
                None
            }
            Some(client) => {
                match client.and_then(|pair| self.check_pair(service, pair, None, now)) {
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
        self.pairs.retain(|k, _| keep(k));
        self.cas.retain(|k, _| keep(k));
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
    use crate::check::{check, check_ca};

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

    /// A self-signed pair for `names`, valid from `from` to `to` days after 2026-12-01.
    fn dated_pair(names: &[&str], (from, to): (i64, i64)) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        let day0 = rcgen::date_time_ymd(2026, 12, 1);
        params.not_before = day0 + time::Duration::days(from);
        params.not_after = day0 + time::Duration::days(to);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn checking_the_same_material_again_decides_as_a_fresh_check_at_every_time() {
        const DAY0: i64 = 1_796_083_200; // 2026-12-01
        let (cert, key) = dated_pair(&["api.example.com"], (1, 30));
        let (other_cert, other_key) = dated_pair(&["*.example.com"], (-5, 60));
        let times = [
            DAY0,
            DAY0 + 2 * 86_400,
            DAY0 + 40 * 86_400,
            DAY0 + 90 * 86_400,
        ];
        let materials = [
            (cert.clone(), key.clone()),
            // The same certificate with another key: a memo keyed on the certificate
            // alone would call this good.
            (cert.clone(), other_key.clone()),
            (other_cert.clone(), other_key.clone()),
            ("garbage".to_string(), key.clone()),
            (other_cert.clone(), "garbage".to_string()),
        ];
        let host = ObjectKey::new("Host", &Default::default());
        let svc = ObjectKey::service("t", "s");
        let mut store = Store::default();
        // Every material at every time, twice over, for two hostnames: the store
        // parses each material once per change and must still decide as `check` does.
        for round in 0..2 {
            for (chain, key) in &materials {
                for &now in &times {
                    for hostname in ["api.example.com", "www.example.com"] {
                        let fresh = check(chain, key, hostname, now);
                        let kept =
                            store.update(&host, hostname, Ok((chain.clone(), key.clone())), now);
                        assert_eq!(
                            kept.problem,
                            fresh.as_ref().err().cloned(),
                            "round {round} at {now}"
                        );
                        if let Ok(c) = fresh {
                            assert_eq!(kept.serving, Some(c));
                        }
                        let client = crate::check_client(chain, key, now);
                        let kept = store.update_service(
                            &svc,
                            ServiceSource {
                                ca: Ok(chain.clone()),
                                client: Some(Ok((chain.clone(), key.clone()))),
                            },
                            now,
                        );
                        let mut want = Vec::new();
                        if let Err(e) = check_ca(chain, now) {
                            want.push(format!("caFile: {e}"));
                        }
                        if let Err(e) = &client {
                            want.push(format!("clientCertificate: {e}"));
                        }
                        assert_eq!(kept.problem, (!want.is_empty()).then(|| want.join("; ")));
                        if let Ok(c) = client {
                            assert_eq!(kept.serving, Some(c));
                        }
                    }
                }
            }
        }
        // A bundle whose second certificate does not parse: the first one's expiry
        // still comes first once it has passed, as a fresh check orders them.
        let broken =
            format!("{cert}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        for &now in &times {
            let kept = store.update_service(
                &svc,
                ServiceSource {
                    ca: Ok(broken.clone()),
                    client: None,
                },
                now,
            );
            let fresh = check_ca(&broken, now).unwrap_err();
            assert_eq!(kept.problem, Some(format!("caFile: {fresh}")));
        }
        assert!(check_ca(&broken, times[3]).unwrap_err().contains("expired"));
    }
}
