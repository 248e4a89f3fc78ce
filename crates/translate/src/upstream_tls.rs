//! TLS from Envoy to a Service's destinations: an UpstreamTlsContext on the cluster
//! (so health checks use it too) that verifies the backend against the Service's
//! trusted CAs and subject alternative names, and presents the Service's client
//! certificate. CA and client certificate arrive over SDS, named per Service so no two
//! tenants' secrets can collide, and never sit inline in the cluster or bootstrap.
use envoy_types::pb::envoy::{
    config::core::v3::{DataSource, TransportSocket, data_source, transport_socket},
    extensions::transport_sockets::tls::v3::{
        CertificateValidationContext, CommonTlsContext, SdsSecretConfig, Secret,
        SubjectAltNameMatcher, TlsCertificate, UpstreamTlsContext,
        common_tls_context::{CombinedCertificateValidationContext, ValidationContextType},
        secret,
        subject_alt_name_matcher::SanType,
    },
    r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern},
};
use portcullis_api::{Model, ObjectKey, Protocol, Service};

use crate::proto;

/// SDS name of a Service's trusted CAs. Host secrets are `host/…`: no overlap.
pub fn ca_secret_name(service: &ObjectKey) -> String {
    format!("service/{}/{}/ca", service.namespace, service.name)
}

/// SDS name of a Service's client certificate.
pub fn client_secret_name(service: &ObjectKey) -> String {
    format!("service/{}/{}/client", service.namespace, service.name)
}

/// The cluster's transport socket, when the Service has TLS material in the model.
pub fn transport_socket(
    model: &Model,
    key: &ObjectKey,
    service: &Service,
) -> Option<TransportSocket> {
    let material = model.upstream_tls.get(key)?;
    service.spec.tls.as_ref()?;
    let sds = |name: String| SdsSecretConfig {
        name,
        sds_config: proto::ads(),
    };
    let sans = service
        .spec
        .subject_alt_names()
        .into_iter()
        .map(|name| {
            // A URI SAN has a scheme; anything else is a DNS name (case-insensitive).
            let uri = name.contains("://");
            SubjectAltNameMatcher {
                san_type: if uri { SanType::Uri } else { SanType::Dns } as i32,
                matcher: Some(StringMatcher {
                    ignore_case: !uri,
                    match_pattern: Some(MatchPattern::Exact(name)),
                }),
                ..Default::default()
            }
        })
        .collect();
    let alpn = match service.spec.protocol {
        Protocol::Http1 => "http/1.1",
        Protocol::Http2 => "h2",
    };
    let context = UpstreamTlsContext {
        sni: service.spec.sni().unwrap_or_default(),
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_sds_secret_configs: material
                .client
                .iter()
                .map(|_| sds(client_secret_name(key)))
                .collect(),
            validation_context_type: Some(ValidationContextType::CombinedValidationContext(
                CombinedCertificateValidationContext {
                    default_validation_context: Some(CertificateValidationContext {
                        match_typed_subject_alt_names: sans,
                        ..Default::default()
                    }),
                    validation_context_sds_secret_config: Some(sds(ca_secret_name(key))),
                    ..Default::default()
                },
            )),
            alpn_protocols: vec![alpn.into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    Some(TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(proto::any(
            &context,
        ))),
    })
}

/// The SDS secrets of every served Service with TLS: its CAs, and its client
/// certificate when it has one.
pub fn secrets(model: &Model) -> Vec<Secret> {
    let inline = |s: &str| {
        Some(DataSource {
            specifier: Some(data_source::Specifier::InlineString(s.to_string())),
            ..Default::default()
        })
    };
    let mut out = Vec::new();
    for (key, material) in &model.upstream_tls {
        if !model.services.contains_key(key) {
            continue;
        }
        out.push(Secret {
            name: ca_secret_name(key),
            r#type: Some(secret::Type::ValidationContext(
                CertificateValidationContext {
                    trusted_ca: inline(&material.trusted_ca.pem),
                    ..Default::default()
                },
            )),
        });
        if let Some(c) = &material.client {
            out.push(Secret {
                name: client_secret_name(key),
                r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                    certificate_chain: inline(&c.chain_pem),
                    private_key: inline(&c.key.0),
                    ..Default::default()
                })),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_api::{
        Certificate, CertificateState, Certificates, Objects, TrustBundle,
        certificate::PrivateKey,
        validate::{Rules, validate_objects},
    };

    fn model() -> Model {
        let objects = Objects::parse(
            "apiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec: {destinations: [{name: d, address: '10.0.0.7:443'}], protocol: http2, tls: {sni: api.internal, caFile: ca.pem, subjectAltNames: [api.internal, 'spiffe://td/ns/a/sa/s'], clientCertificate: {certificateFile: c, keyFile: k}}}\n",
        )
        .unwrap();
        let mut certs = Certificates::new();
        certs.insert(
            ObjectKey::service("a", "s"),
            CertificateState {
                trusted_ca: Some(TrustBundle {
                    pem: "CA-PEM".into(),
                    count: 1,
                    fingerprint: String::new(),
                }),
                serving: Some(Certificate {
                    chain_pem: "CHAIN".into(),
                    key: PrivateKey("KEY".into()),
                    not_after: i64::MAX,
                    fingerprint: String::new(),
                    names: vec![],
                }),
                ..Default::default()
            },
        );
        let o = validate_objects(&objects, &certs, &Rules::file_mode());
        assert!(o.problems().next().is_none(), "{:?}", o.reports);
        o.model
    }

    #[test]
    fn the_incremental_translator_re_encodes_a_cluster_when_only_its_tls_material_changed() {
        // The client certificate goes away (its Secret lost the key) while the
        // Service's spec stays the same: the cluster must stop naming its SDS secret.
        let (options, mut incremental) = (crate::Options::default(), crate::Incremental::new());
        let mut m = model();
        incremental.translate(&m, &options);
        let key = ObjectKey::service("a", "s");
        m.upstream_tls.get_mut(&key).unwrap().client = None;
        let got = incremental.translate(&m, &options);
        let full = crate::translate(&m, &options);
        let want = full.clusters.iter().find(|c| c.name == "a/s").unwrap();
        let (_, got) = got
            .encoded_clusters
            .iter()
            .find(|(n, _)| &**n == "a/s")
            .unwrap();
        assert!(
            *got == prost::Message::encode_to_vec(want),
            "the cluster follows its TLS material"
        );
        assert!(!format!("{want:?}").contains("service/a/s/client"));
    }

    #[test]
    fn the_cluster_verifies_the_backend_and_presents_the_client_certificate_over_sds() {
        let m = model();
        let key = ObjectKey::service("a", "s");
        let socket = transport_socket(&m, &key, &m.services[&key]).unwrap();
        let Some(transport_socket::ConfigType::TypedConfig(any)) = socket.config_type else {
            panic!("typed config")
        };
        let ctx: UpstreamTlsContext = prost::Message::decode(any.value.as_slice()).unwrap();
        assert_eq!(ctx.sni, "api.internal");
        let common = ctx.common_tls_context.unwrap();
        assert_eq!(common.alpn_protocols, ["h2"]);
        assert_eq!(
            common.tls_certificate_sds_secret_configs[0].name,
            "service/a/s/client"
        );
        assert!(common.tls_certificates.is_empty(), "never inline");
        let Some(ValidationContextType::CombinedValidationContext(v)) =
            common.validation_context_type
        else {
            panic!("combined validation context")
        };
        assert_eq!(
            v.validation_context_sds_secret_config.unwrap().name,
            "service/a/s/ca"
        );
        let sans = v
            .default_validation_context
            .unwrap()
            .match_typed_subject_alt_names;
        let got: Vec<(i32, bool)> = sans
            .iter()
            .map(|s| (s.san_type, s.matcher.as_ref().unwrap().ignore_case))
            .collect();
        assert_eq!(
            got,
            [(SanType::Dns as i32, true), (SanType::Uri as i32, false)]
        );
        let names: Vec<String> = secrets(&m).into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["service/a/s/ca", "service/a/s/client"]);
    }
}
