//! mTLS from Envoy to Portcullis' own gRPC services (authz, ratelimit, accesslog). The
//! client certificate and the CA are static secrets of Envoy's bootstrap, referred to
//! by name: each Envoy presents its own certificate, and no key passes through xDS.
//! With an SDS directory they are path-based SDS files instead (see
//! [`portcullis_contract::mtls::sds_file`]), which Envoy re-reads when the certificate
//! files are replaced.
use envoy_types::pb::envoy::{
    config::core::v3::{
        ApiVersion, ConfigSource, PathConfigSource, TransportSocket, config_source,
        transport_socket,
    },
    extensions::transport_sockets::tls::v3::{
        CommonTlsContext, SdsSecretConfig, UpstreamTlsContext,
        common_tls_context::ValidationContextType,
    },
};
use portcullis_contract::mtls::{CLIENT_CERT_SECRET, SERVER_CA_SECRET, sds_file};

use crate::proto;

/// The transport socket of a cluster to a Portcullis service at `addr` (`host:port`);
/// a host name is sent as SNI. `sds_dir`: where Envoy's path-based SDS files are.
pub fn upstream(addr: &str, sds_dir: Option<&str>) -> TransportSocket {
    let (host, _, is_ip) =
        portcullis_api::validate::parse_address(addr).unwrap_or((addr.to_owned(), 0, true));
    let by_name = |name: &str| SdsSecretConfig {
        name: name.into(),
        sds_config: sds_dir.map(|dir| ConfigSource {
            resource_api_version: ApiVersion::V3 as i32,
            config_source_specifier: Some(config_source::ConfigSourceSpecifier::PathConfigSource(
                PathConfigSource {
                    path: sds_file(dir, name),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }),
    };
    let context = UpstreamTlsContext {
        sni: if is_ip { String::new() } else { host },
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![by_name(CLIENT_CERT_SECRET)],
            validation_context_type: Some(ValidationContextType::ValidationContextSdsSecretConfig(
                by_name(SERVER_CA_SECRET),
            )),
            alpn_protocols: vec!["h2".into()],
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
