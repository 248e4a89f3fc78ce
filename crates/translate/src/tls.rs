//! HTTPS at the edge: one TLS listener with a filter chain per Host certificate, chosen
//! by SNI, and a default chain for clients that send no (or an unknown) SNI. The
//! certificates reach Envoy over SDS on the same ADS stream, so a rotated certificate
//! is served without a restart and no private key is ever written into a bootstrap.
use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source};
use envoy_types::pb::envoy::{
    config::{
        core::v3::{TransportSocket, transport_socket},
        listener::v3::{FilterChain, FilterChainMatch, Listener},
    },
    extensions::transport_sockets::tls::v3::{
        CommonTlsContext, DownstreamTlsContext, SdsSecretConfig, Secret, TlsCertificate,
        TlsParameters, secret, tls_parameters::TlsProtocol,
    },
};
use portcullis_api::{Model, ObjectKey, model::ServedHost};

use crate::{Options, listener, proto};

/// Name of the TLS listener.
pub const HTTPS_LISTENER_NAME: &str = "https";

/// The SDS secret name of a Host's certificate.
pub fn secret_name(host: &ObjectKey) -> String {
    format!("host/{}/{}", host.namespace, host.name)
}

/// The RouteConfiguration of the HTTPS filter chain of `host` (host_routes.rs).
pub fn https_route_config_name(host: &ObjectKey) -> String {
    format!("https/{}/{}", host.namespace, host.name)
}

/// Hosts with a certificate to serve, oldest first (the first is the default for
/// clients without SNI unless `options.default_host` names another).
pub(crate) fn with_certificates(model: &Model) -> Vec<(&ObjectKey, &ServedHost)> {
    let mut hosts: Vec<(&ObjectKey, &ServedHost)> = model
        .hosts
        .iter()
        .filter(|(_, h)| h.certificate.is_some() && h.host.spec.tls.is_some())
        .collect();
    hosts.sort_by(|a, b| {
        portcullis_api::precedence::age_order(&a.1.host.metadata, &b.1.host.metadata)
            .then_with(|| a.0.cmp(b.0))
    });
    hosts
}

/// The TLS listener, when at least one Host has a certificate (a listener without
/// filter chains is refused by Envoy).
pub fn https_listener(model: &Model, options: &Options) -> Option<Listener> {
    let port = options.https_port?;
    let hosts = with_certificates(model);
    let default = hosts
        .iter()
        .find(|(k, _)| {
            options.default_host.as_deref() == Some(&format!("{}/{}", k.namespace, k.name))
        })
        .or(hosts.first())?;
    // Each chain routes with its Host's own RouteConfiguration (host_routes.rs); clients
    // without SNI get the default Host's.
    let chain = |key: &ObjectKey, host: &ServedHost, sni: Option<&str>| FilterChain {
        name: secret_name(key),
        filter_chain_match: sni.map(|s| FilterChainMatch {
            server_names: vec![s.to_string()],
            ..Default::default()
        }),
        transport_socket: Some(downstream(key, host)),
        filters: vec![listener::hcm_filter(
            options,
            "https",
            &https_route_config_name(key),
        )],
        ..Default::default()
    };
    Some(Listener {
        name: HTTPS_LISTENER_NAME.into(),
        address: listener::socket_address(&options.listen_address, port),
        per_connection_buffer_limit_bytes: proto::u32v(32 * 1024),
        filter_chains: hosts
            .iter()
            .map(|(k, h)| chain(k, h, Some(&h.host.spec.hostname)))
            .collect(),
        default_filter_chain: Some(chain(default.0, default.1, None)),
        listener_filters: vec![tls_inspector()],
        ..Default::default()
    })
}

fn tls_inspector() -> envoy_types::pb::envoy::config::listener::v3::ListenerFilter {
    use envoy_types::pb::envoy::{
        config::listener::v3::{ListenerFilter, listener_filter},
        extensions::filters::listener::tls_inspector::v3::TlsInspector,
    };
    ListenerFilter {
        name: "envoy.filters.listener.tls_inspector".into(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(proto::any(
            &TlsInspector::default(),
        ))),
        ..Default::default()
    }
}

fn downstream(key: &ObjectKey, host: &ServedHost) -> TransportSocket {
    let tls = host.host.spec.tls.clone().unwrap_or_default();
    let min = if tls.min_version() == "1.3" {
        TlsProtocol::TlSv13
    } else {
        TlsProtocol::TlSv12
    };
    let context = DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_params: Some(TlsParameters {
                tls_minimum_protocol_version: min as i32,
                tls_maximum_protocol_version: TlsProtocol::TlSv13 as i32,
                ..Default::default()
            }),
            tls_certificate_sds_secret_configs: vec![SdsSecretConfig {
                name: secret_name(key),
                sds_config: proto::ads(),
            }],
            alpn_protocols: tls.alpn(),
            ..Default::default()
        }),
        ..Default::default()
    };
    TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(proto::any(
            &context,
        ))),
    }
}

/// One SDS secret per Host certificate.
pub fn secrets(model: &Model) -> Vec<Secret> {
    with_certificates(model)
        .into_iter()
        .filter_map(|(key, host)| {
            let cert = host.certificate.as_ref()?;
            let inline = |s: &str| {
                Some(DataSource {
                    specifier: Some(data_source::Specifier::InlineString(s.to_string())),
                    ..Default::default()
                })
            };
            Some(Secret {
                name: secret_name(key),
                r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
                    certificate_chain: inline(&cert.chain_pem),
                    private_key: inline(&cert.key.0),
                    ..Default::default()
                })),
            })
        })
        .collect()
}
