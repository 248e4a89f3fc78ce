//! What one validation hands the next: each object's single-object report, kept with
//! the shared object (`Arc`) it was made from. Sources hand an unchanged object over
//! as the same `Arc` (the kube index keeps it when a watch event repeats it), so an
//! edit to one of 10k Routes checks one Route on its own instead of all of them.
//!
//! Identity, not content, decides: a report is reused only for the very allocation it
//! was made from, which the memo holds so that the address cannot be reused by another
//! object, and only under the same rules. A source that parses every object anew (file
//! mode) simply never hits. The cost: one report per object kept between validations.
use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Report, Rules};
use crate::host::AllowedRoutes;
use crate::model::{ObjectKey, ServedHost};
use crate::{Host, Route, Service};

/// Single-object reports from the previous validation; see [`Memo::validate`].
#[derive(Default)]
pub struct Memo {
    rules: Option<Rules>,
    /// With each Route, what the rules across Routes read of it.
    pub(super) routes: Kept<Route, Derived>,
    pub(super) services: Kept<Service>,
    pub(super) hosts: Kept<Host>,
    /// The served Routes' entries, in precedence order.
    pub(super) entries: super::entries::KeptEntries,
    /// The seed of the match-key hashes kept with each Route (`conflicts`): drawn when
    /// the memo is made, kept for its life, as kept hashes must agree.
    pub(super) seed: foldhash::fast::RandomState,
    pub(super) admission: Admission,
}

/// What admitting Routes to Hosts (`hosts::admit_routes`) read of the served Hosts
/// last time, and a stamp that changes whenever that changes. A Route admitted on every
/// hostname under the current stamp is admitted again without reading its hostnames:
/// its own part (hostnames, namespace) cannot have changed, as it is the same `Arc`.
#[derive(Default)]
pub(super) struct Admission {
    /// Each served Host's key (its namespace admits its own Routes), hostname and
    /// `allowedRoutes`: everything owning and admitting reads of it. `None` before the
    /// first validation.
    basis: Option<Vec<(ObjectKey, String, Option<AllowedRoutes>)>>,
    /// Moves on with every new basis, from 1: a Route's 0 (`Derived::admitted`) is
    /// never a stamp.
    stamp: u64,
}

impl Admission {
    /// The stamp for `hosts`: the last one while what admission reads of them is the
    /// same, compared in full (a few dozen Hosts), so equal stamps mean equal owners.
    pub(super) fn stamp_for(&mut self, hosts: &BTreeMap<ObjectKey, ServedHost>) -> u64 {
        let same = self.basis.as_ref().is_some_and(|basis| {
            basis.len() == hosts.len()
                && basis
                    .iter()
                    .zip(hosts)
                    .all(|((k, name, allowed), (key, h))| {
                        k == key
                            && *name == h.host.spec.hostname
                            && *allowed == h.host.spec.allowed_routes
                    })
        });
        if !same {
            let basis = hosts.iter().map(|(k, h)| {
                let spec = &h.host.spec;
                (
                    k.clone(),
                    spec.hostname.clone(),
                    spec.allowed_routes.clone(),
                )
            });
            self.basis = Some(basis.collect());
            self.stamp += 1;
        }
        self.stamp
    }
}

/// What the rules across Routes read of one Route, derived from it alone: made when the
/// Route is checked and kept beside it, so their passes over every Route read these
/// words in order instead of following each Route's pointers (at 10k Routes, each
/// such pass was a visible part of an edit).
pub(super) struct Derived {
    /// Its match-key hashes (`conflicts::hash_keys`), under the memo's seed.
    pub(super) hashes: Box<[u64]>,
    /// `precedence::age_key` of its metadata.
    pub(super) age: i128,
    pub(super) footprint: super::budget::Footprint,
    /// The [`Admission`] stamp under which every hostname of it was last admitted; 0:
    /// not yet, or one of them was refused then.
    pub(super) admitted: u64,
}

pub(super) fn derive(route: &Route, seed: &foldhash::fast::RandomState) -> Derived {
    Derived {
        hashes: super::conflicts::hash_keys(route, seed, &mut Default::default()),
        age: crate::precedence::age_key(&route.metadata),
        footprint: super::budget::footprint(route),
        admitted: 0,
    }
}

/// The previous objects, each with its report and what else was derived from it alone
/// (a Route's match-key hashes), in the order they were handed over.
pub(super) type Kept<T, X = ()> = Vec<(Arc<T>, Report, X)>;

impl Memo {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets everything when the rules changed: the single-object rules read them.
    pub(super) fn for_rules(&mut self, rules: &Rules) -> &mut Self {
        if self.rules.as_ref() != Some(rules) {
            *self = Memo {
                rules: Some(rules.clone()),
                ..Default::default()
            };
        }
        self
    }
}

/// Every object's single-object report, `check`ed or, with a memo, the previous one
/// for the same object. The memo is left holding exactly these objects, so deleted
/// objects are let go.
///
/// Sources hand each kind over in key order, so the memo is walked beside the objects
/// (no map of every object is built per edit): the previous version of an object is at
/// the walk's front once the objects deleted before it are passed. Out of order, the
/// walk only finds less to reuse; identity alone decides what is reused.
pub(super) fn check_all<'a, T: kube::Resource>(
    objects: &'a [Arc<T>],
    memo: Option<&mut Kept<T>>,
    check: impl Fn(&T) -> Report,
) -> Checked<'a, T> {
    check_all_with(objects, memo, check, |_| ())
}

/// Each object's single-object report, beside the object.
pub(super) type Checked<'a, T> = Vec<(Report, &'a Arc<T>)>;

/// As [`check_all`], and the memo also keeps `derive(object)` with each object: made
/// for the objects checked now, carried over with the report for the very same object
/// (so it is never taken for another). The memo's list is in `objects`' order.
pub(super) fn check_all_with<'a, T: kube::Resource, X>(
    objects: &'a [Arc<T>],
    memo: Option<&mut Kept<T, X>>,
    check: impl Fn(&T) -> Report,
    derive: impl Fn(&T) -> X,
) -> Checked<'a, T> {
    let Some(memo) = memo else {
        return objects.iter().map(|o| (check(o), o)).collect();
    };
    let previous = std::mem::take(memo);
    let mut previous = previous.into_iter().peekable();
    memo.reserve(objects.len());
    objects
        .iter()
        .map(|o| {
            // Read only when the walk's front is not this very object: an unchanged
            // object's memory is then not touched at all (at 10k Routes, a cache miss
            // per object was a visible part of an edit).
            let key = || {
                let meta = o.meta();
                (
                    meta.namespace.as_deref().unwrap_or("default"),
                    meta.name.as_deref().unwrap_or_default(),
                )
            };
            let mut kept = None;
            while let Some((old, report, _)) = previous.peek() {
                if Arc::ptr_eq(old, o) {
                    kept = previous.next();
                    break;
                }
                match (report.key.namespace.as_str(), report.key.name.as_str()).cmp(&key()) {
                    // Deleted since, or an older version of this object: let it go.
                    std::cmp::Ordering::Less => drop(previous.next()),
                    std::cmp::Ordering::Equal => {
                        previous.next();
                        break;
                    }
                    std::cmp::Ordering::Greater => break,
                }
            }
            // A kept entry moves its own `Arc` over: cloning `o` and dropping the old
            // one would touch the object's count, a cache miss per unchanged object.
            let (kept, report, derived) =
                kept.unwrap_or_else(|| (Arc::clone(o), check(o), derive(o)));
            memo.push((kept, report.clone(), derived));
            (report, o)
        })
        .collect()
}

#[cfg(test)]
impl Memo {
    /// How many routing tables were patched from the last one.
    pub(crate) fn tables_patched(&self) -> usize {
        self.entries.patched
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Objects, PathMatch,
        validate::{
            tests::{mk_route, mk_service},
            validate_objects,
        },
    };

    fn outcome_text(o: &crate::validate::Outcome) -> String {
        format!("{:?}\n{:?}", o.reports, o.model)
    }

    #[test]
    fn the_memo_gives_what_a_fresh_validation_gives_through_any_edits() {
        // Routes that conflict, refer to missing Services and break single-object
        // rules, edited (new Arcs) or kept (same Arcs) at random.
        let route = |i: usize, v: u64| {
            let path = match v % 4 {
                0 => PathMatch::prefix("/shared"),
                1 => PathMatch::prefix(&format!("/p{i}")),
                2 => PathMatch::prefix("no-slash"),
                _ => PathMatch::exact(&format!("/e{}", v % 3)),
            };
            // Shared ages, hosts, methods, headers and second paths: entries that tie
            // on the precedence key and are ordered by the full comparison.
            let mut paths = vec![path];
            if (v >> 9).is_multiple_of(3) {
                paths.push(PathMatch::prefix(&format!("/q{}", v % 2)));
            }
            let mut r = mk_route(&format!("r{i}"), (i % 4) as i64, paths);
            r.spec.hosts = match (v >> 3) % 3 {
                0 => vec![],
                1 => vec!["a.example.com".into()],
                _ => vec!["*.example.com".into()],
            };
            // A second hostname, and another team: Hosts below admit some of them.
            if (v >> 11).is_multiple_of(4) {
                r.spec.hosts.push("b.example.com".into());
            }
            if (v >> 13).is_multiple_of(3) {
                r.metadata.namespace = Some("other".into());
            }
            if (v >> 5).is_multiple_of(2) {
                r.spec.match_.methods = vec!["GET".into()];
            }
            if (v >> 6).is_multiple_of(3) {
                r.spec.match_.headers = vec![crate::HeaderMatch {
                    name: "x-team".into(),
                    exact: Some("a".into()),
                    ..Default::default()
                }];
            }
            match v % 5 {
                0 => r.spec.backends[0].service = "missing".into(),
                // A Service that comes and goes.
                1 => r.spec.backends[0].service = "other".into(),
                _ => {}
            }
            Arc::new(r)
        };
        // Entries read their Services' timeouts.
        let service = |name: &str, timeout: u64| {
            let mut s = mk_service(name);
            s.spec.timeout = Some(crate::Duration::from_secs(1 + timeout % 3));
            Arc::new(s)
        };
        // Hosts that own the Routes' hostnames, exactly or by wildcard, and admit
        // their own namespace, another, or every one: what admission reads of them.
        // `v`: its hostname, `allowedRoutes` and namespace, two bits each.
        let host = |name: &str, v: u64| {
            let hostname = ["a.example.com", "*.example.com", "b.example.com"][v as usize % 3];
            let allowed = match (v >> 2) % 4 {
                0 => None,
                1 => Some(vec!["other".to_string()]),
                _ => Some(vec!["*".to_string()]),
            };
            let mut h = crate::Host::new(
                name,
                crate::HostSpec {
                    hostname: hostname.into(),
                    allowed_routes: allowed
                        .map(|namespaces| crate::host::AllowedRoutes { namespaces }),
                    ..Default::default()
                },
            );
            h.metadata.namespace = Some(
                if (v >> 4).is_multiple_of(2) {
                    "team"
                } else {
                    "other"
                }
                .into(),
            );
            Arc::new(h)
        };
        // Sources hand Routes over in key order, where the cross-object rules take
        // short cuts (a Route served before keeps its references); the first pass
        // hands them over as they come.
        for in_key_order in [false, true] {
            let mut h0 = 0;
            let mut objects = Objects {
                routes: (0..20).map(|i| route(i, i as u64)).collect(),
                services: vec![Arc::new(mk_service("svc"))],
                hosts: vec![host("h0", 0)],
            };
            let mut refused = 0;
            let (certificates, mut rules) = (crate::Certificates::new(), Rules::file_mode());
            let (mut switched, mut full) = (0, 0);
            let mut memo = Memo::new();
            let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
            for step in 0..600 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = (seed >> 8) as usize % objects.routes.len();
                match seed % 9 {
                    0 => objects.routes[i] = route(i, seed >> 16),
                    1 => {
                        objects.routes.remove(i);
                    }
                    2 => objects.routes.push(route(20 + step, seed >> 16)),
                    // A new allocation of an equal object: checked again, same verdict.
                    3 => objects.routes[i] = Arc::new((*objects.routes[i]).clone()),
                    // The Service's loopback address is refused in Kubernetes mode:
                    // a change of rules must not reuse file mode's verdict.
                    4 if step.is_multiple_of(3) => {
                        switched += 1;
                        let bytes = rules.route_table_bytes;
                        rules = if rules.destinations == Rules::file_mode().destinations {
                            Rules::cluster(Vec::new())
                        } else {
                            Rules::file_mode()
                        };
                        rules.route_table_bytes = bytes;
                        // Every other switch, unowned hostnames are refused too.
                        rules.require_host_ownership = switched % 4 < 2;
                    }
                    // A tight route table: the budget refuses the newest Routes, from
                    // what the memo kept of each (its footprint and age).
                    7 if step.is_multiple_of(2) => {
                        rules.route_table_bytes = match rules.route_table_bytes {
                            4_000 => super::super::DEFAULT_ROUTE_TABLE_BYTES,
                            _ => 4_000,
                        }
                    }
                    5 => objects.services[0] = service("svc", seed >> 16),
                    6 => match objects.services.len() {
                        1 => objects.services.push(service("other", seed >> 16)),
                        _ => drop(objects.services.pop()),
                    },
                    // A Host edited, added or removed: admission changes for Routes the
                    // memo kept as they were.
                    8 => match (seed >> 20) % 4 {
                        0 => h0 = seed >> 24,
                        // Only whom it admits: the hostnames' owners stay the same.
                        1 => h0 = (h0 & !0b1100) | ((seed >> 24) & 0b1100),
                        2 if objects.hosts.len() == 1 => objects.hosts.push(host("h1", seed >> 24)),
                        _ if objects.hosts.len() == 2 => drop(objects.hosts.pop()),
                        _ => {}
                    },
                    _ => {}
                }
                // A new allocation only when the Host changed: an unchanged one is kept.
                if objects.hosts[0].spec != host("h0", h0).spec
                    || objects.hosts[0].metadata.namespace != host("h0", h0).metadata.namespace
                {
                    objects.hosts[0] = host("h0", h0);
                }
                if in_key_order {
                    (objects.routes).sort_by_cached_key(|r| ObjectKey::new("Route", &r.metadata));
                }
                let want = validate_objects(&objects, &certificates, &rules);
                let got = memo.validate(&objects, &certificates, &rules);
                assert_eq!(outcome_text(&got), outcome_text(&want), "step {step}");
                full += got
                    .problems()
                    .filter(|i| i.message.contains("the route table is full"))
                    .count();
                refused += got
                    .problems()
                    .filter(|i| i.message.contains("does not admit Routes"))
                    .count();
                // Both share the entry code: their order is also checked against the
                // precedence rules themselves (a total order on served entries).
                assert!(
                    got.model.routes.windows(2).all(|w| {
                        crate::precedence::precedence(&w[0], &w[1]) == std::cmp::Ordering::Less
                    }),
                    "step {step}: entries out of precedence order"
                );
                assert_eq!(memo.routes.len(), objects.routes.len(), "step {step}");
            }
            assert!(switched > 3, "the rules changed {switched} times");
            assert!(full > 20, "the budget refused {full} times");
            assert!(refused > 20, "Hosts refused Routes {refused} times");
        }
    }

    // A Route naming a hostname no Host owns, on a gateway that requires ownership:
    // refused from the memo's very first validation on, when there is no Host at all
    // (the stamp a Route starts with is never the memo's).
    #[test]
    fn an_unowned_hostname_is_refused_from_the_first_validation() {
        let mut route = mk_route("r", 0, vec![PathMatch::prefix("/")]);
        route.spec.hosts = vec!["a.example.com".into()];
        let objects = Objects {
            routes: vec![Arc::new(route)],
            services: vec![Arc::new(mk_service("svc"))],
            hosts: Vec::new(),
        };
        let certificates = crate::Certificates::new();
        let mut rules = Rules::file_mode();
        rules.require_host_ownership = true;
        let want = validate_objects(&objects, &certificates, &rules);
        assert!(
            want.model.routes.is_empty(),
            "a fresh validation refuses it"
        );
        let mut memo = Memo::new();
        for round in 0..2 {
            let got = memo.validate(&objects, &certificates, &rules);
            assert_eq!(outcome_text(&got), outcome_text(&want), "round {round}");
        }
    }

    #[test]
    fn an_edit_checks_only_the_object_it_changed() {
        let objects = Objects {
            routes: (0..3)
                .map(|i| {
                    Arc::new(mk_route(
                        &format!("r{i}"),
                        i,
                        vec![PathMatch::prefix(&format!("/p{i}"))],
                    ))
                })
                .collect(),
            services: vec![Arc::new(mk_service("svc"))],
            hosts: Vec::new(),
        };
        let checked = std::cell::Cell::new(0);
        let check = |r: &Route| {
            checked.set(checked.get() + 1);
            Report::new(crate::ObjectKey::new("Route", &r.metadata), None)
        };
        let mut kept = Kept::default();
        check_all(&objects.routes, Some(&mut kept), check);
        assert_eq!(checked.get(), 3);
        let mut edited = objects.routes.clone();
        edited[1] = Arc::new(mk_route("r1", 1, vec![PathMatch::prefix("/new")]));
        check_all(&edited, Some(&mut kept), check);
        assert_eq!(checked.get(), 4, "only the edited Route was checked again");
        // A deletion and an insertion in key order: only the new Route is checked.
        let mut changed = edited.clone();
        changed.remove(0);
        changed.insert(
            1,
            Arc::new(mk_route("r1a", 5, vec![PathMatch::prefix("/a")])),
        );
        check_all(&changed, Some(&mut kept), check);
        assert_eq!(checked.get(), 5, "only the inserted Route was checked");
        assert_eq!(kept.len(), 3);
        assert!(
            kept.iter()
                .zip(&changed)
                .all(|((k, _, _), o)| Arc::ptr_eq(k, o))
        );
        // Out of key order nothing is lost, only less is reused.
        let mut reversed = changed.clone();
        reversed.reverse();
        let reports = check_all(&reversed, Some(&mut kept), check);
        let names: Vec<&str> = reports.iter().map(|(r, _)| r.key.name.as_str()).collect();
        assert_eq!(names, ["r2", "r1a", "r1"]);
        assert_eq!(checked.get(), 7, "r2 was found; r1a and r1 were passed");
        // Without a memo, everything is checked.
        check_all(&edited, None, check);
        assert_eq!(checked.get(), 10);
    }
}
