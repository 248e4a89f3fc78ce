//! Cross-object rules: duplicate names, references between Routes and Services, and
//! match conflicts between Routes. The oldest Route keeps a contested match, so a new
//! manifest can never take traffic a running service already has (docs/decisions.md).
use std::{collections::BTreeMap, sync::Arc};

// These maps live for one validation and are only looked up, never shown: a fast
// hash pays (SipHash was a sixth of an edit's instructions at 10k Routes), and
// foldhash's per-map seed keeps crafted names from colliding in every map.
use foldhash::{HashMap, HashSet, HashSetExt};

use super::{Issue, Report};
use crate::{Duration, Model, ObjectKey, Route, RouteEntry, Service, precedence::age_order};

/// The same Kind namespace/name twice in the input: the first is kept. Says whether
/// the input was in key order.
pub(super) fn duplicates<T>(reports: &mut [(Report, &T)]) -> bool {
    // Sources hand objects over in key order, where copies sit side by side: no set
    // of every key needs building then.
    let sorted = reports.windows(2).all(|w| w[0].0.key <= w[1].0.key);
    let later: Vec<usize> = if sorted {
        (1..reports.len())
            .filter(|&i| reports[i].0.key == reports[i - 1].0.key)
            .collect()
    } else {
        let mut seen = HashSet::with_capacity(reports.len());
        (0..reports.len())
            .filter(|&i| !seen.insert(&reports[i].0.key))
            .collect()
    };
    for i in later {
        let report = &mut reports[i].0;
        report.error(
            "metadata.name",
            format!(
                "{} is defined more than once; rename or remove the later copy",
                report.key
            ),
        );
    }
    sorted
}

/// Older first, then by key: who keeps a contested match or a place in the budget.
pub(super) fn age_then_key(
    a: &(Report, &Arc<Route>),
    b: &(Report, &Arc<Route>),
) -> std::cmp::Ordering {
    age_order(&a.1.metadata, &b.1.metadata).then_with(|| a.0.key.cmp(&b.0.key))
}

/// The served Routes' positions, ordered by [`age_then_key`]; `in_key_order` as
/// [`duplicates`] found the Routes; `ages`: each one's [`age_key`], by position.
fn served_by_age(
    routes: &[(Report, &Arc<Route>)],
    in_key_order: bool,
    ages: impl Fn(usize) -> i128,
) -> Vec<usize> {
    let served = (0..routes.len()).filter(|&i| routes[i].0.is_served());
    if !in_key_order {
        let mut by_age: Vec<usize> = served.collect();
        by_age.sort_by(|&a, &b| age_then_key(&routes[a], &routes[b]));
        return by_age;
    }
    // In key order (as sources hand Routes over), position breaks ties as the key
    // does: sorting small (age, position) values beside each other beats following
    // each comparison to two Routes' metadata (a visible part of an edit at 10k).
    let mut by_age: Vec<(i128, usize)> = served.map(|i| (ages(i), i)).collect();
    by_age.sort_unstable();
    by_age.into_iter().map(|(_, i)| i).collect()
}

/// What the conflict pass needs to know of the Routes besides themselves.
pub(super) struct Order<'a> {
    /// As [`duplicates`] found the Routes.
    pub in_key_order: bool,
    /// What the rules read of each Route, by position.
    pub derived: &'a [&'a super::memo::Derived],
}

pub(super) fn resolve(
    services: &[(Report, &Arc<Service>)],
    routes: &mut [(Report, &Arc<Route>)],
    order: Order<'_>,
    hosts: BTreeMap<ObjectKey, crate::model::ServedHost>,
    // The memo's stamp of `hosts` (`memo::Admission`), for patching the table.
    hosts_stamp: Option<u64>,
    route_table_bytes: usize,
    kept: &mut super::entries::KeptEntries,
) -> Model {
    let accepted: BTreeMap<ObjectKey, Arc<Service>> = services
        .iter()
        .filter(|(r, _)| r.errors.is_empty() && r.unresolved.is_empty())
        // Shared with the source, not copied.
        .map(|(r, s)| (r.key.clone(), Arc::clone(s)))
        .collect();
    // Looked up by borrowed (namespace, name): no key is built per backend.
    let by_name: HashMap<(&str, &str), (&ObjectKey, &Arc<Service>)> = accepted
        .iter()
        .map(|(k, s)| ((k.namespace.as_str(), k.name.as_str()), (k, s)))
        .collect();
    let known: HashSet<(&str, &str)> = services
        .iter()
        .map(|(r, _)| (r.key.namespace.as_str(), r.key.name.as_str()))
        .collect();

    // References first: a Route to a missing Service is not served and claims nothing.
    // A Route served last time as this very allocation, with the very same Services
    // accepted, found every backend then and finds them now: its lookups are skipped
    // (at 10k Routes they were a fifth of an edit's validation).
    let mut before = super::entries::ServedBefore::new(kept, &accepted, order.in_key_order);
    for (report, route) in routes.iter_mut() {
        if !report.errors.is_empty() || before.served(&report.key, route) {
            continue;
        }
        for (i, b) in route.spec.backends.iter().enumerate() {
            let name = (report.key.namespace.as_str(), b.service.as_str());
            if by_name.contains_key(&name) {
                continue;
            }
            let target = ObjectKey::service(&report.key.namespace, &b.service);
            let message = if known.contains(&name) {
                format!("{target} is not accepted; fix the errors in its status first")
            } else {
                format!(
                    "{target} does not exist; create it or fix the name (Routes reference Services in their own namespace)"
                )
            };
            report.unresolved.push(Issue {
                object: report.key.clone(),
                field: format!("spec.backends[{i}].service"),
                message,
            });
        }
    }

    let derived = order.derived;
    let by_age = served_by_age(routes, order.in_key_order, |i| derived[i].age);
    let hashes: Vec<&[u64]> = derived.iter().map(|d| &d.hashes[..]).collect();
    super::conflicts::apply(routes, &by_age, &hashes);
    let footprints: Vec<_> = derived.iter().map(|d| d.footprint).collect();
    super::budget::apply(routes, &by_age, &footprints, route_table_bytes);

    let served: Vec<(&ObjectKey, &Arc<Route>)> = routes
        .iter()
        .filter(|(report, _)| report.is_served())
        .map(|(report, route)| (&report.key, *route))
        .collect();
    let entries = kept.update(&accepted, &served, |key, route, out| {
        push_entries(out, key, route, &by_name)
    });
    drop((served, by_name));
    let model = Model {
        services: accepted,
        routes: entries,
        hosts,
        upstream_tls: BTreeMap::new(),
        table_cache: Default::default(),
    };
    kept.table(&model, hosts_stamp);
    let mut shadows = crate::shadow::shadows(&model);
    for (report, route) in routes.iter_mut() {
        if let Some(list) = shadows.remove(&report.key) {
            report.shadowed = shadow_issues(&report.key, route, list);
        }
    }
    model
}

/// One issue per shadowed path, naming the hosts and the winner; auth bypasses first.
fn shadow_issues(
    key: &ObjectKey,
    route: &Route,
    list: Vec<crate::shadow::Shadow>,
) -> Vec<super::Shadowed> {
    let mut grouped: BTreeMap<(bool, usize, ObjectKey), Vec<String>> = BTreeMap::new();
    for s in list {
        grouped
            .entry((!s.auth_bypassed, s.path_index, s.winner))
            .or_default()
            .push(s.host);
    }
    grouped
        .into_iter()
        .map(|((not_bypassed, index, winner), hosts)| {
            let path = &route.spec.match_.paths[index];
            let (kind, value) = match (&path.exact, &path.prefix) {
                (Some(v), _) => ("exact", v.as_str()),
                (_, Some(v)) => ("prefix", v.as_str()),
                _ => ("prefix", "/"),
            };
            let hosts = hosts.join(", ");
            let winner_text = winner.to_string();
            let winner_ref = &winner_text;
            let message = if not_bypassed {
                format!(
                    "{kind} {value} never matches on {hosts}: {winner_ref}, which names the host more specifically, takes these requests first; add the host to this Route's hosts, or narrow {winner_ref}"
                )
            } else {
                format!(
                    "{kind} {value} never matches on {hosts}: {winner_ref}, which names the host more specifically, takes these requests first but does not enforce the authentication this Route requires, so they are served without it; add the host to this Route's hosts, or give {winner_ref} the same auth"
                )
            };
            super::Shadowed {
                winner,
                issue: Issue {
                    object: key.clone(),
                    field: format!("spec.match.paths[{index}].{kind}"),
                    message,
                },
                auth_bypassed: !not_bypassed,
            }
        })
        .collect()
}

fn normalized_methods(route: &Route) -> Vec<String> {
    let mut methods: Vec<String> = route
        .spec
        .match_
        .methods
        .iter()
        .map(|m| m.to_ascii_uppercase())
        .collect();
    methods.sort();
    methods.dedup();
    methods
}

/// One entry per path of a served Route. Its backends were all resolved to accepted
/// Services, whose keys the entries share.
fn push_entries(
    entries: &mut Vec<RouteEntry>,
    key: &ObjectKey,
    route: &Arc<Route>,
    services: &HashMap<(&str, &str), (&ObjectKey, &Arc<Service>)>,
) {
    let namespace = key.namespace.as_str();
    let mut longest: Option<Duration> = None;
    let mut backends: Vec<(ObjectKey, u32)> = Vec::with_capacity(route.spec.backends.len());
    for b in &route.spec.backends {
        let key = match services.get(&(namespace, b.service.as_str())) {
            Some((key, service)) => {
                longest = longest.max(Some(service.spec.timeout()));
                (*key).clone()
            }
            None => ObjectKey::service(namespace, &b.service),
        };
        backends.push((key, b.weight()));
    }
    let timeout = route
        .spec
        .timeout
        .or(longest)
        .unwrap_or(Duration::from_secs(10));
    let mut methods = normalized_methods(route);
    let mut headers = super::conflicts::normalized_headers(route);
    let paths = &route.spec.match_.paths;
    for (path_index, path) in paths.iter().enumerate() {
        // The last path takes the lists; earlier ones copy them.
        let last = path_index + 1 == paths.len();
        entries.push(RouteEntry {
            // Shared with the source: the model copies no Route.
            route: Arc::clone(route),
            key: key.clone(),
            path_index,
            path: path.clone(),
            methods: take_or_copy(&mut methods, last),
            headers: take_or_copy(&mut headers, last),
            backends: take_or_copy(&mut backends, last),
            timeout,
        });
    }
}

fn take_or_copy<T: Clone>(v: &mut Vec<T>, take: bool) -> Vec<T> {
    if take { std::mem::take(v) } else { v.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PathMatch, precedence::age_key, validate::tests::mk_route};

    #[test]
    fn routes_in_key_order_are_aged_as_the_full_comparison_ages_them() {
        // Equal ages, missing ages, a duplicate key (refused) and an unserved Route.
        let ages = [Some(5), None, Some(3), Some(5), None, Some(3), Some(1)];
        let mut routes: Vec<Arc<Route>> = ages
            .iter()
            .enumerate()
            .map(|(i, &age)| {
                let mut r = mk_route(&format!("r{i}"), 0, vec![PathMatch::prefix("/")]);
                r.metadata.creation_timestamp = age.map(|s| {
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                        jiff::Timestamp::from_second(s).unwrap(),
                    )
                });
                Arc::new(r)
            })
            .collect();
        routes.insert(4, routes[3].clone());
        let mut pairs: Vec<(Report, &Arc<Route>)> = routes
            .iter()
            .map(|r| (Report::new(ObjectKey::new("Route", &r.metadata), None), r))
            .collect();
        pairs[2].0.error("spec", "broken".into());
        let want = |pairs: &[(Report, &Arc<Route>)]| {
            let mut order: Vec<usize> = (0..pairs.len())
                .filter(|&i| pairs[i].0.is_served())
                .collect();
            order.sort_by(|&a, &b| age_then_key(&pairs[a], &pairs[b]));
            order
        };
        assert!(duplicates(&mut pairs), "in key order");
        assert_eq!(
            served_by_age(&pairs, true, |i| age_key(&pairs[i].1.metadata)),
            want(&pairs)
        );
        assert_eq!(
            served_by_age(&pairs, true, |i| age_key(&pairs[i].1.metadata)),
            [7, 6, 0, 3, 1, 5]
        );
        // Out of key order the full comparison decides.
        pairs.swap(0, 6);
        assert!(!duplicates(&mut pairs), "out of key order");
        assert_eq!(
            served_by_age(&pairs, false, |i| age_key(&pairs[i].1.metadata)),
            want(&pairs)
        );
    }
}
