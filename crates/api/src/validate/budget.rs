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

/// What `route` costs in the route table.
pub fn cost(route: &Route, hosts: &Hosts<'_>) -> usize {
    let per_copy: usize = route
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
    per_copy.saturating_mul(copies(route, hosts))
}

/// `by_age`: indices of `routes`, oldest first (`cross::age_then_key`); those not served
/// are skipped.
pub(super) fn apply(routes: &mut [(Report, &Arc<Route>)], by_age: &[usize], budget: usize) {
    let order: Vec<usize> = by_age
        .iter()
        .copied()
        .filter(|&i| routes[i].0.is_served())
        .collect();
    let hosts: Hosts<'_> = order
        .iter()
        .flat_map(|&i| routes[i].1.spec.hosts.iter().map(String::as_str))
        .collect();
    let mut used = 0usize;
    for i in order {
        let c = cost(routes[i].1, &hosts);
        if used.saturating_add(c) > budget {
            let (report, route) = &mut routes[i];
            report.error(
                "spec",
                format!(
                    "the route table is full: this Route would add about {} KiB ({} path(s) in {} host table(s)) to the {} KiB already used of the gateway's {} KiB budget; name the hosts it serves instead of leaving hosts empty (a Route without hosts is copied into every host), merge paths into a prefix, or ask the platform team to raise the budget",
                    c / 1024,
                    route.spec.match_.paths.len(),
                    copies(route, &hosts),
                    used / 1024,
                    budget / 1024
                ),
            );
        } else {
            used += c;
        }
    }
}
