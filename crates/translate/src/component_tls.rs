//! mTLS from Envoy to Portcullis' own gRPC services (authz, ratelimit, accesslog). The
//! client certificate and the CA are static secrets of Envoy's bootstrap, referred to
//! by name: each Envoy presents its own certificate, and no key passes through xDS.
use envoy_types::pb::envoy::{
    config::core::v3::{TransportSocket, transport_socket},
    extensions::transport_sockets::tls::v3::{
        CommonTlsContext, SdsSecretConfig, UpstreamTlsContext,
        common_tls_context::ValidationContextType,
    },
};
use portcullis_contract::mtls::{CLIENT_CERT_SECRET, SERVER_CA_SECRET};

use crate::proto;

/// The transport socket of a cluster to a Portcullis service at `addr` (`host:port`);
/// a host name is sent as SNI.
pub fn upstream(addr: &str) -> TransportSocket {
    let (host, _, is_ip) =
        portcullis_api::validate::parse_address(addr).unwrap_or((addr.to_owned(), 0, true));
    let by_name = |name: &str| SdsSecretConfig {
        name: name.into(),
        sds_config: None,
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
