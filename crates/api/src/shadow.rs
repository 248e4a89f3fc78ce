//! Entries that can never match on a host because an entry Envoy tries first there
//! matches every request they would.
//!
//! Within one host rank, the precedence order (exact before prefix, longer first) and
//! the conflict rule (one owner per host/method/path/headers) leave no entry fully
//! covered by an earlier one. Shadowing therefore only happens across ranks: a Route
//! naming `api.example.com` with `prefix: /` takes every path of a host-less Route on
//! that host. When the earlier entry asks for weaker authentication than the one it
//! hides, requests its author meant to protect are served without it: `AuthBypassed`.
use std::collections::BTreeMap;

use crate::{
    Model, ObjectKey, RouteEntry,
    policy::Auth,
    precedence::HostRank,
    table::{ANY_HOST, HostTable},
};

/// One entry hidden on one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shadow {
    pub host: String,
    /// The hidden entry.
    pub route: ObjectKey,
    pub path_index: usize,
    /// The entry that takes its requests.
    pub winner: ObjectKey,
    pub winner_path_index: usize,
    /// The winner asks for weaker authentication than the hidden entry.
    pub auth_bypassed: bool,
}

/// Every shadowed entry of the model, by hidden Route.
pub fn shadows(model: &Model) -> BTreeMap<ObjectKey, Vec<Shadow>> {
    let mut anywhere: Vec<(String, &RouteEntry)> = model
        .routes
        .iter()
        .filter(|e| e.hosts().is_empty())
        .map(|e| (lower_path(e), &**e))
        .collect();
    anywhere.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: BTreeMap<ObjectKey, Vec<Shadow>> = BTreeMap::new();
    // Only host-less and wildcard entries can be hidden (see the module's note): a
    // table of named hosts alone has nothing to rank.
    if anywhere.is_empty()
        && !model
            .routes
            .iter()
            .any(|e| e.hosts().iter().any(|h| h.starts_with('*')))
    {
        return out;
    }
    for table in model.table() {
        if table.domain == ANY_HOST {
            continue;
        }
        for s in host_shadows(&table, &anywhere) {
            out.entry(s.route.clone()).or_default().push(s);
        }
    }
    out
}

fn host_shadows(table: &HostTable<'_>, anywhere: &[(String, &RouteEntry)]) -> Vec<Shadow> {
    let host = table.domain.as_str();
    let ranked: Vec<(HostRank, &RouteEntry)> = table
        .entries
        .iter()
        .map(|e| (HostRank::of(e, host), &***e))
        .collect();
    // Wildcard entries covering this host: usually a handful, checked one by one.
    let wildcards: Vec<&(HostRank, &RouteEntry)> = ranked
        .iter()
        .filter(|(r, _)| matches!(r, HostRank::Wildcard(_)))
        .collect();
    let mut out = Vec::new();
    for (rank, winner) in &ranked {
        if *rank == HostRank::Any {
            break; // ranked is in precedence order: no better-ranked winners remain
        }
        let mut hide = |loser: &RouteEntry| {
            if covers(winner, loser) {
                out.push(Shadow {
                    host: host.to_string(),
                    route: loser.key.clone(),
                    path_index: loser.path_index,
                    winner: winner.key.clone(),
                    winner_path_index: winner.path_index,
                    auth_bypassed: weaker(
                        winner.route.spec.auth.as_ref(),
                        loser.route.spec.auth.as_ref(),
                    ),
                });
            }
        };
        for (r, loser) in &wildcards {
            if r > rank {
                hide(loser);
            }
        }
        for (_, loser) in under(anywhere, winner) {
            hide(loser);
        }
    }
    out
}

/// Host-less entries whose path lies under `winner`'s (a superset, checked exactly by
/// [`covers`]); `anywhere` is sorted by lower-cased path.
fn under<'a, 'b>(
    anywhere: &'a [(String, &'b RouteEntry)],
    winner: &RouteEntry,
) -> &'a [(String, &'b RouteEntry)] {
    // Most tables have no host-less entries: nothing to look for, nothing to lower.
    if anywhere.is_empty() {
        return anywhere;
    }
    let prefix = lower_path(winner);
    let start = anywhere.partition_point(|(p, _)| *p < prefix);
    let len = anywhere[start..].partition_point(|(p, _)| p.starts_with(&prefix));
    &anywhere[start..start + len]
}

fn lower_path(e: &RouteEntry) -> String {
    e.path_parts().1.to_ascii_lowercase()
}

/// Does every request `loser` matches also match `winner`? Paths compare without case,
/// as Envoy matches them.
pub fn covers(winner: &RouteEntry, loser: &RouteEntry) -> bool {
    let (w_exact, w_path) = winner.path_parts();
    let (l_exact, l_path) = loser.path_parts();
    let (w_path, l_path) = (w_path.to_ascii_lowercase(), l_path.to_ascii_lowercase());
    let paths = if w_exact {
        l_exact && w_path == l_path
    } else {
        prefix_covers(&w_path, &l_path)
    };
    let methods = winner.methods.is_empty()
        || (!loser.methods.is_empty() && loser.methods.iter().all(|m| winner.methods.contains(m)));
    let headers = winner.headers.iter().all(|h| loser.headers.contains(h));
    paths && methods && headers
}

/// Does the prefix matcher `prefix` match every path starting with (or equal to) `path`?
/// A prefix ending in `/` (or `/` itself) is a plain string prefix; any other matches
/// whole segments (`/api` matches `/api` and `/api/x`, never `/apix`).
fn prefix_covers(prefix: &str, path: &str) -> bool {
    if prefix.ends_with('/') {
        path.starts_with(prefix)
    } else {
        path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// Does `winner` enforce less than `loser`? Enforced means required and not shadow;
/// an enforced winner must also demand every scope the loser demands.
pub fn weaker(winner: Option<&Auth>, loser: Option<&Auth>) -> bool {
    match (enforced(winner), enforced(loser)) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(w), Some(l)) => !l.scopes.iter().all(|s| w.scopes.contains(s)),
    }
}

fn enforced(auth: Option<&Auth>) -> Option<&Auth> {
    auth.filter(|a| a.required() && a.shadow != Some(true))
}
