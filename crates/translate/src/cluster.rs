//! One cluster per Service. IP destinations are fed over EDS (so endpoint changes are
//! EDS-only pushes); a Service with any host-name destination becomes a STRICT_DNS
//! cluster with its endpoints inline, because EDS endpoints must be IP addresses.
//!
//! Every destination is its own locality (region + the destination name as sub-zone),
//! weighted by the destination's weight: Envoy then splits traffic across destinations
//! exactly as declared, and a destination whose health checks fail drops out of the
//! split on its own. Failover destinations are priority 1.
use envoy_types::pb::envoy::config::{
    cluster::v3::{
        Cluster,
        cluster::{ClusterDiscoveryType, DiscoveryType, DnsLookupFamily, EdsClusterConfig},
    },
    core::v3::{Address, Locality, SocketAddress, address, socket_address::PortSpecifier},
    endpoint::v3::{ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint},
};
use portcullis_api::{ObjectKey, Service, validate::parse_address};

use crate::{cluster_policy, proto};

/// `namespace/name`: reads as the Service in Envoy's stats and logs.
pub fn cluster_name(service: &ObjectKey) -> String {
    let mut out = String::new();
    write_cluster_name(&mut out, service);
    out
}

/// [`cluster_name`] into `out` (cleared first), for callers that look up every
/// Service's cluster and reuse one buffer.
pub fn write_cluster_name(out: &mut String, service: &ObjectKey) {
    out.clear();
    out.push_str(&service.namespace);
    out.push('/');
    out.push_str(&service.name);
}

/// Envoy's stat tags end at the first `.` after a cluster, virtual host or route
/// name, so a dotted name (`shop.eu`) would split the metric name and lose the label.
/// Names are RFC 1123 (no `_`), so `_` for `.` cannot collide.
pub fn stat_name(name: &str) -> String {
    name.replace('.', "_")
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
        .any(|a| parse_address(a).is_ok_and(|(_, _, is_ip)| !is_ip));
    let mut cluster = Cluster {
        alt_stat_name: if name.contains('.') {
            stat_name(&name)
        } else {
            String::new()
        },
        name: name.clone(),
        connect_timeout: proto::duration(service.spec.connect_timeout().as_std()),
        ..Default::default()
    };
    cluster_policy::apply(&mut cluster, &service.spec);
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

/// A cluster for one of Portcullis' own gRPC services (authz, ratelimit): HTTP/2,
/// endpoints inline, resolved by DNS when given a host name.
pub fn grpc_cluster(name: &str, addr: &str) -> Cluster {
    use envoy_types::pb::envoy::config::core::v3::Http2ProtocolOptions;
    use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
        HttpProtocolOptions,
        http_protocol_options::{
            ExplicitHttpConfig, UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
        },
    };
    let (host, port, is_ip) = parse_address(addr).unwrap_or((addr.to_owned(), 0, false));
    let discovery = if is_ip {
        DiscoveryType::Static
    } else {
        DiscoveryType::StrictDns
    };
    Cluster {
        name: name.into(),
        connect_timeout: proto::duration(std::time::Duration::from_secs(1)),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(discovery as i32)),
        typed_extension_protocol_options: [(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
            proto::any(&HttpProtocolOptions {
                upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
                    ExplicitHttpConfig {
                        protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                            Http2ProtocolOptions::default(),
                        )),
                    },
                )),
                ..Default::default()
            }),
        )]
        .into(),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(socket_address(&host, port)),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One locality per destination; weight 0 drains a destination.
fn load_assignment(cluster: &str, service: &Service) -> ClusterLoadAssignment {
    let endpoints = service
        .spec
        .destinations
        .iter()
        .filter(|d| d.weight() > 0)
        .filter_map(|d| {
            let (host, port, _) = parse_address(d.address.as_deref()?).ok()?;
            Some(LocalityLbEndpoints {
                locality: Some(Locality {
                    region: d.region.clone().unwrap_or_default(),
                    sub_zone: d.name.clone(),
                    ..Default::default()
                }),
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(socket_address(&host, port)),
                        hostname: d.name.clone(),
                        ..Default::default()
                    })),
                    load_balancing_weight: proto::u32v(d.weight()),
                    ..Default::default()
                }],
                load_balancing_weight: proto::u32v(d.weight()),
                priority: u32::from(d.failover.unwrap_or(false)),
                ..Default::default()
            })
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: cluster.into(),
        endpoints,
        ..Default::default()
    }
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
