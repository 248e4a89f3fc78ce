//! Single-object rules for `Service`.
use std::collections::BTreeSet;

use super::{Report, names};
use crate::{Service, service::MAX_TIMEOUT};

pub(super) fn check(svc: &Service, rules: &super::Rules, report: &mut Report) {
    if let Err(e) = names::check_name(&report.key.name) {
        report.error("metadata.name", e);
    }
    let spec = &svc.spec;
    if spec.destinations.is_empty() {
        report.error(
            "spec.destinations",
            "no destinations; add at least one {name, address}".into(),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, d) in spec.destinations.iter().enumerate() {
        let field = format!("spec.destinations[{i}]");
        if let Err(e) = names::check_name(&d.name) {
            report.error(&format!("{field}.name"), e);
        } else if !seen.insert(d.name.as_str()) {
            report.error(
                &format!("{field}.name"),
                format!(
                    "duplicate destination name {:?}; give each destination its own name",
                    d.name
                ),
            );
        }
        match (&d.address, &d.service_ref) {
            (Some(addr), None) => match names::parse_address(addr) {
                Err(e) => report.error(&format!("{field}.address"), e),
                Ok((host, _, is_ip)) => {
                    if let Err(e) = rules.destinations.check(&host, is_ip) {
                        report.error(&format!("{field}.address"), e);
                    }
                }
            },
            (None, Some(r)) => {
                if let Err(e) = names::check_name(&r.name) {
                    report.error(&format!("{field}.serviceRef.name"), e);
                }
                if r.port == 0 {
                    report.error(
                        &format!("{field}.serviceRef.port"),
                        "port 0; set the Kubernetes Service port".into(),
                    );
                }
            }
            (Some(_), Some(_)) => report.error(
                &field,
                "both address and serviceRef are set; keep exactly one".into(),
            ),
            (None, None) => report.error(
                &field,
                "neither address nor serviceRef is set; add address: host:port".into(),
            ),
        }
        if let Some(region) = &d.region
            && let Err(e) = names::check_name(region)
        {
            report.error(&format!("{field}.region"), e);
        }
    }
    if !spec.destinations.is_empty() && spec.destinations.iter().all(|d| d.weight() == 0) {
        report.error(
            "spec.destinations[].weight",
            "weights sum to 0, so no destination would get traffic; give at least one destination a weight above 0".into(),
        );
    }
    if let Some(t) = spec.timeout {
        check_timeout(report, "spec.timeout", t);
    }
    super::policy::check_service(svc, report);
    super::bounds::check_service(svc, report);
    super::upstream_tls::check(svc, rules, report);
    if let Some(t) = spec.connect_timeout {
        if t.0.is_zero() {
            report.error(
                "spec.connectTimeout",
                "0s would fail every connection; use e.g. 2s".into(),
            );
        } else if t > crate::Duration::from_secs(30) {
            report.error(
                "spec.connectTimeout",
                format!(
                    "{t} is over the 30s maximum; a connect that slow is a failure, use 5s or less"
                ),
            );
        }
    }
}

/// Request timeouts: positive and at most 60s (Envoy's infinite default never leaks).
pub(super) fn check_timeout(report: &mut Report, field: &str, t: crate::Duration) {
    if t.0.is_zero() {
        report.error(
            field,
            format!("0s means no timeout; set a value between 1ms and {MAX_TIMEOUT}"),
        );
    } else if t > MAX_TIMEOUT {
        report.error(
            field,
            format!("{t} is over the {MAX_TIMEOUT} maximum; set it to {MAX_TIMEOUT} or less (long-running work belongs behind an async API)"),
        );
    }
}

impl Report {
    pub(super) fn error(&mut self, field: &str, message: String) {
        self.errors.push(super::Issue {
            object: self.key.clone(),
            field: field.into(),
            message,
        });
    }
}
