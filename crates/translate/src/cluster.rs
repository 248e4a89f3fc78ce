//! One cluster per Service. IP destinations are fed over EDS (so endpoint changes are
//! EDS-only pushes); a Service with any host-name destination becomes a STRICT_DNS
//! cluster with its endpoints inline, because EDS endpoints must be IP addresses.
use std::collections::BTreeMap;

use envoy_types::pb::envoy::{
    config::{
        cluster::v3::{
            Cluster,
            cluster::{
                ClusterDiscoveryType, DiscoveryType, DnsLookupFamily, EdsClusterConfig, LbPolicy,
            },
        },
        core::v3::{
            Address, Http1ProtocolOptions, Http2ProtocolOptions, Locality, SocketAddress, address,
            socket_address::PortSpecifier,
        },
        endpoint::v3::{
            ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
        },
    },
    extensions::upstreams::http::v3::{
        HttpProtocolOptions,
        http_protocol_options::{
            ExplicitHttpConfig, UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
        },
    },
};
use portcullis_api::{ObjectKey, Protocol, Service};

use crate::proto;

/// `namespace/name`: reads as the Service in Envoy's stats and logs.
pub fn cluster_name(service: &ObjectKey) -> String {
    format!("{}/{}", service.namespace, service.name)
}

pub fn service_cluster(
    key: &ObjectKey,
    service: &Service,
) -> (Cluster, Option<ClusterLoadAssignment>) {
    let name = cluster_name(key);
    let assignment = load_assignment(&name, service);
    let by_dns = service
        .spec
        .destinations
        .iter()
        .filter_map(|d| d.address.as_deref())
        .any(|a| a.parse::<std::net::SocketAddr>().is_err());
    let mut cluster = Cluster {
        name: name.clone(),
        connect_timeout: proto::duration(service.spec.connect_timeout().as_std()),
        lb_policy: LbPolicy::RoundRobin as i32,
        typed_extension_protocol_options: [(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
            proto::any(&protocol_options(service.spec.protocol)),
        )]
        .into(),
        ..Default::default()
    };
    if by_dns {
        cluster.cluster_discovery_type =
            Some(ClusterDiscoveryType::Type(DiscoveryType::StrictDns as i32));
        cluster.dns_lookup_family = DnsLookupFamily::V4Preferred as i32;
        cluster.load_assignment = Some(assignment);
        (cluster, None)
    } else {
        cluster.cluster_discovery_type =
            Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32));
        cluster.eds_cluster_config = Some(EdsClusterConfig {
            eds_config: proto::ads(),
            service_name: String::new(),
        });
        (cluster, Some(assignment))
    }
}

fn protocol_options(protocol: Protocol) -> HttpProtocolOptions {
    let config = match protocol {
        Protocol::Http1 => ProtocolConfig::HttpProtocolOptions(Http1ProtocolOptions::default()),
        Protocol::Http2 => ProtocolConfig::Http2ProtocolOptions(Http2ProtocolOptions::default()),
    };
    HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(config),
            },
        )),
        ..Default::default()
    }
}

/// Destinations grouped into one locality per region; weight 0 drains a destination.
fn load_assignment(cluster: &str, service: &Service) -> ClusterLoadAssignment {
    let mut by_region: BTreeMap<&str, Vec<LbEndpoint>> = BTreeMap::new();
    for d in &service.spec.destinations {
        let (Some(addr), true) = (d.address.as_deref(), d.weight() > 0) else {
            continue;
        };
        let Some((host, port)) = split_address(addr) else {
            continue;
        };
        by_region
            .entry(d.region.as_deref().unwrap_or(""))
            .or_default()
            .push(LbEndpoint {
                host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                    address: Some(socket_address(&host, port)),
                    hostname: d.name.clone(),
                    ..Default::default()
                })),
                load_balancing_weight: proto::u32v(d.weight()),
                ..Default::default()
            });
    }
    ClusterLoadAssignment {
        cluster_name: cluster.into(),
        endpoints: by_region
            .into_iter()
            .map(|(region, lb_endpoints)| LocalityLbEndpoints {
                locality: Some(Locality {
                    region: region.into(),
                    ..Default::default()
                }),
                lb_endpoints,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn split_address(addr: &str) -> Option<(String, u16)> {
    if let Ok(sock) = addr.parse::<std::net::SocketAddr>() {
        return Some((sock.ip().to_string(), sock.port()));
    }
    let (host, port) = addr.rsplit_once(':')?;
    Some((host.to_owned(), port.parse().ok()?))
}

fn socket_address(host: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: host.into(),
            port_specifier: Some(PortSpecifier::PortValue(port.into())),
            ..Default::default()
        })),
    }
}
