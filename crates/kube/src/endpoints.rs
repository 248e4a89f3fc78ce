//! EndpointSlices → addresses of the Kubernetes Services that Portcullis Services
//! reference with `serviceRef: {name, port}`. Pure: the watchers fill the index, this
//! reads it.
//!
//! `serviceRef.port` is the Kubernetes Service port (what `kubectl get svc` shows), not
//! the pod port: the Service's port entry gives the port *name*, and each EndpointSlice
//! lists the pod port under that same name. So the core Service is needed too.
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
};

use k8s_openapi::api::{core::v1::Service as KubeService, discovery::v1::EndpointSlice};
use portcullis_api::{Destination, Model, Service};

/// Label EndpointSlices carry to name the Kubernetes Service they belong to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `(namespace, Kubernetes Service name, Service port)`.
pub type RefKey = (String, String, u16);

/// Ready addresses per referenced Kubernetes Service port, sorted. `Err` says why a
/// reference does not resolve (for the Service's `ResolvedRefs` condition).
pub type ServiceEndpoints = BTreeMap<RefKey, Result<Vec<SocketAddr>, String>>;

/// Ready endpoints of port `port` of `service`, from its EndpointSlices.
pub fn addresses<'a>(
    service: Option<&KubeService>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    namespace: &str,
    name: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, String> {
    let Some(service) = service else {
        return Err(format!(
            "Kubernetes Service {namespace}/{name} does not exist; create it or fix serviceRef.name"
        ));
    };
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    let Some(service_port) = ports.iter().find(|p| p.port == i32::from(port)) else {
        let known: Vec<String> = ports.iter().map(|p| p.port.to_string()).collect();
        return Err(format!(
            "Kubernetes Service {namespace}/{name} has no port {port} (it has [{}]); set serviceRef.port to one of them",
            known.join(", ")
        ));
    };
    let port_name = service_port.name.clone().unwrap_or_default();
    let mut out = Vec::new();
    for slice in slices {
        let owned = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .is_some_and(|n| n == name);
        // FQDN slices carry host names; EDS endpoints must be IPs.
        if !owned || slice.metadata.namespace.as_deref() != Some(namespace) {
            continue;
        }
        if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
            continue;
        }
        let target = slice.ports.iter().flatten().find(|p| {
            p.name.clone().unwrap_or_default() == port_name
                && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
        });
        let Some(target) = target.and_then(|p| p.port) else {
            continue;
        };
        let Ok(target) = u16::try_from(target) else {
            continue;
        };
        for endpoint in slice.endpoints.iter().flatten() {
            let c = endpoint.conditions.as_ref();
            // A missing `ready` means ready (the API's own rule); terminating endpoints
            // are draining and must not get new requests.
            let ready = c.and_then(|c| c.ready).unwrap_or(true);
            let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
            if !ready || terminating {
                continue;
            }
            out.extend(
                endpoint
                    .addresses
                    .iter()
                    .filter_map(|a| a.parse::<IpAddr>().ok())
                    .map(|ip| SocketAddr::new(ip, target)),
            );
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Every `serviceRef` of `services`, resolved.
pub fn resolve<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    kube_services: &BTreeMap<(String, String), KubeService>,
    slices: &BTreeMap<(String, String), EndpointSlice>,
) -> ServiceEndpoints {
    let mut out = ServiceEndpoints::new();
    for svc in services {
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        for d in &svc.spec.destinations {
            let Some(r) = &d.service_ref else { continue };
            let key = (ns.clone(), r.name.clone(), r.port);
            if out.contains_key(&key) {
                continue;
            }
            let in_ns = slices
                .range((ns.clone(), String::new())..)
                .take_while(|((n, _), _)| *n == ns)
                .map(|(_, s)| s);
            let found = addresses(
                kube_services.get(&(ns.clone(), r.name.clone())),
                in_ns,
                &ns,
                &r.name,
                r.port,
            );
            out.insert(key, found);
        }
    }
    out
}

/// Scale of destination weights once `serviceRef`s are expanded: a destination of
/// weight w with n endpoints gives each endpoint w·SCALE/n, so the destination keeps
/// its share of traffic to within 1/SCALE.
const SCALE: u64 = 100;

/// The model with every `serviceRef` destination replaced by one `address`
/// destination per ready endpoint, so today's translator emits them as EDS endpoints.
///
/// Only ClusterLoadAssignments depend on the addresses (the Cluster stays EDS because
/// endpoints are IPs), so endpoint churn changes only the EDS type version: an
/// EDS-only push. Services without `serviceRef` are left untouched, byte for byte.
pub fn expand(model: &Model, endpoints: &ServiceEndpoints) -> Model {
    // Only Services change here: the routing table comes along.
    let mut out = model.copy_for_services();
    for (key, svc) in out.services.iter_mut() {
        if svc
            .spec
            .destinations
            .iter()
            .all(|d| d.service_ref.is_none())
        {
            continue;
        }
        let mut expanded = Vec::new();
        for d in &svc.spec.destinations {
            let Some(r) = &d.service_ref else {
                expanded.push(Destination {
                    weight: Some(scaled(d.weight(), 1)),
                    ..d.clone()
                });
                continue;
            };
            let refkey = (key.namespace.to_string(), r.name.clone(), r.port);
            let addrs = match endpoints.get(&refkey) {
                Some(Ok(a)) => a.as_slice(),
                _ => &[],
            };
            for addr in addrs {
                expanded.push(Destination {
                    // Unique per endpoint: the translator makes one locality per
                    // destination and Envoy rejects duplicate localities.
                    name: format!("{}-{}", d.name, addr).replace([':', '[', ']'], "-"),
                    address: Some(addr.to_string()),
                    service_ref: None,
                    weight: Some(scaled(d.weight(), addrs.len())),
                    region: d.region.clone(),
                    failover: d.failover,
                });
            }
        }
        std::sync::Arc::make_mut(svc).spec.destinations = expanded;
    }
    out
}

fn scaled(weight: u32, n: usize) -> u32 {
    if weight == 0 {
        return 0;
    }
    let w = u64::from(weight) * SCALE / n.max(1) as u64;
    u32::try_from(w.max(1)).unwrap_or(u32::MAX)
}

#[cfg(test)]
#[path = "endpoints_tests.rs"]
mod tests;
