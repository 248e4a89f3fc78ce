//! Single-object rules for `Route`.
use std::collections::BTreeSet;

use super::{Report, names, service::check_timeout};
use crate::Route;

pub(super) fn check(route: &Route, report: &mut Report) {
    if let Err(e) = names::check_name(&report.key.name) {
        report.error("metadata.name", e);
    }
    let spec = &route.spec;
    let mut hosts = BTreeSet::new();
    for (i, h) in spec.hosts.iter().enumerate() {
        if let Err(e) = names::check_host(h) {
            report.error(&format!("spec.hosts[{i}]"), e);
        } else if !hosts.insert(h) {
            report.error(
                &format!("spec.hosts[{i}]"),
                format!("duplicate host {h:?}; list it once"),
            );
        }
    }
    let m = &spec.match_;
    let mut methods = BTreeSet::new();
    for (i, method) in m.methods.iter().enumerate() {
        let field = format!("spec.match.methods[{i}]");
        let upper = method.to_ascii_uppercase();
        if !names::METHODS.contains(&upper.as_str()) {
            report.error(
                &field,
                format!(
                    "unknown method {method:?}; use one of {}",
                    names::METHODS.join(", ")
                ),
            );
        } else if !methods.insert(upper) {
            report.error(&field, format!("duplicate method {method:?}; list it once"));
        }
    }
    if m.paths.is_empty() {
        report.error(
            "spec.match.paths",
            "no paths; add at least one, e.g. - prefix: / to match every path".into(),
        );
    }
    let mut paths = BTreeSet::new();
    for (i, p) in m.paths.iter().enumerate() {
        let field = format!("spec.match.paths[{i}]");
        let (kind, value) = match (&p.exact, &p.prefix) {
            (Some(v), None) => ("exact", v),
            (None, Some(v)) => ("prefix", v),
            _ => {
                report.error(&field, "set exactly one of exact and prefix".into());
                continue;
            }
        };
        if let Err(e) = names::check_path(value) {
            report.error(&format!("{field}.{kind}"), e);
        } else if !paths.insert((kind, value)) {
            report.error(
                &format!("{field}.{kind}"),
                format!("duplicate path {kind}: {value}; list it once"),
            );
        }
    }
    let mut headers = BTreeSet::new();
    for (i, h) in m.headers.iter().enumerate() {
        let field = format!("spec.match.headers[{i}]");
        if h.name.is_empty()
            || !h
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            report.error(
                &format!("{field}.name"),
                format!(
                    "{:?} is not a header name; use letters, digits and '-'",
                    h.name
                ),
            );
        } else if h.name.starts_with(':') || h.name.eq_ignore_ascii_case("host") {
            report.error(
                &format!("{field}.name"),
                "match the host with spec.hosts and the method with spec.match.methods".into(),
            );
        } else if !headers.insert(h.name.to_ascii_lowercase()) {
            report.error(
                &format!("{field}.name"),
                format!("header {:?} listed twice; combine the matchers", h.name),
            );
        }
        let set = [h.exact.is_some(), h.prefix.is_some(), h.regex.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if set > 1 {
            report.error(&field, "set at most one of exact, prefix and regex (none means the header must be present)".into());
        }
        // Envoy's string matchers need at least one character for prefix and regex.
        if h.prefix.as_deref() == Some("") {
            report.error(
                &format!("{field}.prefix"),
                "empty prefix matches every value; remove it to require only that the header is present".into(),
            );
        }
        if h.regex.as_deref() == Some("") {
            report.error(
                &format!("{field}.regex"),
                "empty regex; remove it to require only that the header is present, or write a pattern".into(),
            );
        } else if let Some(re) = &h.regex
            && let Err(e) = super::regex::check(re)
        {
            report.error(&format!("{field}.regex"), e);
        }
    }
    if spec.backends.is_empty() {
        report.error(
            "spec.backends",
            "no backends; add at least one {service: <Service name>}".into(),
        );
    }
    let mut services = BTreeSet::new();
    for (i, b) in spec.backends.iter().enumerate() {
        if b.service.is_empty() {
            report.error(
                &format!("spec.backends[{i}].service"),
                "empty; name a Service in this namespace".into(),
            );
        } else if !services.insert(&b.service) {
            report.error(
                &format!("spec.backends[{i}].service"),
                format!(
                    "Service {:?} listed twice; list it once and add the weights",
                    b.service
                ),
            );
        }
    }
    if !spec.backends.is_empty() && spec.backends.iter().all(|b| b.weight() == 0) {
        report.error(
            "spec.backends[].weight",
            "weights sum to 0, so no backend would get traffic; give at least one backend a weight above 0".into(),
        );
    }
    if let Some(t) = spec.timeout {
        check_timeout(report, "spec.timeout", t);
    }
    super::policy::check_route(route, report);
    super::bounds::check_route(route, report);
}
