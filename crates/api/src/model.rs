//! The validated model: accepted Services and the served Route entries in precedence
//! order ([`crate::precedence`]). Built only by `validate::validate`; the translator reads it.
use std::{collections::BTreeMap, fmt, sync::Arc};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::{Certificate, Duration, HeaderMatch, Host, PathMatch, Route, Service};

/// `Kind namespace/name`: identifies an object in messages, maps and reports.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: &'static str,
    pub namespace: Name,
    pub name: Name,
}

impl ObjectKey {
    pub fn new(kind: &'static str, meta: &ObjectMeta) -> Self {
        Self {
            kind,
            namespace: meta.namespace.as_deref().unwrap_or("default").into(),
            name: meta.name.as_deref().unwrap_or_default().into(),
        }
    }

    pub fn service(namespace: &str, name: &str) -> Self {
        Self {
            kind: "Service",
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    pub fn route(namespace: &str, name: &str) -> Self {
        Self {
            kind: "Route",
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

/// A namespace or name in an [`ObjectKey`]. Shared rather than owned: every reconcile
/// copies each key into reports, entries and maps, and at 10k Routes allocating those
/// copies was a visible part of each edit. Compares, hashes and orders as its text.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Name(Arc<str>);

impl Name {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Self {
        Self(s.into())
    }
}

impl From<String> for Name {
    fn from(s: String) -> Self {
        Self(s.into())
    }
}

impl From<&String> for Name {
    fn from(s: &String) -> Self {
        Self(s.as_str().into())
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One served match of a Route: a Route with three paths becomes three entries, so the
/// whole table can be sorted by the precedence rules.
#[derive(Clone, Debug)]
pub struct RouteEntry {
    pub route: Arc<Route>,
    pub key: ObjectKey,
    /// Index of `path` in the Route's `match.paths`; keeps names of Envoy routes stable.
    pub path_index: usize,
    pub path: PathMatch,
    /// Upper-cased, sorted, deduplicated.
    pub methods: Vec<String>,
    /// Lower-cased names, sorted.
    pub headers: Vec<HeaderMatch>,
    /// Service and weight, in the Route's order.
    pub backends: Vec<(ObjectKey, u32)>,
    /// Effective request timeout: the Route's, else the longest of its Services'.
    pub timeout: Duration,
}

impl RouteEntry {
    pub fn hosts(&self) -> &[String] {
        &self.route.spec.hosts
    }

    /// `(is_exact, path)`.
    pub fn path_parts(&self) -> (bool, &str) {
        match (&self.path.exact, &self.path.prefix) {
            (Some(p), _) => (true, p),
            (None, Some(p)) => (false, p),
            (None, None) => (false, "/"),
        }
    }
}

/// A Host that owns its hostname, with the certificate to serve (when it has TLS and a
/// good certificate is loaded).
#[derive(Clone, Debug)]
pub struct ServedHost {
    pub host: Host,
    pub certificate: Option<Certificate>,
}

/// The TLS material of a Service with `spec.tls`, checked by the control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamTls {
    pub trusted_ca: crate::TrustBundle,
    /// Present when the Service sets `tls.clientCertificate`.
    pub client: Option<Certificate>,
}

/// What gets served.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// Accepted Services.
    pub services: BTreeMap<ObjectKey, Arc<Service>>,
    /// Entries of accepted, unconflicted Routes, in precedence order.
    pub routes: Vec<Arc<RouteEntry>>,
    /// Accepted Hosts, one per hostname.
    pub hosts: BTreeMap<ObjectKey, ServedHost>,
    /// TLS material of accepted Services that set `spec.tls`.
    pub upstream_tls: BTreeMap<ObjectKey, UpstreamTls>,
    /// [`Model::table`], once built: `routes` and `hosts` are not changed after
    /// validation makes the model.
    pub(crate) table_cache: crate::table::TableCache,
}

impl Model {
    /// Every host named by a served Route, sorted.
    pub fn route_hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self
            .routes
            .iter()
            .flat_map(|r| r.hosts().iter().cloned())
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }
}

/// The Host that owns `hostname`: one with exactly that hostname, else the one whose
/// wildcard covers it with the longest suffix.
pub fn owner<'a>(
    hosts: &'a BTreeMap<ObjectKey, ServedHost>,
    hostname: &str,
) -> Option<(&'a ObjectKey, &'a ServedHost)> {
    hosts
        .iter()
        .find(|(_, h)| h.host.spec.hostname == hostname)
        .or_else(|| {
            hosts
                .iter()
                .filter(|(_, h)| {
                    h.host.spec.hostname.starts_with('*')
                        && crate::precedence::covers(&h.host.spec.hostname, hostname)
                })
                .max_by_key(|(_, h)| h.host.spec.hostname.len())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_orders_hashes_and_compares_as_its_text() {
        let names: Vec<Name> = ["b", "a", "B", ""].into_iter().map(Name::from).collect();
        let mut sorted = names.clone();
        sorted.sort();
        let mut texts: Vec<&str> = names.iter().map(Name::as_str).collect();
        texts.sort();
        assert_eq!(sorted.iter().map(Name::as_str).collect::<Vec<_>>(), texts);
        // Maps keyed by names are looked up by text, without building a Name.
        let set: std::collections::HashSet<Name> = names.iter().cloned().collect();
        assert!(set.contains("B") && !set.contains("c"));
        assert_eq!(Name::from("x"), "x");
        assert_eq!(
            format!("{} {:?}", Name::from("a\"b"), Name::from("a\"b")),
            "a\"b \"a\\\"b\""
        );
        let a = ObjectKey::route("team", "r");
        assert_eq!(a.clone(), a);
        assert!(ObjectKey::route("team", "a") < ObjectKey::route("team", "b"));
    }
}
