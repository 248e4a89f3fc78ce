//! Rules for `Service.spec.tls`: the backend is always verified (a trusted CA and a
//! name to match), the material comes from where this mode can read it, and the
//! Service is served only once the control plane holds good material for it.
use std::{collections::BTreeMap, sync::Arc};

use super::{Issue, Report, names};
use crate::{CertificateState, Certificates, ObjectKey, Service, model::UpstreamTls};

pub(super) fn check(svc: &Service, rules: &super::Rules, report: &mut Report) {
    let spec = &svc.spec;
    let Some(tls) = &spec.tls else { return };
    if rules.certificates_from_secrets {
        secrets(tls, report);
    } else {
        files(tls, report);
    }
    if let Some(sni) = &tls.sni {
        if sni.parse::<std::net::IpAddr>().is_ok() || sni.starts_with("*.") {
            report.error(
                "spec.tls.sni",
                format!("{sni:?} is not a server name (SNI carries a DNS name, never an IP or a wildcard); write e.g. api.internal"),
            );
        } else if let Err(e) = names::check_host(sni) {
            report.error("spec.tls.sni", e);
        }
    }
    for (i, san) in tls.subject_alt_names.iter().enumerate() {
        if san.is_empty() || san.chars().any(|c| c.is_whitespace() || c.is_control()) {
            report.error(
                &format!("spec.tls.subjectAltNames[{i}]"),
                format!("{san:?} is not a name; write a DNS name (api.internal) or a URI (spiffe://example.org/ns/a/sa/b)"),
            );
        }
    }
    if tls.subject_alt_names.is_empty() {
        let ip = spec.destinations.iter().find_map(|d| {
            let (host, _, is_ip) = names::parse_address(d.address.as_deref()?).ok()?;
            is_ip.then(|| format!("{} ({host})", d.name))
        });
        if let Some(ip) = ip {
            report.error(
                "spec.tls.subjectAltNames",
                format!("destination {ip} is an IP address, which says nothing about whose certificate to expect; list the DNS names or URIs the backend's certificate carries in subjectAltNames"),
            );
        } else if spec.sni().is_none() && spec.destinations.iter().any(|d| d.address.is_some()) {
            report.error(
                "spec.tls.sni",
                "the destinations name different hosts, so there is no one name to verify; set sni and subjectAltNames".into(),
            );
        }
    }
}

/// Kubernetes mode: the CA bundle and client certificate come from Secrets in the
/// Service's namespace (`ca.crt`; `tls.crt`/`tls.key`), never from files.
fn secrets(tls: &crate::ServiceTls, report: &mut Report) {
    if tls.ca_file.is_some() {
        report.error(
            "spec.tls.caFile",
            "in Kubernetes mode the trusted CAs come from a Secret: set caSecretName to a Secret in this namespace holding ca.crt".into(),
        );
    }
    match tls.ca_secret_name.as_deref() {
        None => report.error(
            "spec.tls.caSecretName",
            "no trusted CA: the backend's certificate is always verified; set caSecretName to a Secret in this namespace whose ca.crt holds the CAs that sign it".into(),
        ),
        Some(n) => {
            if let Err(e) = names::check_name(n) {
                report.error("spec.tls.caSecretName", format!("{e} (a Secret in this Service's namespace)"));
            }
        }
    }
    let Some(c) = &tls.client_certificate else {
        return;
    };
    let field = "spec.tls.clientCertificate";
    if c.certificate_file.is_some() || c.key_file.is_some() {
        report.error(
            field,
            "in Kubernetes mode the client certificate comes from a kubernetes.io/tls Secret: set secretName (and not certificateFile/keyFile)".into(),
        );
    }
    match c.secret_name.as_deref() {
        None => report.error(
            &format!("{field}.secretName"),
            "empty; name a kubernetes.io/tls Secret in this namespace, or remove clientCertificate"
                .into(),
        ),
        Some(n) => {
            if let Err(e) = names::check_name(n) {
                report.error(
                    &format!("{field}.secretName"),
                    format!("{e} (a Secret in this Service's namespace)"),
                );
            }
        }
    }
}

/// File mode: PEM files, relative to the manifest directory or absolute.
fn files(tls: &crate::ServiceTls, report: &mut Report) {
    if tls.ca_secret_name.is_some() {
        report.error(
            "spec.tls.caSecretName",
            "Secrets need the Kubernetes controller; in file mode set caFile to a PEM bundle"
                .into(),
        );
    }
    match tls.ca_file.as_deref() {
        None if tls.ca_secret_name.is_none() => report.error(
            "spec.tls.caFile",
            "no trusted CA: the backend's certificate is always verified; set caFile to the PEM bundle of the CAs that sign it".into(),
        ),
        Some("") => report.error(
            "spec.tls.caFile",
            "empty path; name the PEM bundle of trusted CAs".into(),
        ),
        _ => {}
    }
    if let Some(c) = &tls.client_certificate {
        let field = "spec.tls.clientCertificate";
        if c.secret_name.is_some() {
            report.error(
                &format!("{field}.secretName"),
                "Secrets need the Kubernetes controller; in file mode set certificateFile and keyFile".into(),
            );
        }
        match (&c.certificate_file, &c.key_file) {
            (Some(_), None) => report.error(
                &format!("{field}.keyFile"),
                "a client certificate without its key cannot be presented; set keyFile to the PEM private key of certificateFile".into(),
            ),
            (None, Some(_)) => report.error(
                &format!("{field}.certificateFile"),
                "a key without its certificate; set certificateFile to the PEM chain that goes with keyFile".into(),
            ),
            (None, None) if c.secret_name.is_none() => report.error(
                field,
                "empty; set certificateFile and keyFile, or remove clientCertificate".into(),
            ),
            _ => {}
        }
    }
}

/// The material of every accepted Service with TLS; a Service without good material
/// is not served (ResolvedRefs=False) rather than served without verification.
pub(super) fn resolve(
    services: &mut [(Report, &Arc<Service>)],
    certificates: &Certificates,
) -> BTreeMap<ObjectKey, UpstreamTls> {
    let mut out = BTreeMap::new();
    for (report, svc) in services.iter_mut() {
        let Some(tls) = &svc.spec.tls else { continue };
        if !report.errors.is_empty() {
            continue;
        }
        let state = certificates.get(&report.key).cloned().unwrap_or_default();
        let ca_field = if tls.ca_secret_name.is_some() {
            "spec.tls.caSecretName"
        } else {
            "spec.tls.caFile"
        };
        if let Some(material) = material(report, &state, tls.client_certificate.is_some(), ca_field)
        {
            out.insert(report.key.clone(), material);
        }
    }
    out
}

fn material(
    report: &mut Report,
    state: &CertificateState,
    client: bool,
    ca_field: &str,
) -> Option<UpstreamTls> {
    let issue = |field: &str, message: String| Issue {
        object: report.key.clone(),
        field: field.into(),
        message,
    };
    let why = || {
        state
            .problem
            .clone()
            .unwrap_or_else(|| "not loaded yet".into())
    };
    let mut missing = Vec::new();
    if state.trusted_ca.is_none() {
        missing.push(issue(
            ca_field,
            format!(
                "{}; the Service is not served until its trusted CAs load",
                why()
            ),
        ));
    }
    if client && state.serving.is_none() {
        missing.push(issue(
            "spec.tls.clientCertificate",
            format!(
                "{}; the Service is not served until its client certificate loads",
                why()
            ),
        ));
    }
    if !missing.is_empty() {
        report.unresolved.extend(missing);
        return None;
    }
    if let Some(problem) = &state.problem {
        report.warnings.push(issue(
            "spec.tls",
            format!("the new TLS material is refused ({problem}); still using the previous one"),
        ));
    }
    if let Some(e) = &state.expiring {
        report
            .warnings
            .push(issue("spec.tls.clientCertificate", e.clone()));
    }
    Some(UpstreamTls {
        trusted_ca: state.trusted_ca.clone()?,
        client: if client { state.serving.clone() } else { None },
    })
}
