//! `portcullis_certificate_expiry_seconds{host, hostname}` (one series per served Host
//! certificate) and `portcullis_upstream_certificate_expiry_seconds{service}` (one per
//! Service client certificate): seconds until the certificate's notAfter, computed at
//! scrape time so the value never goes stale between publishes. Negative once expired.
use std::sync::Arc;

use parking_lot::RwLock;
use portcullis_api::Model;
use prometheus::{
    GaugeVec, Opts,
    core::{Collector, Desc},
    proto::MetricFamily,
};

pub const HOST_METRIC: &str = "portcullis_certificate_expiry_seconds";
pub const SERVICE_METRIC: &str = "portcullis_upstream_certificate_expiry_seconds";

/// (label values, notAfter in unix seconds).
type Series = Vec<(Vec<String>, i64)>;

#[derive(Clone)]
pub struct Expiry {
    hosts: GaugeVec,
    services: GaugeVec,
    state: Arc<RwLock<(Series, Series)>>,
}

impl Expiry {
    pub fn new() -> Self {
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            GaugeVec::new(Opts::new(name, help), labels).expect("valid gauge")
        };
        Self {
            hosts: gauge(
                HOST_METRIC,
                "Seconds until the served certificate of a Host expires.",
                &["host", "hostname"],
            ),
            services: gauge(
                SERVICE_METRIC,
                "Seconds until the client certificate a Service presents to its backends expires.",
                &["portcullis_service"],
            ),
            state: Arc::default(),
        }
    }

    /// Takes the certificates of the model being published.
    pub fn update(&self, model: &Model) {
        let hosts = model
            .hosts
            .iter()
            .filter_map(|(k, h)| {
                let c = h.certificate.as_ref()?;
                let labels = vec![
                    format!("{}/{}", k.namespace, k.name),
                    h.host.spec.hostname.clone(),
                ];
                Some((labels, c.not_after))
            })
            .collect();
        let services = model
            .upstream_tls
            .iter()
            .filter_map(|(k, t)| {
                let c = t.client.as_ref()?;
                Some((vec![format!("{}/{}", k.namespace, k.name)], c.not_after))
            })
            .collect();
        *self.state.write() = (hosts, services);
    }

    fn fill(&self, now: i64) {
        let state = self.state.read();
        for (gauge, series) in [(&self.hosts, &state.0), (&self.services, &state.1)] {
            gauge.reset();
            for (labels, not_after) in series {
                let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
                gauge
                    .with_label_values(&labels)
                    .set((not_after - now) as f64);
            }
        }
    }
}

impl Default for Expiry {
    fn default() -> Self {
        Self::new()
    }
}

impl Collector for Expiry {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.hosts.desc();
        d.extend(self.services.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.fill(jiff::Timestamp::now().as_second());
        let mut out = self.hosts.collect();
        out.extend(self.services.collect());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_api::{
        Certificate, Certificates, ObjectKey, Objects,
        certificate::PrivateKey,
        validate::{Rules, validate_objects},
    };

    #[test]
    fn each_served_host_has_one_series_counting_down_to_not_after() {
        let yaml = "---\napiVersion: portcullis.dev/v1alpha1\nkind: Host\nmetadata: {name: api, namespace: a}\nspec: {hostname: api.example.com, tls: {certificateFile: c, keyFile: k}}\n---\napiVersion: portcullis.dev/v1alpha1\nkind: Host\nmetadata: {name: plain, namespace: a}\nspec: {hostname: plain.example.com}\n";
        let objects = Objects::parse(yaml).unwrap();
        let now = jiff::Timestamp::now().as_second();
        let not_after = now + 10 * 86_400;
        let mut certs = Certificates::new();
        certs.insert(
            ObjectKey {
                kind: "Host",
                namespace: "a".into(),
                name: "api".into(),
            },
            portcullis_api::CertificateState {
                serving: Some(Certificate {
                    chain_pem: String::new(),
                    key: PrivateKey("secret".into()),
                    not_after,
                    fingerprint: "0".repeat(64),
                    names: vec!["api.example.com".into()],
                }),
                ..Default::default()
            },
        );
        let outcome = validate_objects(&objects, &certs, &Rules::file_mode());
        let expiry = Expiry::new();
        expiry.update(&outcome.model);
        let families = expiry.collect();
        let hosts = families.iter().find(|f| f.name() == HOST_METRIC).unwrap();
        assert_eq!(hosts.get_metric().len(), 1, "one series per Host with TLS");
        let m = &hosts.get_metric()[0];
        let labels: Vec<(&str, &str)> = m
            .get_label()
            .iter()
            .map(|l| (l.name(), l.value()))
            .collect();
        assert_eq!(labels, [("host", "a/api"), ("hostname", "api.example.com")]);
        let value = m.get_gauge().get_value();
        let want = (not_after - jiff::Timestamp::now().as_second()) as f64;
        assert!((value - want).abs() <= 5.0, "{value} vs {want}");
    }
}
