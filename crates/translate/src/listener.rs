//! The HTTP listener: one HTTP connection manager, routes over RDS, edge-safe defaults
//! (Envoy's "configuring Envoy as an edge proxy" guidance: no infinite timeouts, trusted
//! client address, normalized paths, bounded buffers).
use envoy_types::pb::envoy::{
    config::{
        core::v3::{
            Address, Http1ProtocolOptions, Http2ProtocolOptions, HttpProtocolOptions,
            SocketAddress, address, http_protocol_options::HeadersWithUnderscoresAction,
            socket_address::PortSpecifier,
        },
        listener::v3::{Filter, FilterChain, Listener, filter},
    },
    extensions::filters::network::http_connection_manager::v3::{
        HttpConnectionManager, Rds,
        http_connection_manager::{
            CodecType, PathWithEscapedSlashesAction, RouteSpecifier, StripPortMode,
        },
    },
};

use crate::{LISTENER_NAME, Options, ROUTE_CONFIG_NAME, proto};

pub fn http_listener(options: &Options) -> Listener {
    Listener {
        name: LISTENER_NAME.into(),
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: options.listen_address.clone(),
                port_specifier: Some(PortSpecifier::PortValue(options.listen_port.into())),
                ..Default::default()
            })),
        }),
        // Bounds memory per connection; Envoy's default is 1 MiB.
        per_connection_buffer_limit_bytes: proto::u32v(32 * 1024),
        filter_chains: vec![FilterChain {
            filters: vec![hcm_filter(options, "http", ROUTE_CONFIG_NAME)],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The HTTP connection manager as a network filter, routing with the RouteConfiguration
/// `route_config`; `stat_prefix` tells the plain and the TLS listener apart in stats.
pub(crate) fn hcm_filter(options: &Options, stat_prefix: &str, route_config: &str) -> Filter {
    Filter {
        name: "envoy.filters.network.http_connection_manager".into(),
        config_type: Some(filter::ConfigType::TypedConfig(proto::any(
            &connection_manager(options, stat_prefix, route_config),
        ))),
    }
}

/// `address:port` as an Envoy address.
pub(crate) fn socket_address(address: &str, port: u16) -> Option<Address> {
    Some(Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: address.to_string(),
            port_specifier: Some(PortSpecifier::PortValue(port.into())),
            ..Default::default()
        })),
    })
}

fn connection_manager(
    options: &Options,
    stat_prefix: &str,
    route_config: &str,
) -> HttpConnectionManager {
    HttpConnectionManager {
        codec_type: CodecType::Auto as i32,
        stat_prefix: stat_prefix.into(),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: proto::ads(),
            route_config_name: route_config.into(),
        })),
        http_filters: crate::filters::http_filters(options),
        // Envoy is the edge: the peer address is the client, and the client IP is what
        // rate limits key on, so never trust a client-sent X-Forwarded-For.
        use_remote_address: proto::yes(),
        // Every request gets an x-request-id (a client's own is replaced: it is not
        // trusted at the edge), forwarded upstream and returned to the client.
        access_log: options
            .access_log
            .iter()
            .map(|p| crate::access_log::file_access_log(p))
            .chain(
                options
                    .access_log_service
                    .iter()
                    .map(|_| crate::access_log::grpc_access_log(&options.access_log_headers)),
            )
            .collect(),
        generate_request_id: proto::yes(),
        tracing: crate::trace::connection_manager_tracing(options),
        preserve_external_request_id: false,
        always_set_request_id_in_response: true,
        // Host routing ignores ":port" in the Host header.
        strip_port_mode: Some(StripPortMode::StripAnyHostPort(true)),
        normalize_path: proto::yes(),
        merge_slashes: true,
        path_with_escaped_slashes_action: PathWithEscapedSlashesAction::UnescapeAndRedirect as i32,
        // Envoy's defaults are infinite or very long, which lets slow or idle clients
        // hold connections and memory forever at an internet edge; these are bounded.
        request_headers_timeout: proto::secs(10),
        stream_idle_timeout: proto::secs(300),
        common_http_protocol_options: Some(HttpProtocolOptions {
            idle_timeout: proto::secs(3600),
            headers_with_underscores_action: HeadersWithUnderscoresAction::RejectRequest as i32,
            ..Default::default()
        }),
        http_protocol_options: Some(Http1ProtocolOptions::default()),
        http2_protocol_options: Some(Http2ProtocolOptions {
            max_concurrent_streams: proto::u32v(100),
            initial_stream_window_size: proto::u32v(64 * 1024),
            initial_connection_window_size: proto::u32v(1024 * 1024),
            ..Default::default()
        }),
        ..Default::default()
    }
}
