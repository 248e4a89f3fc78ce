//! The served Routes' entries in precedence order, kept from one validation to the
//! next: an edit to one of 10k Routes builds and places that Route's entries and keeps
//! every other entry (the same allocation, shared with the model), instead of building,
//! sorting and dropping all of them (a third of an edit's instructions).
//!
//! An entry is made from its Route, the Route's key and the accepted Services its
//! backends name. As in [`super::Memo`], identity decides: the entries of the very
//! same Route allocation are kept, and any change to the accepted Services (a new,
//! changed or removed one) builds every entry again. The result is the full sort's:
//! [`precedence`] is a total order on served entries (its last step compares Route key
//! and path index, and a key is served once), so merging new entries into the kept
//! ones gives what sorting everything gives.
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use foldhash::{HashSet, HashSetExt};

use crate::precedence::{PrecedenceKey, precedence, precedence_key};
use crate::table::{Moves, SharedTable, Stamp};
use crate::{ObjectKey, Route, RouteEntry, Service};

type Keyed = (PrecedenceKey, Arc<RouteEntry>);

/// The entries of the last validation and what they were made from.
#[derive(Default)]
pub(crate) struct KeptEntries {
    /// The accepted Services, in key order.
    services: Vec<Arc<Service>>,
    /// The served Routes, with their keys.
    routes: Vec<(ObjectKey, Arc<Route>)>,
    /// Their entries, in precedence order, each beside its [`precedence_key`].
    sorted: Vec<Keyed>,
    /// How the last call's list became this one's, for patching the routing table.
    pub(super) moves: Option<Moves>,
    /// The last model's routing table, and the Hosts that admitted its entries.
    pub(super) table: Option<KeptTable>,
    /// How many tables were patched (for tests that must see patches happen).
    #[cfg(test)]
    pub(crate) patched: usize,
}

/// The memo's stamp of the last model's Hosts ([`super::memo::Admission`]: equal
/// stamps, equal owners and admission), the address and length of its entries, and
/// its table (once someone built it).
pub(super) type KeptTable = (u64, Stamp, SharedTable);

/// Each key compared once, then [`precedence`] (which reads the entries) only on ties.
fn order(a: &Keyed, b: &Keyed) -> Ordering {
    a.0.cmp(&b.0).then_with(|| precedence(&a.1, &b.1))
}

impl KeptEntries {
    /// The entries of `served` (the served Routes with their keys, usually in key
    /// order), in precedence order; `build` adds one Route's entries to a list. Keeps
    /// what this call made for the next one.
    pub(super) fn update(
        &mut self,
        accepted: &BTreeMap<ObjectKey, Arc<Service>>,
        served: &[(&ObjectKey, &Arc<Route>)],
        build: impl Fn(&ObjectKey, &Arc<Route>, &mut Vec<RouteEntry>),
    ) -> Vec<Arc<RouteEntry>> {
        // Taken out while it is worked on: should anything below panic, the next
        // call finds nothing kept and builds everything.
        let mut last = std::mem::take(self);
        // Moves not taken: the last list's table was never made, so the one kept
        // is older than the moves (a panic between the two calls, say).
        let table = last.table.take().filter(|_| last.moves.is_none());
        let last_len = last.sorted.len();
        #[cfg(test)]
        let patched = last.patched;
        let (kept, kept_from, added, gone_hosts, routes) = if last.same_services(accepted) {
            last.unchanged(served)
        } else {
            let routes = served
                .iter()
                .map(|&(k, r)| (k.clone(), Arc::clone(r)))
                .collect();
            let added = (0..served.len()).collect();
            (Vec::new(), Vec::new(), added, None, routes)
        };
        let mut built = Vec::new();
        for &i in &added {
            let (key, route) = served[i];
            build(key, route, &mut built);
        }
        let mut new: Vec<Keyed> = built
            .into_iter()
            .map(|e| (precedence_key(&e), Arc::new(e)))
            .collect();
        new.sort_unstable_by(order);
        let (sorted, kept_at, new_at) = merged(kept, new);
        let mut remap = vec![None; last_len];
        for (&from, &to) in kept_from.iter().zip(&kept_at) {
            remap[from] = Some(to);
        }
        let moves = gone_hosts.map(|gone_hosts| Moves {
            remap,
            added: new_at,
            gone_hosts,
        });
        let entries = sorted.iter().map(|(_, e)| Arc::clone(e)).collect();
        *self = KeptEntries {
            moves,
            table,
            #[cfg(test)]
            patched,
            services: accepted.values().cloned().collect(),
            routes,
            sorted,
        };
        entries
    }

    /// Gives `model` (made from the last [`KeptEntries::update`]'s entries) its
    /// routing table, patched from the last model's when that was built and can be
    /// patched, and keeps a handle on it for the next. Builds nothing: a model whose
    /// table no one reads (a webhook's check) costs no table. `hosts`: the memo's
    /// stamp of the model's Hosts (`None` without a memo: nothing is patched).
    pub(super) fn table(&mut self, model: &crate::Model, hosts: Option<u64>) {
        let moves = self.moves.take();
        // A table built from entries other than the ones the moves start from (the
        // model's changed since validation) is not patched.
        if let (Some(moves), Some(hosts), Some((last_hosts, stamp, last))) =
            (moves, hosts, self.table.take())
            && last_hosts == hosts
            && let Some((built, last)) = last.get()
            && *built == stamp
            && let Some(patched) = model.patched_positions(last, &moves)
        {
            model.keep_positions(patched);
            #[cfg(test)]
            {
                self.patched += 1;
            }
        }
        let stamp = (model.routes.as_ptr() as usize, model.routes.len());
        self.table = hosts.map(|hosts| (hosts, stamp, model.shared_table()));
    }

    /// The entries of Routes still served as they were (not changed, deleted or
    /// refused since) with their positions in the last list, the positions in
    /// `served` of the Routes whose entries need building, and the hostnames the
    /// entries no longer kept named (`None` when one named a wildcard or no host).
    /// Both lists are walked side by side by key: in key order (as sources hand
    /// Routes over) each Route is looked at once. Out of order the walk only keeps
    /// less: a Route's entries are kept only beside its very own allocation.
    fn unchanged(self, served: &[(&ObjectKey, &Arc<Route>)]) -> Unchanged {
        let mut gone: HashSet<*const Route> = HashSet::new();
        let mut added = Vec::new();
        // The served Routes with their keys for the next call: an unchanged one moves
        // its kept key over instead of cloning it (10k keys built and dropped per edit).
        let mut routes = Vec::with_capacity(served.len());
        let mut olds = self.routes.into_iter().peekable();
        let mut j = 0;
        while olds.peek().is_some() || j < served.len() {
            let old = olds.peek();
            let new = served.get(j).copied();
            let same = matches!((old, new), (Some((_, o)), Some((_, n))) if Arc::ptr_eq(o, n));
            let (pass_old, pass_new) = match (old, new) {
                (Some((ko, _)), Some((kn, _))) if !same => match ko.cmp(kn) {
                    Ordering::Less => (true, false),
                    Ordering::Greater => (false, true),
                    Ordering::Equal => (true, true),
                },
                (Some(_), Some(_)) => (true, true),
                (Some(_), None) => (true, false),
                (None, _) => (false, true),
            };
            if pass_old && let Some(old) = olds.next() {
                if same {
                    routes.push(old);
                } else {
                    gone.insert(Arc::as_ptr(&old.1));
                }
            }
            if pass_new {
                if !same {
                    added.push(j);
                    let (key, route) = served[j];
                    routes.push((key.clone(), Arc::clone(route)));
                }
                j += 1;
            }
        }
        let mut gone_hosts = Some(Vec::new());
        let mut kept_from = Vec::with_capacity(self.sorted.len());
        let mut sorted = Vec::with_capacity(self.sorted.len());
        for (i, keyed) in self.sorted.into_iter().enumerate() {
            if gone.is_empty() || !gone.contains(&Arc::as_ptr(&keyed.1.route)) {
                kept_from.push(i);
                sorted.push(keyed);
            } else if let Some(hosts) = &mut gone_hosts {
                match crate::table::plain_hosts(&keyed.1) {
                    Some(named) => hosts.extend(named.iter().cloned()),
                    None => gone_hosts = None,
                }
            }
        }
        (sorted, kept_from, added, gone_hosts, routes)
    }

    /// Whether `accepted` holds the very same Services as the last call's.
    fn same_services(&self, accepted: &BTreeMap<ObjectKey, Arc<Service>>) -> bool {
        self.services.len() == accepted.len()
            && (self.services.iter())
                .zip(accepted.values())
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

/// The Routes the last [`KeptEntries::update`] served, when the accepted Services are
/// the very same allocations as then: each of them named only accepted Services.
pub(super) struct ServedBefore<'a> {
    routes: &'a [(ObjectKey, Arc<Route>)],
    at: usize,
}

impl<'a> ServedBefore<'a> {
    /// Nothing was served before when the Services changed, or when the Routes to be
    /// asked about are not in key order (the walk needs both lists in it).
    pub(super) fn new(
        kept: &'a KeptEntries,
        accepted: &BTreeMap<ObjectKey, Arc<Service>>,
        in_key_order: bool,
    ) -> ServedBefore<'a> {
        let routes = if in_key_order && kept.same_services(accepted) {
            &kept.routes[..]
        } else {
            &[]
        };
        ServedBefore { routes, at: 0 }
    }

    /// Whether `route` (at `key`) was served last time as this very allocation. Asked
    /// in key order; an unchanged Route is found by its pointer alone.
    pub(super) fn served(&mut self, key: &ObjectKey, route: &Arc<Route>) -> bool {
        while let Some((k, r)) = self.routes.get(self.at) {
            if Arc::ptr_eq(r, route) {
                self.at += 1;
                return true;
            }
            match k.cmp(key) {
                Ordering::Less => self.at += 1,
                Ordering::Equal => {
                    self.at += 1;
                    return false;
                }
                Ordering::Greater => return false,
            }
        }
        false
    }
}

/// What [`KeptEntries::unchanged`] finds.
type Unchanged = (
    Vec<Keyed>,
    Vec<usize>,
    Vec<usize>,
    Option<Vec<String>>,
    Vec<(ObjectKey, Arc<Route>)>,
);

/// Two lists in [`order`], merged into one, with where each item of `old` and of
/// `new` went.
fn merged(old: Vec<Keyed>, new: Vec<Keyed>) -> (Vec<Keyed>, Vec<usize>, Vec<usize>) {
    if new.is_empty() {
        let at = (0..old.len()).collect();
        return (old, at, Vec::new());
    }
    let mut out = Vec::with_capacity(old.len() + new.len());
    let (mut old_at, mut new_at) = (Vec::with_capacity(old.len()), Vec::new());
    let (mut old, mut new) = (old.into_iter().peekable(), new.into_iter().peekable());
    loop {
        let from_old = match (old.peek(), new.peek()) {
            (Some(a), Some(b)) => order(a, b).is_le(),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let (next, at) = if from_old {
            (old.next(), &mut old_at)
        } else {
            (new.next(), &mut new_at)
        };
        at.push(out.len());
        out.extend(next);
    }
    (out, old_at, new_at)
}

#[cfg(test)]
mod tests {
    use crate::validate::tests::{mk_route, mk_service};
    use crate::validate::{Memo, Rules};
    use crate::{Certificates, Objects, PathMatch};
    use std::sync::Arc;

    fn objects(routes: usize) -> Objects {
        Objects {
            routes: (0..routes)
                .map(|i| {
                    let paths = vec![
                        PathMatch::prefix(&format!("/p{i}")),
                        PathMatch::exact(&format!("/e{i}")),
                    ];
                    Arc::new(mk_route(&format!("r{i:02}"), i as i64, paths))
                })
                .collect(),
            services: vec![Arc::new(mk_service("svc"))],
            hosts: Vec::new(),
        }
    }

    /// For each entry of `now`, whether it is the very allocation of an entry in `before`.
    fn kept(before: &crate::Model, now: &crate::Model) -> Vec<bool> {
        now.routes
            .iter()
            .map(|e| before.routes.iter().any(|b| Arc::ptr_eq(b, e)))
            .collect()
    }

    #[test]
    fn an_edit_builds_only_the_edited_routes_entries() {
        let (certificates, rules) = (Certificates::new(), Rules::file_mode());
        let mut memo = Memo::new();
        let mut objects = objects(10);
        let first = memo.validate(&objects, &certificates, &rules).model;
        assert_eq!(first.routes.len(), 20);
        // The same objects again: every entry is kept.
        let again = memo.validate(&objects, &certificates, &rules).model;
        assert!(kept(&first, &again).iter().all(|&k| k));
        // One Route edited (a new allocation): only its two entries are new, and the
        // order is the one a validation without memo gives.
        objects.routes[4] = Arc::new(mk_route(
            "r04",
            4,
            vec![PathMatch::prefix("/a/longer/path")],
        ));
        let edited = memo.validate(&objects, &certificates, &rules).model;
        let fresh = crate::validate::validate_objects(&objects, &certificates, &rules).model;
        assert_eq!(
            format!("{:?}", edited.routes),
            format!("{:?}", fresh.routes)
        );
        let new: Vec<String> = edited
            .routes
            .iter()
            .zip(kept(&again, &edited))
            .filter(|(_, k)| !k)
            .map(|(e, _)| format!("{} {}", e.key, e.path_index))
            .collect();
        assert_eq!(new, ["Route team/r04 0"]);
        assert_eq!(edited.routes.len(), 19);
        // A deleted Route takes its entries with it; the rest are kept.
        objects.routes.remove(7);
        let deleted = memo.validate(&objects, &certificates, &rules).model;
        assert_eq!(deleted.routes.len(), 17);
        assert!(kept(&edited, &deleted).iter().all(|&k| k));
        assert!(deleted.routes.iter().all(|e| e.key.name.as_ref() != "r07"));
    }

    #[test]
    fn a_rebuilt_entry_tied_on_the_key_is_placed_by_the_full_comparison() {
        // Same age, same path kind and length, no hosts: every precedence key ties, so
        // only the name step of `precedence` orders them.
        let (certificates, rules) = (Certificates::new(), Rules::file_mode());
        let mut memo = Memo::new();
        let route = |i: usize| {
            Arc::new(mk_route(
                &format!("r{i}"),
                0,
                vec![PathMatch::prefix(&format!("/p{i}"))],
            ))
        };
        let mut objects = objects(0);
        objects.routes = (0..8).map(route).collect();
        memo.validate(&objects, &certificates, &rules);
        // r3 and r6 handed over again as new allocations: rebuilt and merged.
        objects.routes[3] = route(3);
        objects.routes[6] = route(6);
        let names: Vec<String> = memo
            .validate(&objects, &certificates, &rules)
            .model
            .routes
            .iter()
            .map(|e| e.key.name.to_string())
            .collect();
        assert_eq!(names, ["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"]);
    }

    #[test]
    fn a_changed_service_builds_every_entry_again() {
        let (certificates, rules) = (Certificates::new(), Rules::file_mode());
        let mut memo = Memo::new();
        let mut objects = objects(3);
        let first = memo.validate(&objects, &certificates, &rules).model;
        // A longer timeout: every entry's effective timeout changes with it.
        let mut svc = mk_service("svc");
        svc.spec.timeout = Some(crate::Duration::from_secs(42));
        objects.services[0] = Arc::new(svc);
        let changed = memo.validate(&objects, &certificates, &rules).model;
        assert!(kept(&first, &changed).iter().all(|&k| !k));
        assert!(
            changed
                .routes
                .iter()
                .all(|e| e.timeout == crate::Duration::from_secs(42))
        );
    }
}
