//! Upper bounds on every count and length a manifest can carry.
//!
//! Each bound keeps one object from costing the gateway more than a team could need:
//! Envoy holds every host × path × header of the route table in memory on every
//! replica, and one object that Envoy refuses blocks everyone's edits. The numbers
//! follow the Kubernetes Gateway API where it has one (16 matches, 16 headers,
//! 16 backends, weights up to 1,000,000) and are documented in docs/robustness.md.
use super::Report;
use crate::{Route, Service};

pub const MAX_HOSTS: usize = 32;
pub const MAX_PATHS: usize = 32;
pub const MAX_HEADERS: usize = 16;
pub const MAX_BACKENDS: usize = 16;
pub const MAX_DESTINATIONS: usize = 256;
/// Backend and destination weights: sums of 256 of them stay far below Envoy's u32.
pub const MAX_WEIGHT: u32 = 1_000_000;
pub const MAX_PATH_LEN: usize = 1024;
pub const MAX_HEADER_NAME_LEN: usize = 128;
pub const MAX_HEADER_VALUE_LEN: usize = 1024;
pub const MAX_RATE_LIMITS: usize = 16;
pub const MAX_WINDOWS: usize = 8;
pub const MAX_DIMENSIONS: usize = 8;
pub const MAX_SCOPES: usize = 32;
pub const MAX_SCOPE_LEN: usize = 128;
pub const MAX_STATUS_CODES: usize = 32;
/// Names a backend certificate may carry to be trusted (`Service.spec.tls`).
pub const MAX_SUBJECT_ALT_NAMES: usize = 16;
pub const MAX_SUBJECT_ALT_NAME_LEN: usize = 256;
/// Requests per window: a u32 with room for the service's arithmetic.
pub const MAX_REQUESTS: u32 = 1_000_000_000;

fn too_many(report: &mut Report, field: &str, n: usize, max: usize, fix: &str) {
    if n > max {
        report.error(field, format!("{n} entries, over the {max} allowed; {fix}"));
    }
}

fn too_long(report: &mut Report, field: &str, value: &str, max: usize) {
    if value.len() > max {
        report.error(
            field,
            format!(
                "{} bytes long, over the {max} allowed; shorten it",
                value.len()
            ),
        );
    }
}

pub(super) fn check_route(route: &Route, report: &mut Report) {
    let spec = &route.spec;
    let m = &spec.match_;
    too_many(
        report,
        "spec.hosts",
        spec.hosts.len(),
        MAX_HOSTS,
        "use a wildcard (*.example.com) or split the Route",
    );
    too_many(
        report,
        "spec.match.paths",
        m.paths.len(),
        MAX_PATHS,
        "use a prefix or split the Route",
    );
    too_many(
        report,
        "spec.match.headers",
        m.headers.len(),
        MAX_HEADERS,
        "match fewer headers",
    );
    too_many(
        report,
        "spec.backends",
        spec.backends.len(),
        MAX_BACKENDS,
        "split traffic over fewer Services",
    );
    too_many(
        report,
        "spec.rateLimits",
        spec.rate_limits.len(),
        MAX_RATE_LIMITS,
        "combine limits",
    );
    for (i, p) in m.paths.iter().enumerate() {
        for (kind, v) in [("exact", &p.exact), ("prefix", &p.prefix)] {
            if let Some(v) = v {
                too_long(
                    report,
                    &format!("spec.match.paths[{i}].{kind}"),
                    v,
                    MAX_PATH_LEN,
                );
            }
        }
    }
    for (i, h) in m.headers.iter().enumerate() {
        let f = format!("spec.match.headers[{i}]");
        too_long(report, &format!("{f}.name"), &h.name, MAX_HEADER_NAME_LEN);
        for (kind, v) in [("exact", &h.exact), ("prefix", &h.prefix)] {
            if let Some(v) = v {
                too_long(report, &format!("{f}.{kind}"), v, MAX_HEADER_VALUE_LEN);
            }
        }
    }
    for (i, b) in spec.backends.iter().enumerate() {
        weight(report, &format!("spec.backends[{i}].weight"), b.weight);
    }
    if let Some(auth) = &spec.auth {
        too_many(
            report,
            "spec.auth.scopes",
            auth.scopes.len(),
            MAX_SCOPES,
            "require fewer scopes",
        );
        for (i, s) in auth.scopes.iter().enumerate() {
            too_long(report, &format!("spec.auth.scopes[{i}]"), s, MAX_SCOPE_LEN);
        }
    }
    if let Some(r) = &spec.retry {
        too_many(
            report,
            "spec.retry.statusCodes",
            r.status_codes.len(),
            MAX_STATUS_CODES,
            "list each status code once",
        );
        too_many(
            report,
            "spec.retry.on",
            r.on.len(),
            crate::policy::RETRY_ON.len(),
            "list each condition once",
        );
    }
    for (i, l) in spec.rate_limits.iter().enumerate() {
        let f = format!("spec.rateLimits[{i}]");
        too_many(
            report,
            &format!("{f}.by"),
            l.by.len(),
            MAX_DIMENSIONS,
            "count by fewer dimensions",
        );
        too_many(
            report,
            &format!("{f}.limits"),
            l.limits.len(),
            MAX_WINDOWS,
            "keep one window per period",
        );
        for (j, w) in l.limits.iter().enumerate() {
            if w.requests > MAX_REQUESTS {
                report.error(
                    &format!("{f}.limits[{j}].requests"),
                    format!(
                        "{} is over {MAX_REQUESTS}; a limit that high never applies, remove it",
                        w.requests
                    ),
                );
            }
        }
    }
}

pub(super) fn check_service(svc: &Service, report: &mut Report) {
    let spec = &svc.spec;
    too_many(
        report,
        "spec.destinations",
        spec.destinations.len(),
        MAX_DESTINATIONS,
        "use a serviceRef or a DNS name that resolves to many addresses",
    );
    for (i, d) in spec.destinations.iter().enumerate() {
        weight(report, &format!("spec.destinations[{i}].weight"), d.weight);
    }
    if let Some(tls) = &spec.tls {
        too_many(
            report,
            "spec.tls.subjectAltNames",
            tls.subject_alt_names.len(),
            MAX_SUBJECT_ALT_NAMES,
            "issue the backends one certificate name they all carry",
        );
        for (i, san) in tls.subject_alt_names.iter().enumerate() {
            too_long(
                report,
                &format!("spec.tls.subjectAltNames[{i}]"),
                san,
                MAX_SUBJECT_ALT_NAME_LEN,
            );
        }
        for (field, path) in [
            ("spec.tls.caFile", tls.ca_file.as_ref()),
            (
                "spec.tls.clientCertificate.certificateFile",
                tls.client_certificate
                    .as_ref()
                    .and_then(|c| c.certificate_file.as_ref()),
            ),
            (
                "spec.tls.clientCertificate.keyFile",
                tls.client_certificate
                    .as_ref()
                    .and_then(|c| c.key_file.as_ref()),
            ),
        ] {
            if let Some(p) = path {
                too_long(report, field, p, MAX_PATH_LEN);
            }
        }
    }
}

fn weight(report: &mut Report, field: &str, w: Option<u32>) {
    if let Some(w) = w
        && w > MAX_WEIGHT
    {
        report.error(
            field,
            format!("{w} is over {MAX_WEIGHT}; weights are relative, scale them down"),
        );
    }
}
