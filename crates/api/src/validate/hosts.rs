//! Rules for `Host`: the object itself, one owner per hostname (older wins), its
//! certificate, and which Routes may serve an owned hostname.
use std::{collections::BTreeMap, sync::Arc};

use super::{Issue, Report, Rules, names};
use crate::{
    CertificateState, Certificates, Host, ObjectKey, Route, host::ALPN, model::ServedHost,
    precedence::age_order,
};

pub(super) fn check(host: &Host, rules: &Rules, report: &mut Report) {
    if let Err(e) = names::check_name(&report.key.name) {
        report.error("metadata.name", e);
    }
    let spec = &host.spec;
    if let Err(e) = names::check_host(&spec.hostname) {
        report.error("spec.hostname", e);
    }
    if let Some(a) = &spec.allowed_routes {
        for (i, ns) in a.namespaces.iter().enumerate() {
            if ns != "*"
                && let Err(e) = names::check_name(ns)
            {
                report.error(&format!("spec.allowedRoutes.namespaces[{i}]"), e);
            }
        }
        if a.namespaces.len() > 256 {
            report.error(
                "spec.allowedRoutes.namespaces",
                "over 256 namespaces; use \"*\" or a shared namespace".into(),
            );
        }
    }
    let Some(tls) = &spec.tls else { return };
    let files = (tls.certificate_file.is_some(), tls.key_file.is_some());
    match (&tls.secret_name, files, rules.certificates_from_secrets) {
        (Some(s), (false, false), true) => {
            if let Err(e) = names::check_name(s) {
                report.error("spec.tls.secretName", e);
            }
        }
        (None, (true, true), false) => {}
        (_, _, true) => report.error(
            "spec.tls",
            "in Kubernetes mode the certificate comes from a kubernetes.io/tls Secret: set secretName (and not certificateFile/keyFile)".into(),
        ),
        (_, _, false) => report.error(
            "spec.tls",
            "in file mode the certificate comes from PEM files: set certificateFile and keyFile (secretName needs the Kubernetes controller)".into(),
        ),
    }
    match tls.min_version() {
        "1.2" | "1.3" => {}
        other => report.error(
            "spec.tls.minVersion",
            format!("{other:?} is not offered; use \"1.2\" (default) or \"1.3\""),
        ),
    }
    for (i, p) in tls.alpn.iter().enumerate() {
        if !ALPN.contains(&p.as_str()) {
            report.error(
                &format!("spec.tls.alpn[{i}]"),
                format!("{p:?} is not a protocol Envoy serves here; use h2 and/or http/1.1"),
            );
        }
    }
    if let Some(h) = &tls.hsts
        && h.max_age > crate::Duration::from_secs(2 * 365 * 86_400)
    {
        report.error(
            "spec.tls.hsts.maxAge",
            format!(
                "{} is over two years; use 31536000s (one year) or 63072000s",
                h.max_age
            ),
        );
    }
}

/// Oldest Host keeps a hostname; resolves certificates; returns the served Hosts.
pub(super) fn resolve(
    hosts: &mut [(Report, &Arc<Host>)],
    certificates: &Certificates,
) -> BTreeMap<ObjectKey, ServedHost> {
    let mut order: Vec<usize> = (0..hosts.len())
        .filter(|&i| hosts[i].0.is_served())
        .collect();
    order.sort_by(|&a, &b| {
        age_order(&hosts[a].1.metadata, &hosts[b].1.metadata)
            .then_with(|| hosts[a].0.key.cmp(&hosts[b].0.key))
    });
    let mut owners: BTreeMap<String, ObjectKey> = BTreeMap::new();
    let mut served = BTreeMap::new();
    for i in order {
        let (report, host) = &mut hosts[i];
        let hostname = host.spec.hostname.clone();
        if let Some(owner) = owners.get(&hostname) {
            report.conflict = Some(Box::new(Issue {
                object: report.key.clone(),
                field: "spec.hostname".into(),
                message: format!(
                    "{hostname} is owned by the older {owner}; use another hostname or remove one of them"
                ),
            }));
            continue;
        }
        owners.insert(hostname, report.key.clone());
        let state = certificates.get(&report.key).cloned().unwrap_or_default();
        let certificate = if host.spec.tls.is_some() {
            certificate(report, &state)
        } else {
            None
        };
        served.insert(
            report.key.clone(),
            ServedHost {
                host: Host::clone(host),
                certificate,
            },
        );
    }
    served
}

fn certificate(report: &mut Report, state: &CertificateState) -> Option<crate::Certificate> {
    let issue = |message: String| Issue {
        object: report.key.clone(),
        field: "spec.tls".into(),
        message,
    };
    match (&state.serving, &state.problem) {
        (None, problem) => {
            let why = problem.clone().unwrap_or_else(|| "no certificate loaded yet".into());
            report.unresolved.push(issue(format!(
                "{why}; HTTPS is not served for this hostname until a good certificate is in place"
            )));
        }
        (Some(c), Some(problem)) => report.warnings.push(issue(format!(
            "the new certificate is refused ({problem}); still serving the previous one (sha256 {})",
            &c.fingerprint[..c.fingerprint.len().min(16)]
        ))),
        (Some(_), None) => {}
    }
    if let Some(e) = &state.expiring {
        report.expiring = Some(Box::new(issue(e.clone())));
    }
    state.serving.clone()
}

/// Routes naming a hostname owned by a Host that does not admit their namespace are not
/// served; with `require_host_ownership`, neither are Routes naming unowned hostnames.
///
/// `kept`: the memo's Routes, one for one with `routes`, and the stamp of what is read
/// of `hosts` here ([`super::memo::Admission`]). A Route that was admitted on every
/// hostname under that stamp is again, without reading its hostnames (at 10k Routes,
/// following each Route to its hostnames was a visible part of every edit).
pub(super) fn admit_routes(
    routes: &mut [(Report, &Arc<Route>)],
    hosts: &BTreeMap<ObjectKey, ServedHost>,
    rules: &Rules,
    mut kept: Option<(u64, &mut super::memo::Kept<Route, super::memo::Derived>)>,
) {
    debug_assert!(kept.as_ref().is_none_or(|(_, k)| {
        k.len() == routes.len() && k.iter().zip(&*routes).all(|(k, r)| Arc::ptr_eq(&k.0, r.1))
    }));
    // Many Routes name the same hostname: each one's owner is looked up once.
    let mut owners = foldhash::HashMap::default();
    for (at, (report, route)) in routes.iter_mut().enumerate() {
        if !report.is_served() {
            continue;
        }
        let mark = kept
            .as_mut()
            .map(|(stamp, k)| (*stamp, &mut k[at].2.admitted));
        if let Some((stamp, admitted)) = &mark
            && **admitted == *stamp
        {
            continue;
        }
        let refused_before = report.not_allowed.len();
        for (i, h) in route.spec.hosts.iter().enumerate() {
            let owner = *owners
                .entry(h.as_str())
                .or_insert_with(|| crate::model::owner(hosts, h));
            let message = match owner {
                Some((key, served)) => {
                    if served
                        .host
                        .spec
                        .admits(&key.namespace, &report.key.namespace)
                    {
                        continue;
                    }
                    format!(
                        "{h} is owned by {key}, which does not admit Routes from namespace {}; ask its owners to add it to spec.allowedRoutes.namespaces, or use another hostname",
                        report.key.namespace
                    )
                }
                None if rules.require_host_ownership => format!(
                    "no Host owns {h}, and this gateway requires one (--require-host-ownership); create a Host for it in your namespace"
                ),
                None => continue,
            };
            report.not_allowed.push(Issue {
                object: report.key.clone(),
                field: format!("spec.hosts[{i}]"),
                message,
            });
        }
        if let Some((stamp, admitted)) = mark
            && report.not_allowed.len() == refused_before
        {
            *admitted = stamp;
        }
    }
}
