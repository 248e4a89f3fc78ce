//! The routing table as Envoy holds it: one virtual host per host named by a Route, each
//! with every entry that applies to it (its own, wildcard ones that cover it, host-less
//! ones) in that host's precedence order, plus `*` with the host-less entries.
//!
//! Envoy picks one virtual host per request, so a wildcard or host-less Route must be
//! copied into every more specific host it covers. The translator, `explain` and the
//! shadowing rules all read this one table, so they cannot disagree.
use std::collections::BTreeMap;

use crate::{
    Model, RouteEntry,
    precedence::{HostRank, compare_on},
};

/// The catch-all virtual host's domain.
pub const ANY_HOST: &str = "*";

/// One virtual host: its domain and its entries in the order Envoy tries them.
#[derive(Debug)]
pub struct HostTable<'a> {
    pub domain: String,
    pub entries: Vec<&'a RouteEntry>,
}

impl Model {
    /// Every virtual host, named hosts sorted, `*` last. Entries are indexed by host
    /// first, so the cost grows with the table's size, not hosts × Routes.
    pub fn table(&self) -> Vec<HostTable<'_>> {
        let mut named: BTreeMap<&str, Vec<&RouteEntry>> = BTreeMap::new();
        let mut wildcards: Vec<&RouteEntry> = Vec::new();
        let mut anywhere: Vec<&RouteEntry> = Vec::new();
        for e in &self.routes {
            if e.hosts().is_empty() {
                anywhere.push(e);
            }
            for h in e.hosts() {
                named.entry(h.as_str()).or_default().push(e);
            }
            if e.hosts().iter().any(|h| h.starts_with('*')) {
                wildcards.push(e);
            }
        }
        let mut out: Vec<HostTable<'_>> = named
            .into_iter()
            .map(|(domain, own)| {
                let mut entries = own;
                entries.extend(
                    wildcards
                        .iter()
                        .copied()
                        .filter(|w| matches!(HostRank::of(w, domain), HostRank::Wildcard(_))),
                );
                entries.extend(anywhere.iter().copied());
                // A Host owning this domain decides whose copied Routes apply here
                // (a Route naming it was already refused unless admitted).
                // The owner is looked up once per domain, not once per entry.
                let owner = crate::model::owner(&self.hosts, domain);
                entries.retain(|e| {
                    owner
                        .is_none_or(|(key, h)| h.host.spec.admits(&key.namespace, &e.key.namespace))
                });
                sorted(domain, entries)
            })
            .collect();
        out.push(sorted(ANY_HOST, anywhere));
        out
    }

    /// The entries that apply to `domain`, in its precedence order.
    pub fn host_table(&self, domain: &str) -> HostTable<'_> {
        let entries = if domain == ANY_HOST {
            self.routes
                .iter()
                .filter(|e| e.hosts().is_empty())
                .collect()
        } else {
            self.routes
                .iter()
                .filter(|e| HostRank::of(e, domain) != HostRank::None)
                .filter(|e| self.admits(domain, &e.key.namespace))
                .collect()
        };
        sorted(domain, entries)
    }
}

/// The model is already in host-independent order; sorting only moves entries whose
/// rank differs on this host (a wildcard Route below the host's own ones). An entry
/// listed under several of its patterns appears once.
fn sorted<'a>(domain: &str, mut entries: Vec<&'a RouteEntry>) -> HostTable<'a> {
    entries.sort_by(|a, b| compare_on(domain, a, b));
    entries.dedup_by(|a, b| std::ptr::eq(*a, *b));
    HostTable {
        domain: domain.to_string(),
        entries,
    }
}
