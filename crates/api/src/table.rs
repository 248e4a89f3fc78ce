//! The routing table as Envoy holds it: one virtual host per host named by a Route, each
//! with every entry that applies to it (its own, wildcard ones that cover it, host-less
//! ones) in that host's precedence order, plus `*` with the host-less entries.
//!
//! Envoy picks one virtual host per request, so a wildcard or host-less Route must be
//! copied into every more specific host it covers. The translator, `explain` and the
//! shadowing rules all read this one table, so they cannot disagree.
use std::sync::{Arc, OnceLock};

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
    pub entries: Vec<&'a Arc<RouteEntry>>,
}

/// The table as positions in [`Model::routes`], built once per model: validation's
/// shadowing rules, the translator and the console all read it, and at 10k Routes each
/// build was a few milliseconds of every edit. Stamped with the address and length of
/// the entries it indexes, so a model whose entries were replaced builds afresh.
/// Shared (`Arc`) so that the validation memo can keep the last model's table to
/// patch the next from, without building it or copying it.
#[derive(Default)]
pub struct TableCache(Arc<OnceLock<(Stamp, Positions)>>);

/// A model's table as the memo keeps it: built by then, or not.
pub(crate) type SharedTable = Arc<OnceLock<(Stamp, Positions)>>;

/// The address and length of the entries a table was built from.
pub(crate) type Stamp = (usize, usize);

/// Each virtual host's domain and the positions of its entries, in order.
pub(crate) type Positions = Vec<(String, Vec<usize>)>;

mod patch;
pub(crate) use patch::{Moves, plain_hosts};

/// A copied model's entries live elsewhere: it builds its own table.
impl Clone for TableCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for TableCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Whether it was built yet says nothing about the model.
        f.write_str("TableCache")
    }
}

impl Model {
    /// Every virtual host, named hosts sorted, `*` last. Entries are indexed by host
    /// first, so the cost grows with the table's size, not hosts × Routes.
    pub fn table(&self) -> Vec<HostTable<'_>> {
        let fresh;
        let positions = match self.positions() {
            Some(p) => p,
            None => {
                fresh = self.table_positions();
                &fresh
            }
        };
        positions
            .iter()
            .map(|(domain, at)| self.host_table_at(domain.clone(), at))
            .collect()
    }

    /// The table's positions, built on the first call (`None` when the entries were
    /// replaced since).
    fn positions(&self) -> Option<&Positions> {
        let stamp = (self.routes.as_ptr() as usize, self.routes.len());
        let (built, positions) = self
            .table_cache
            .0
            .get_or_init(|| (stamp, self.table_positions()));
        (*built == stamp).then_some(positions)
    }

    /// A copy in which only Services (and their TLS) will change, never `routes` or
    /// `hosts`: it keeps this model's table instead of building its own (the
    /// controller copies each model to put endpoints in; a build per copy was ~2 ms
    /// of an edit at 10k Routes).
    pub fn copy_for_services(&self) -> Model {
        let copy = self.clone();
        // Built (or patched) on this model, not only on the copy: the validation memo
        // patches the next model's table from this one's.
        if let Some(positions) = self.positions() {
            copy.keep_positions(positions.clone());
        }
        copy
    }

    /// The positions of the table kept with this model, if one was built.
    #[cfg(test)]
    fn kept_positions(&self) -> Option<&Positions> {
        let stamp = (self.routes.as_ptr() as usize, self.routes.len());
        let (built, positions) = self.table_cache.0.get()?;
        (*built == stamp).then_some(positions)
    }

    /// This model's table, shared: whoever builds it first builds it for the holder.
    pub(crate) fn shared_table(&self) -> SharedTable {
        Arc::clone(&self.table_cache.0)
    }

    /// Keeps `positions` as this model's table, unless one is kept already.
    pub(crate) fn keep_positions(&self, positions: Positions) {
        let stamp = (self.routes.as_ptr() as usize, self.routes.len());
        let _ = self.table_cache.0.set((stamp, positions));
    }

    /// The table built afresh, bypassing the kept one (for tests).
    #[cfg(test)]
    fn table_positions_as_tables(&self) -> Vec<HostTable<'_>> {
        self.table_positions()
            .into_iter()
            .map(|(domain, at)| self.host_table_at(domain, &at))
            .collect()
    }

    fn host_table_at(&self, domain: String, at: &[usize]) -> HostTable<'_> {
        HostTable {
            domain,
            entries: at.iter().map(|&i| &self.routes[i]).collect(),
        }
    }

    /// Whether an entry copied onto `domain` applies there: a Host owning the domain
    /// decides whose Routes it admits (a Route naming it was already refused unless
    /// admitted). The owner is looked up once per domain, not once per entry.
    fn admission(&self, domain: &str) -> impl Fn(&RouteEntry) -> bool + '_ {
        let owner = crate::model::owner(&self.hosts, domain);
        move |e| owner.is_none_or(|(key, h)| h.host.spec.admits(&key.namespace, &e.key.namespace))
    }

    fn table_positions(&self) -> Positions {
        // Hashed while filling (an entry per Route), sorted once per hostname after.
        let mut named: foldhash::HashMap<&str, Vec<usize>> = foldhash::HashMap::default();
        let mut wildcards: Vec<usize> = Vec::new();
        let mut anywhere: Vec<usize> = Vec::new();
        for (i, e) in self.routes.iter().enumerate() {
            if e.hosts().is_empty() {
                anywhere.push(i);
            }
            for h in e.hosts() {
                named.entry(h.as_str()).or_default().push(i);
            }
            if e.hosts().iter().any(|h| h.starts_with('*')) {
                wildcards.push(i);
            }
        }
        let mut named: Vec<(&str, Vec<usize>)> = named.into_iter().collect();
        named.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut out: Positions = named
            .into_iter()
            .map(|(domain, own)| {
                let mut entries = own;
                let named_here = entries.len();
                entries.extend(wildcards.iter().copied().filter(|&w| {
                    matches!(HostRank::of(&self.routes[w], domain), HostRank::Wildcard(_))
                }));
                entries.extend(anywhere.iter().copied());
                // Only entries naming this (non-wildcard) domain: each ranks Exact here
                // as in the model's order, which they keep (pushed in model order).
                let in_model_order = entries.len() == named_here && !domain.starts_with('*');
                let admitted = self.admission(domain);
                entries.retain(|&e| admitted(&self.routes[e]));
                let entries = if in_model_order {
                    entries.dedup();
                    debug_assert!(entries.is_sorted_by(|&a, &b| {
                        compare_on(domain, &self.routes[a], &self.routes[b]).is_le()
                    }));
                    entries
                } else {
                    self.sorted(domain, entries)
                };
                (domain.to_string(), entries)
            })
            .collect();
        out.push((ANY_HOST.to_string(), self.sorted(ANY_HOST, anywhere)));
        out
    }

    /// The model is already in host-independent order; sorting only moves entries
    /// whose rank differs on this host (a wildcard Route below the host's own ones).
    /// An entry listed under several of its patterns appears once.
    fn sorted(&self, domain: &str, mut at: Vec<usize>) -> Vec<usize> {
        at.sort_by(|&a, &b| compare_on(domain, &self.routes[a], &self.routes[b]));
        at.dedup();
        at
    }

    /// The entries that apply to `domain`, in its precedence order.
    pub fn host_table(&self, domain: &str) -> HostTable<'_> {
        let admitted = self.admission(domain);
        let at = (0..self.routes.len())
            .filter(|&i| {
                let e = &self.routes[i];
                if domain == ANY_HOST {
                    e.hosts().is_empty()
                } else {
                    HostRank::of(e, domain) != HostRank::None && admitted(e)
                }
            })
            .collect();
        self.host_table_at(domain.to_string(), &self.sorted(domain, at))
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        PathMatch,
        validate::{
            tests::{mk_route, mk_service},
            validate,
        },
    };

    fn text(tables: &[super::HostTable<'_>]) -> Vec<(String, Vec<String>)> {
        tables
            .iter()
            .map(|t| {
                let entries = t
                    .entries
                    .iter()
                    .map(|e| format!("{}/{}", e.key.name, e.path_index))
                    .collect();
                (t.domain.clone(), entries)
            })
            .collect()
    }

    #[test]
    fn every_kept_host_table_is_the_one_sorted_for_that_host() {
        // Named hosts kept in the model's order, and a wildcard domain named beside an
        // exact host (which the model ranks by the exact one).
        let mut routes = Vec::new();
        for i in 0..24usize {
            let paths = vec![
                PathMatch::prefix(&format!("/p{}", "x".repeat(i % 5))),
                PathMatch::exact(&format!("/e{i}")),
            ];
            let mut r = mk_route(&format!("r{i:02}"), (i % 4) as i64, paths);
            // No host-less Route: one would join every table and force its sort.
            r.spec.hosts = match i % 6 {
                0 | 1 => vec!["*.example.com".into()],
                2 => vec!["*.example.com".into(), "b.example.org".into()],
                _ => vec![format!("h{}.example.org", i % 3)],
            };
            if i % 3 == 0 {
                r.spec.match_.methods = vec!["GET".into()];
            }
            routes.push(r);
        }
        let model = validate(&routes, &[mk_service("svc")]).model;
        let tables = model.table();
        assert!(tables.len() >= 4, "{:?}", text(&tables));
        for t in &tables {
            let sorted = model.host_table(&t.domain);
            assert_eq!(
                text(std::slice::from_ref(t)),
                text(&[sorted]),
                "{}",
                t.domain
            );
        }
    }

    #[test]
    fn the_kept_table_is_the_built_one_and_follows_replaced_entries() {
        let host_less = mk_route("any", 0, vec![PathMatch::prefix("/")]);
        let mut wild = mk_route("wild", 1, vec![PathMatch::prefix("/w")]);
        wild.spec.hosts = vec!["*.example.com".into()];
        let mut own = mk_route(
            "own",
            2,
            vec![PathMatch::prefix("/o"), PathMatch::exact("/e")],
        );
        own.spec.hosts = vec!["api.example.com".into()];
        let mut model = validate(&[host_less, wild, own], &[mk_service("svc")]).model;
        let first = text(&model.table());
        assert_eq!(first, text(&model.table()), "read twice");
        assert_eq!(first, text(&model.table_positions_as_tables()));
        assert!(first.len() >= 3, "{first:?}");
        let copy = model.clone();
        assert!(
            copy.kept_positions().is_none(),
            "a copy may change its entries"
        );
        assert_eq!(text(&copy.table()), first, "a copy builds the same table");
        let for_services = model.copy_for_services();
        assert!(
            for_services.kept_positions().is_some(),
            "the table came along"
        );
        assert_eq!(text(&for_services.table()), first);
        // Entries replaced after the table was kept: it is built again, not misread.
        let removed = model.routes.pop().unwrap();
        let after = text(&model.table());
        let gone = format!("{}/{}", removed.key.name, removed.path_index);
        assert!(after.iter().all(|(_, e)| !e.contains(&gone)), "{after:?}");
        assert_eq!(after, text(&model.table_positions_as_tables()));
    }
}
