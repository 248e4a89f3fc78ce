//! `Service.spec.tls`: what is refused (naming the field and the fix), and that a
//! Service is served only with good material, the last good kept on a bad rotation.
use super::*;
use crate::{Certificate, CertificateState, TrustBundle, certificate::PrivateKey};

fn service(name: &str, address: &str, tls: &str) -> Service {
    let yaml = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {{name: {name}, namespace: t}}\nspec: {{destinations: [{{name: d, address: '{address}'}}], tls: {tls}}}\n"
    );
    serde_yaml::from_str(&yaml).unwrap()
}

fn errors(svc: Service, rules: &Rules) -> Vec<String> {
    let o = validate_with(&[] as &[Route], &[svc], rules);
    o.reports[0]
        .errors
        .iter()
        .map(|i| format!("{}: {}", i.field, i.message))
        .collect()
}

fn assert_refused(tls: &str, address: &str, field: &str, fix: &str) {
    let e = errors(service("s", address, tls), &Rules::file_mode());
    assert!(
        e.iter().any(|m| m.starts_with(field) && m.contains(fix)),
        "{tls}: want {field} … {fix}, got {e:?}"
    );
}

#[test]
fn careless_and_hostile_tls_settings_are_refused_naming_field_and_fix() {
    let ip = "10.0.0.7:443";
    let name = "api.internal:443";
    assert_refused(
        "{caFile: ca.pem}",
        ip,
        "spec.tls.subjectAltNames",
        "is an IP address",
    );
    assert_refused(
        "{sni: api.internal, caFile: ca.pem}",
        ip,
        "spec.tls.subjectAltNames",
        "list the DNS names",
    );
    assert_refused("{}", name, "spec.tls.caFile", "set caFile");
    assert_refused("{caFile: ''}", name, "spec.tls.caFile", "empty path");
    assert_refused(
        "{caFile: ca.pem, sni: 10.0.0.7}",
        name,
        "spec.tls.sni",
        "never an IP",
    );
    assert_refused(
        "{caFile: ca.pem, sni: '*.internal'}",
        name,
        "spec.tls.sni",
        "wildcard",
    );
    assert_refused(
        "{caFile: ca.pem, sni: API.internal}",
        name,
        "spec.tls.sni",
        "upper-case",
    );
    assert_refused(
        "{caFile: ca.pem, clientCertificate: {certificateFile: c.pem}}",
        name,
        "spec.tls.clientCertificate.keyFile",
        "set keyFile",
    );
    assert_refused(
        "{caFile: ca.pem, clientCertificate: {keyFile: k.pem}}",
        name,
        "spec.tls.clientCertificate.certificateFile",
        "set certificateFile",
    );
    assert_refused(
        "{caFile: ca.pem, clientCertificate: {}}",
        name,
        "spec.tls.clientCertificate",
        "remove clientCertificate",
    );
    assert_refused(
        "{caSecretName: ca}",
        name,
        "spec.tls.caSecretName",
        "Kubernetes controller",
    );
    assert_refused(
        "{caFile: ca.pem, subjectAltNames: ['has space']}",
        name,
        "spec.tls.subjectAltNames[0]",
        "not a name",
    );
    let many = (0..17)
        .map(|i| format!("n{i}.internal"))
        .collect::<Vec<_>>()
        .join(", ");
    assert_refused(
        &format!("{{caFile: ca.pem, subjectAltNames: [{many}]}}"),
        name,
        "spec.tls.subjectAltNames",
        "over the 16 allowed",
    );
    let long = "a".repeat(300);
    assert_refused(
        &format!("{{caFile: ca.pem, subjectAltNames: [{long}]}}"),
        name,
        "spec.tls.subjectAltNames[0]",
        "over the 256 allowed",
    );
    // Two destinations with different names: no one name to verify.
    let two: Service = serde_yaml::from_str(
        "apiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {name: s, namespace: t}\nspec: {destinations: [{name: a, address: 'a.internal:443'}, {name: b, address: 'b.internal:443'}], tls: {caFile: ca.pem}}\n",
    )
    .unwrap();
    let e = errors(two, &Rules::file_mode());
    assert!(
        e.iter()
            .any(|m| m.starts_with("spec.tls.sni") && m.contains("different hosts")),
        "{e:?}"
    );
    // Kubernetes mode: Secrets in the Service's namespace, never files or `ns/name`.
    let e = errors(
        service("s", name, "{caSecretName: ca}"),
        &Rules::cluster(vec![]),
    );
    assert!(e.is_empty(), "{e:?}");
    let e = errors(
        service("s", name, "{caFile: ca.pem}"),
        &Rules::cluster(vec![]),
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with("spec.tls.caFile") && m.contains("set caSecretName")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|m| m.starts_with("spec.tls.caSecretName")),
        "{e:?}"
    );
    let e = errors(
        service(
            "s",
            name,
            "{caSecretName: other/ca, clientCertificate: {certificateFile: c.pem, keyFile: k.pem}}",
        ),
        &Rules::cluster(vec![]),
    );
    for field in [
        "spec.tls.caSecretName",
        "spec.tls.clientCertificate:",
        "spec.tls.clientCertificate.secretName",
    ] {
        assert!(e.iter().any(|m| m.starts_with(field)), "{field}: {e:?}");
    }
}

#[test]
fn sni_and_names_to_verify_default_to_the_destination_host_name() {
    let s = service("s", "api.internal:443", "{caFile: ca.pem}");
    assert!(errors(s.clone(), &Rules::file_mode()).is_empty());
    assert_eq!(s.spec.sni().as_deref(), Some("api.internal"));
    assert_eq!(s.spec.subject_alt_names(), ["api.internal"]);
    let s = service(
        "s",
        "10.0.0.7:443",
        "{caFile: ca.pem, subjectAltNames: ['spiffe://e/x']}",
    );
    assert!(errors(s.clone(), &Rules::file_mode()).is_empty());
    assert_eq!(s.spec.sni(), None, "no SNI for an IP");
    assert_eq!(s.spec.subject_alt_names(), ["spiffe://e/x"]);
}

fn material(ca: bool, client: bool, problem: Option<&str>) -> CertificateState {
    CertificateState {
        trusted_ca: ca.then(|| TrustBundle {
            pem: "CA".into(),
            count: 1,
            fingerprint: "f".repeat(64),
        }),
        serving: client.then(|| Certificate {
            chain_pem: "C".into(),
            key: PrivateKey("K".into()),
            not_after: i64::MAX,
            fingerprint: "e".repeat(64),
            names: vec![],
        }),
        problem: problem.map(str::to_string),
        expiring: None,
    }
}

#[test]
fn a_service_is_served_only_with_its_material_and_keeps_the_last_good() {
    let svc = service(
        "s",
        "api.internal:443",
        "{caFile: ca.pem, clientCertificate: {certificateFile: c, keyFile: k}}",
    );
    let key = ObjectKey::service("t", "s");
    let objects = Objects {
        services: vec![svc.into()],
        ..Default::default()
    };
    let run = |state: Option<CertificateState>| {
        let mut certs = Certificates::new();
        if let Some(s) = state {
            certs.insert(key.clone(), s);
        }
        validate_objects(&objects, &certs, &Rules::file_mode())
    };
    // Nothing loaded, or the CA unreadable: not served, ResolvedRefs says why.
    let o = run(Some(material(
        false,
        true,
        Some("caFile: cannot read ca.pem"),
    )));
    assert!(!o.model.services.contains_key(&key) && o.model.upstream_tls.is_empty());
    let r = o.report(&key).unwrap();
    assert!(
        r.unresolved[0].message.contains("cannot read ca.pem"),
        "{r:?}"
    );
    let o = run(None);
    assert!(!o.model.services.contains_key(&key));
    // The client certificate missing: not served either (never without it).
    let o = run(Some(material(
        true,
        false,
        Some("clientCertificate: key mismatch"),
    )));
    assert!(!o.model.services.contains_key(&key));
    // Good: served with its material.
    let o = run(Some(material(true, true, None)));
    assert!(o.model.services.contains_key(&key));
    assert!(o.model.upstream_tls[&key].client.is_some());
    // A bad rotation over good material: served with the last good, and a warning.
    let o = run(Some(material(
        true,
        true,
        Some("clientCertificate: key mismatch"),
    )));
    assert!(o.model.services.contains_key(&key));
    let w = &o.report(&key).unwrap().warnings;
    assert!(
        w.iter()
            .any(|i| i.message.contains("still using the previous one")),
        "{w:?}"
    );
}
