//! Incremental translation of the routing: an edit to one Route re-translates and
//! re-encodes only the virtual hosts whose inputs changed, and every RouteConfiguration
//! is assembled from encoded virtual hosts instead of being built, cloned per Host and
//! encoded whole (at 10k Routes that was most of an edit's CPU).
//!
//! A virtual host is a pure function of its domain, its entries (in order), the
//! Services those entries send to, the Host owning the domain (TLS, redirect, HSTS),
//! the Services whose translation failed, and the [`Options`]. [`Incremental`] keeps,
//! per domain, those inputs and the encoding they gave; an equal set of inputs reuses
//! the bytes. The output is byte-for-byte what [`crate::translate`] gives
//! (`incremental_tests.rs` checks it over random edits): protobuf encodes a message's
//! fields in tag order, so a RouteConfiguration is its name field, then each virtual
//! host as field 2, then `validate_clusters`.
//!
//! Each Service's cluster and load assignment are kept the same way, encoded, keyed by
//! the Service and its TLS material (all they are made from).
//!
//! The cost: the previous inputs are kept (an `Arc` per Route and Service, a few small
//! vectors per entry, the encoded clusters) and every build compares them, which is
//! linear in the model but far cheaper than translating and encoding it.
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use envoy_types::pb::envoy::config::route::v3::{
    RouteConfiguration, VirtualHost, virtual_host::TlsRequirementType,
};
use portcullis_api::{
    HostTls, Model, ObjectKey, RouteEntry, Service,
    model::{UpstreamTls, owner},
    table::HostTable,
};
use prost::{Message, bytes::Bytes};

use crate::{
    Options, ROUTE_CONFIG_NAME, host_routes, route,
    tls::{https_route_config_name, with_certificates},
};

/// The memory of the last build; see the module docs.
#[derive(Default)]
pub struct Incremental {
    options: Option<Options>,
    vhosts: HashMap<String, Cached>,
    /// In key order, as the model's Services are: walked beside them, not looked up.
    clusters: Vec<(ObjectKey, CachedCluster)>,
    /// Each RouteConfiguration as last assembled, by name.
    assembled: HashMap<String, Assembled>,
}

/// The Services' clusters and load assignments, encoded, and the Services new, gone or
/// different since the last build (the virtual hosts that send to one are built again).
pub(crate) struct ServiceClusters {
    pub(crate) clusters: crate::Encoded,
    pub(crate) assignments: crate::Encoded,
    pub(crate) changed: HashSet<ObjectKey>,
}

/// A RouteConfiguration's encoding and the virtual hosts it was assembled from, in
/// order. The same virtual hosts (the very same bytes, which a domain whose inputs did
/// not change keeps) give the same RouteConfiguration, so its bytes are handed over
/// again rather than assembled and compared anew (~4 MB per edit at 10k Routes).
struct Assembled {
    parts: Vec<Bytes>,
    bytes: Bytes,
}

/// The same allocation: equal bytes, known without reading them.
fn same_bytes(a: &Bytes, b: &Bytes) -> bool {
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

/// One Service's cluster and load assignment, encoded, with what they were made
/// from: the Service and its TLS material (nothing else of the model is read).
struct CachedCluster {
    service: Arc<Service>,
    tls: Option<UpstreamTls>,
    cluster: (Arc<str>, Bytes),
    assignment: Option<(Arc<str>, Bytes)>,
}

/// One domain's inputs and what they gave.
struct Cached {
    /// Shared with the model the domain was built from.
    entries: Vec<Arc<RouteEntry>>,
    /// The owning Host's TLS settings and whether it has a certificate.
    host: Option<(Option<HostTls>, bool)>,
    failed_services: Vec<ObjectKey>,
    /// The virtual host as field 2 of a RouteConfiguration.
    full: Bytes,
    /// Its plain-HTTP form when every plain request is redirected to HTTPS.
    redirect: Option<Bytes>,
    failed: Vec<(ObjectKey, String)>,
}

/// What `route::virtual_host` reads of the Host owning `domain`: its TLS settings and
/// whether it has a certificate.
fn owner_tls<'a>(model: &'a Model, domain: &str) -> Option<(Option<&'a HostTls>, bool)> {
    owner(&model.hosts, domain).map(|(_, h)| (h.host.spec.tls.as_ref(), h.certificate.is_some()))
}

/// Equal as far as translation reads them: the same allocation (validation keeps an
/// unchanged Route's entries from one model to the next), or the same key and spec
/// (not status or metadata).
fn same_entry(a: &Arc<RouteEntry>, b: &Arc<RouteEntry>) -> bool {
    if Arc::ptr_eq(a, b) {
        return true;
    }
    (Arc::ptr_eq(&a.route, &b.route) || a.route.spec == b.route.spec)
        && a.key == b.key
        && a.path_index == b.path_index
        && a.path == b.path
        && a.methods == b.methods
        && a.headers == b.headers
        && a.backends == b.backends
        && a.timeout == b.timeout
}

/// The same Service as far as translation reads it: the same allocation, or its spec.
fn same_spec(a: &Arc<Service>, b: &Arc<Service>) -> bool {
    Arc::ptr_eq(a, b) || a.spec == b.spec
}

impl Cached {
    /// `changed`: the Services that are new, gone or different since the last build
    /// (every build checks every domain, so a domain kept then read its Services as
    /// they still are unless they are named here).
    fn matches(
        &self,
        table: &HostTable<'_>,
        model: &Model,
        failed_services: &[ObjectKey],
        changed: &HashSet<ObjectKey>,
    ) -> bool {
        self.failed_services == failed_services
            && self.entries.len() == table.entries.len()
            && self
                .entries
                .iter()
                .zip(&table.entries)
                .all(|(a, b)| same_entry(a, b))
            && (changed.is_empty()
                || self
                    .entries
                    .iter()
                    .all(|e| e.backends.iter().all(|(k, _)| !changed.contains(k))))
            && self.host.as_ref().map(|(tls, cert)| (tls.as_ref(), *cert))
                == owner_tls(model, &table.domain)
    }

    fn build(
        table: &HostTable<'_>,
        model: &Model,
        options: &Options,
        failed_services: &[ObjectKey],
    ) -> Self {
        let mut failed = Vec::new();
        let vhost = route::virtual_host(table, model, options, failed_services, &mut failed);
        let redirect = (vhost.require_tls == TlsRequirementType::All as i32)
            .then(|| as_field(&host_routes::redirect_only(vhost.clone())));
        Self {
            entries: table.entries.iter().map(|e| Arc::clone(e)).collect(),
            host: owner_tls(model, &table.domain).map(|(tls, cert)| (tls.cloned(), cert)),
            failed_services: failed_services.to_vec(),
            full: as_field(&vhost),
            redirect,
            failed,
        }
    }
}

/// `vhost` encoded as field 2 (`virtual_hosts`) of a RouteConfiguration.
fn as_field(vhost: &VirtualHost) -> Bytes {
    let mut buf = Vec::with_capacity(vhost.encoded_len() + 8);
    prost::encoding::message::encode(2, vhost, &mut buf);
    Bytes::from(buf)
}

/// A RouteConfiguration named `name` holding `vhosts` (each already a field), encoded.
fn assemble<'a>(name: &str, vhosts: impl Iterator<Item = &'a Bytes> + Clone) -> Vec<u8> {
    let head = RouteConfiguration {
        name: name.into(),
        ..Default::default()
    }
    .encode_to_vec();
    let tail = RouteConfiguration {
        validate_clusters: Some(route::NO_CLUSTER_VALIDATION),
        ..Default::default()
    }
    .encode_to_vec();
    let len = head.len() + tail.len() + vhosts.clone().map(|v| v.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&head);
    for v in vhosts {
        out.extend_from_slice(v);
    }
    out.extend_from_slice(&tail);
    out
}

impl Incremental {
    pub fn new() -> Self {
        Self::default()
    }

    /// As [`crate::translate`], reusing what the last call built where its inputs
    /// are unchanged; the RouteConfigurations and the Services' clusters and load
    /// assignments come back encoded ([`crate::Resources`]' `encoded_*`).
    pub fn translate(&mut self, model: &Model, options: &Options) -> crate::Resources {
        if self.options.as_ref() != Some(options) {
            self.vhosts.clear();
            self.clusters.clear();
            self.assembled.clear();
            self.options = Some(options.clone());
        }
        crate::build(model, options, Some(self))
    }

    /// Every Service's cluster and load assignment, encoded, by name; a Service
    /// whose spec and TLS material are unchanged reuses the last encoding.
    pub(crate) fn service_clusters(
        &mut self,
        model: &Model,
        failed: &mut Vec<(ObjectKey, String)>,
    ) -> ServiceClusters {
        let mut next = Vec::with_capacity(model.services.len());
        let (mut clusters, mut assignments) = (Vec::new(), Vec::new());
        let mut changed = HashSet::new();
        // Both in key order: the last build's entry for a Service is at the walk's
        // front once those removed before it are passed (at 2k Services, hashing every
        // key twice per edit was a visible part of it). Keys are compared for equality
        // first, which the model's shared names answer without reading them.
        let mut previous = std::mem::take(&mut self.clusters).into_iter().peekable();
        for (key, service) in &model.services {
            let mut kept = None;
            while let Some((k, _)) = previous.peek() {
                if k == key {
                    kept = previous.next().map(|(_, c)| c);
                    break;
                }
                if k > key {
                    break;
                }
                // Removed from the model.
                changed.extend(previous.next().map(|(k, _)| k));
            }
            let tls = model.upstream_tls.get(key);
            let cached = match kept {
                Some(c) if same_spec(service, &c.service) && c.tls.as_ref() == tls => c,
                _ => {
                    changed.insert(key.clone());
                    match crate::service_cluster(model, key, service) {
                        Ok((cluster, assignment)) => CachedCluster {
                            service: service.clone(),
                            tls: tls.cloned(),
                            cluster: (cluster.name.as_str().into(), cluster.encode_to_vec().into()),
                            assignment: assignment.map(|a| {
                                (a.cluster_name.as_str().into(), a.encode_to_vec().into())
                            }),
                        },
                        Err(panic) => {
                            failed.push((key.clone(), panic));
                            continue;
                        }
                    }
                }
            };
            clusters.push(cached.cluster.clone());
            assignments.extend(cached.assignment.clone());
            next.push((key.clone(), cached));
        }
        // What is left was removed from the model.
        changed.extend(previous.map(|(k, _)| k));
        self.clusters = next;
        ServiceClusters {
            clusters,
            assignments,
            changed,
        }
    }

    /// Every RouteConfiguration, encoded: the same set and order as
    /// `host_routes::split(route::route_configuration(..))`.
    /// `changed_services`: what [`Incremental::service_clusters`] found changed in
    /// this build.
    pub(crate) fn route_configs(
        &mut self,
        model: &Model,
        options: &Options,
        changed_services: &HashSet<ObjectKey>,
        failed: &mut Vec<(ObjectKey, String)>,
    ) -> crate::Encoded {
        let failed_services: Vec<ObjectKey> = failed.iter().map(|(k, _)| k.clone()).collect();
        let mut next = HashMap::with_capacity(self.vhosts.len());
        let mut order = Vec::new();
        for table in model.table() {
            let cached = match self.vhosts.remove(&table.domain) {
                Some(c) if c.matches(&table, model, &failed_services, changed_services) => c,
                _ => Cached::build(&table, model, options, &failed_services),
            };
            failed.extend(cached.failed.iter().cloned());
            order.push(table.domain.clone());
            next.insert(table.domain, cached);
        }
        self.vhosts = next;
        let vhost = |d: &String| &self.vhosts[d];
        let chains = with_certificates(model);
        let mut out: Vec<(String, Vec<Bytes>)> = Vec::with_capacity(chains.len() + 1);
        if options.https_port.is_none() || chains.is_empty() {
            let parts = order.iter().map(|d| vhost(d).full.clone()).collect();
            out.push((ROUTE_CONFIG_NAME.into(), parts));
        } else {
            let parts = order
                .iter()
                .map(|d| {
                    let c = vhost(d);
                    c.redirect.as_ref().unwrap_or(&c.full).clone()
                })
                .collect();
            out.push((ROUTE_CONFIG_NAME.into(), parts));
            for (key, host) in chains {
                let hostname = &host.host.spec.hostname;
                let reachable = order
                    .iter()
                    .filter(|d| host_routes::reachable(d, hostname))
                    .map(|d| vhost(d).full.clone())
                    .collect();
                out.push((https_route_config_name(key), reachable));
            }
        }
        let mut assembled = HashMap::with_capacity(out.len());
        let encoded = out
            .into_iter()
            .map(|(name, parts)| {
                let kept = self.assembled.remove(&name).filter(|a| {
                    a.parts.len() == parts.len()
                        && a.parts.iter().zip(&parts).all(|(a, b)| same_bytes(a, b))
                });
                let a = kept.unwrap_or_else(|| Assembled {
                    bytes: assemble(&name, parts.iter()).into(),
                    parts,
                });
                let bytes = a.bytes.clone();
                let shared = Arc::from(name.as_str());
                assembled.insert(name, a);
                (shared, bytes)
            })
            .collect();
        self.assembled = assembled;
        encoded
    }
}

#[cfg(test)]
#[path = "incremental_tests.rs"]
mod tests;
