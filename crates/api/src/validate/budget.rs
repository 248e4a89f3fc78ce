//! The whole route table's size, bounded. Envoy holds the route configuration of every
//! host in memory on every replica and re-parses it whole on each change; a Route
//! without hosts is copied into every host's table, so a thousand host-less Routes on a
//! thousand hosts cost a million Envoy routes. Routes are admitted oldest first against
//! a byte budget; a Route that would exceed it is refused (it names the budget and what
//! it would cost), and everything admitted before it keeps serving.
use std::sync::Arc;

use super::Report;
use crate::{Route, precedence::covers};

/// The hostnames served Routes name. Only counted and walked, never shown, so a hash
/// set: thousands of Routes name a few dozen hosts, and each name is hashed once.
type Hosts<'a> = foldhash::HashSet<&'a str>;

/// Default budget: about 80,000 Envoy routes of ordinary size; ten times the
/// 10,000-Route benchmark's table (docs/benchmarks.md).
pub const DEFAULT_ROUTE_TABLE_BYTES: usize = 32 << 20;

/// Bytes one Envoy route of `route` takes in the route configuration (an estimate on
/// the high side: the encoded route with its retry policy, filters' per-route config
/// and rate-limit actions, plus the strings the manifest adds).
fn entry_bytes(route: &Route, path: usize) -> usize {
    let spec = &route.spec;
    let headers: usize = spec
        .match_
        .headers
        .iter()
        .map(|h| {
            h.name.len()
                + h.exact.as_ref().map_or(0, String::len)
                + h.prefix.as_ref().map_or(0, String::len)
                + h.regex.as_ref().map_or(0, String::len)
                + 16
        })
        .sum();
    400 + path
        + headers
        + 16 * spec.match_.methods.len()
        + 64 * spec.backends.len()
        + 200 * spec.rate_limits.len()
        + if spec.auth.is_some() { 200 } else { 0 }
}

/// How many host tables the Route is copied into, given the named hosts.
fn copies(route: &Route, hosts: &Hosts<'_>) -> usize {
    if route.spec.hosts.is_empty() {
        return hosts.len() + 1;
    }
    route
        .spec
        .hosts
        .iter()
        .map(|h| {
            1 + if h.starts_with('*') {
                hosts.iter().filter(|d| **d != h && covers(h, d)).count()
            } else {
                0
            }
        })
        .sum()
}

/// What the budget reads of a Route, derived from it alone (the memo keeps it beside
/// the Route, so an edit's pass over every Route reads these words in order instead of
/// following each Route's pointers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Footprint {
    /// Bytes per host table the Route is copied into.
    per_copy: usize,
    /// Its hostnames, when none is a wildcard: the tables it is copied into. `None`:
    /// host-less or a wildcard, so the count depends on every other Route's hosts.
    named: Option<usize>,
}

pub(super) fn footprint(route: &Route) -> Footprint {
    let per_copy = route
        .spec
        .match_
        .paths
        .iter()
        .map(|p| {
            let len = p
                .exact
                .as_ref()
                .or(p.prefix.as_ref())
                .map_or(1, String::len);
            entry_bytes(route, len)
        })
        .sum();
    let hosts = &route.spec.hosts;
    let spread = hosts.is_empty() || hosts.iter().any(|h| h.starts_with('*'));
    Footprint {
        per_copy,
        named: (!spread).then_some(hosts.len()),
    }
}

/// `by_age`: indices of `routes`, oldest first (`cross::age_then_key`); those not served
/// are skipped. `footprints`: each Route's, by position.
pub(super) fn apply(
    routes: &mut [(Report, &Arc<Route>)],
    by_age: &[usize],
    footprints: &[Footprint],
    budget: usize,
) {
    let order: Vec<usize> = by_age
        .iter()
        .copied()
        .filter(|&i| routes[i].0.is_served())
        .collect();
    // Every hostname served Routes name, read only when a host-less or wildcard Route
    // needs the count: reading every Route's hosts was most of this pass at 10k Routes.
    let spread = order.iter().any(|&i| footprints[i].named.is_none());
    let hosts: Hosts<'_> = if spread {
        order
            .iter()
            .flat_map(|&i| routes[i].1.spec.hosts.iter().map(String::as_str))
            .collect()
    } else {
        Hosts::default()
    };
    let mut used = 0usize;
    for i in order {
        let f = footprints[i];
        let copies = f.named.unwrap_or_else(|| copies(routes[i].1, &hosts));
        let c = f.per_copy.saturating_mul(copies);
        if used.saturating_add(c) > budget {
            let (report, route) = &mut routes[i];
            report.error(
                "spec",
                format!(
                    "the route table is full: this Route would add about {} KiB ({} path(s) in {} host table(s)) to the {} KiB already used of the gateway's {} KiB budget; name the hosts it serves instead of leaving hosts empty (a Route without hosts is copied into every host), merge paths into a prefix, or ask the platform team to raise the budget",
                    c / 1024,
                    route.spec.match_.paths.len(),
                    copies,
                    used / 1024,
                    budget / 1024
                ),
            );
        } else {
            used += c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ObjectKey, PathMatch, validate::tests::mk_route};

    #[test]
    fn counting_named_hosts_gives_what_counting_every_hostname_gives() {
        // Routes naming hosts, wildcards covering some of them, and host-less ones,
        // against budgets from roomy to tight. Taking a plain Route's table count from
        // its own hostnames must refuse exactly what counting copies over every
        // served hostname refuses (each Footprint made to spread).
        let hosts: [&[&str]; 6] = [
            &[],
            &["a.example.com"],
            &["b.example.com", "a.example.com"],
            &["*.example.com"],
            &["c.example.org", "*.example.com"],
            &["a.example.com", "a.example.com"],
        ];
        let routes: Vec<Arc<Route>> = (0..60)
            .map(|i| {
                let paths = (0..1 + i % 3)
                    .map(|p| PathMatch::prefix(&format!("/r{i}/{}", "x".repeat(p * 7))))
                    .collect();
                let mut r = mk_route(&format!("r{i:02}"), i as i64, paths);
                r.spec.hosts = hosts[(i * 7) % hosts.len()]
                    .iter()
                    .map(|h| h.to_string())
                    .collect();
                Arc::new(r)
            })
            .collect();
        let by_age: Vec<usize> = (0..routes.len()).collect();
        let mut refusals = 0;
        for budget in [1 << 20, 60_000, 30_000, 12_000, 3_000] {
            let run = |spread_all: bool| {
                let mut pairs: Vec<(Report, &Arc<Route>)> = routes
                    .iter()
                    .map(|r| (Report::new(ObjectKey::new("Route", &r.metadata), None), r))
                    .collect();
                let footprints: Vec<Footprint> = routes
                    .iter()
                    .map(|r| footprint(r))
                    .map(|f| {
                        if spread_all {
                            Footprint { named: None, ..f }
                        } else {
                            f
                        }
                    })
                    .collect();
                apply(&mut pairs, &by_age, &footprints, budget);
                pairs
                    .into_iter()
                    .map(|(r, _)| format!("{:?}", r.errors))
                    .collect::<Vec<_>>()
            };
            let (want, got) = (run(true), run(false));
            assert_eq!(got, want, "budget {budget}");
            refusals += got
                .iter()
                .filter(|e| e.contains("route table is full"))
                .count();
        }
        assert!(refusals > 20, "the budgets refused {refusals} times");
    }
}
