//! Which of two Route entries Envoy tries first on a host, and why.
//!
//! Within one host, requests are matched against entries in this order, each step
//! deciding only when the ones before it tie:
//!
//! 1. **Host**: entries that name the host exactly, then wildcard hosts (longer suffix
//!    first), then host-less entries. A Route that names a host owns that host's
//!    traffic: a tenant cannot take paths on another team's host by leaving `hosts`
//!    empty.
//! 2. **Path kind**: exact paths before prefixes.
//! 3. **Path length**: longer paths before shorter ones, so the most specific path wins
//!    whatever methods or headers a broader one names. (The order this project grew
//!    from put method-bearing Routes before longer paths, which let a public `GET /`
//!    answer for an authenticated `/admin`.)
//! 4. **Methods**: entries that name methods before those that take any method.
//! 5. **Headers**: more header matchers before fewer.
//! 6. **Age**: older before newer (creation time; first seen in file mode).
//! 7. **Name**: namespace/name, then path index, so the order is total and the output
//!    deterministic.
use std::{cmp::Ordering, fmt};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::RouteEntry;

/// One step of the precedence order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    Host,
    PathKind,
    PathLength,
    Methods,
    Headers,
    Age,
    Name,
}

impl Step {
    pub const ALL: [Step; 7] = [
        Step::Host,
        Step::PathKind,
        Step::PathLength,
        Step::Methods,
        Step::Headers,
        Step::Age,
        Step::Name,
    ];

    /// Why `winner` goes before `loser` on `host` when this step decided.
    pub fn explain(self, winner: &RouteEntry, loser: &RouteEntry, host: &str) -> String {
        let (_, wp) = winner.path_parts();
        let (_, lp) = loser.path_parts();
        match self {
            Step::Host => format!(
                "it {} while the other {}",
                HostRank::of(winner, host),
                HostRank::of(loser, host)
            ),
            Step::PathKind => "its path is exact, the other's a prefix".into(),
            Step::PathLength => format!("its path {wp} is longer (more specific) than {lp}",),
            Step::Methods => format!(
                "it names methods ({}) and the other takes any method",
                winner.methods.join(", ")
            ),
            Step::Headers => format!(
                "it matches {} header(s), the other {}",
                winner.headers.len(),
                loser.headers.len()
            ),
            Step::Age => "it is older (the oldest Route wins ties)".into(),
            Step::Name => "its namespace/name sorts first (same age)".into(),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Host => "host",
            Step::PathKind => "exact before prefix",
            Step::PathLength => "longer path first",
            Step::Methods => "methods before any method",
            Step::Headers => "more headers first",
            Step::Age => "older first",
            Step::Name => "name",
        })
    }
}

/// How specifically an entry claims a host: lower is more specific.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum HostRank {
    /// The Route names the host itself.
    Exact,
    /// A wildcard of the Route covers it; the longer the suffix, the more specific
    /// (stored negated so that smaller sorts first).
    Wildcard(std::cmp::Reverse<usize>),
    /// The Route names no host.
    Any,
    /// The entry does not apply to the host at all.
    None,
}

impl HostRank {
    /// The rank of `entry` on `host` (a virtual host's domain, `*` for the catch-all).
    pub fn of(entry: &RouteEntry, host: &str) -> HostRank {
        let hosts = entry.hosts();
        if hosts.is_empty() {
            return HostRank::Any;
        }
        if hosts.iter().any(|h| h == host) {
            return HostRank::Exact;
        }
        hosts
            .iter()
            .filter(|h| covers(h, host))
            .map(|h| h.len())
            .max()
            .map_or(HostRank::None, |len| {
                HostRank::Wildcard(std::cmp::Reverse(len))
            })
    }

    /// The rank an entry has on the hosts it names (for orders without one host).
    fn best(entry: &RouteEntry) -> HostRank {
        let hosts = entry.hosts();
        if hosts.is_empty() {
            HostRank::Any
        } else if hosts.iter().any(|h| !h.starts_with('*')) {
            HostRank::Exact
        } else {
            let len = hosts.iter().map(String::len).max().unwrap_or(0);
            HostRank::Wildcard(std::cmp::Reverse(len))
        }
    }
}

impl fmt::Display for HostRank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostRank::Exact => "names the host",
            HostRank::Wildcard(_) => "covers the host with a wildcard",
            HostRank::Any => "names no host",
            HostRank::None => "does not apply to the host",
        })
    }
}

/// Does a host pattern cover a virtual host's domain? `*.example.com` covers
/// `a.example.com` and `*.a.example.com`, never `example.com` (as Envoy's suffix
/// wildcards do).
pub fn covers(pattern: &str, host: &str) -> bool {
    pattern == host
        || pattern
            .strip_prefix('*')
            .is_some_and(|suffix| host.ends_with(suffix) && host.len() > suffix.len())
}

/// Compares two entries at one step; `host` is `None` for the host-independent order.
fn step(a: &RouteEntry, b: &RouteEntry, s: Step, host: Option<&str>) -> Ordering {
    let (a_exact, a_path) = a.path_parts();
    let (b_exact, b_path) = b.path_parts();
    match s {
        Step::Host => match host {
            Some(h) => HostRank::of(a, h).cmp(&HostRank::of(b, h)),
            None => HostRank::best(a).cmp(&HostRank::best(b)),
        },
        Step::PathKind => b_exact.cmp(&a_exact),
        Step::PathLength => b_path.len().cmp(&a_path.len()),
        Step::Methods => a.methods.is_empty().cmp(&b.methods.is_empty()),
        Step::Headers => b.headers.len().cmp(&a.headers.len()),
        Step::Age => age_order(&a.route.metadata, &b.route.metadata),
        Step::Name => a
            .key
            .cmp(&b.key)
            .then(a.path_index.cmp(&b.path_index))
            .then_with(|| a_path.cmp(b_path)),
    }
}

/// The order of entries on `host`.
pub fn compare_on(host: &str, a: &RouteEntry, b: &RouteEntry) -> Ordering {
    Step::ALL
        .iter()
        .map(|&s| step(a, b, s, Some(host)))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// The step that puts `a` and `b` in their order on `host`, and that order.
pub fn deciding_step(host: &str, a: &RouteEntry, b: &RouteEntry) -> Option<(Step, Ordering)> {
    Step::ALL
        .iter()
        .map(|&s| (s, step(a, b, s, Some(host))))
        .find(|(_, o)| o.is_ne())
}

/// The host-independent order of the model's entry list: as [`compare_on`] with each
/// entry ranked by the most specific host it names.
pub fn precedence(a: &RouteEntry, b: &RouteEntry) -> Ordering {
    Step::ALL
        .iter()
        .map(|&s| step(a, b, s, None))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// [`precedence_key`]'s value: the steps packed into a `u64`, then the age.
pub type PrecedenceKey = (u64, i128);

/// What [`precedence`] decides before its name step, as one value that orders the
/// same way: sorting by it first compares each entry's host rank, path and age once,
/// instead of recomputing them in every comparison (at 10k Routes the sort was a
/// visible part of each rebuild). Ties go to [`precedence`] itself.
///
/// The steps are packed into two integers, so a comparison is two integer compares.
/// Each field saturates rather than wraps: an oversized value (beyond what validation
/// admits) can only make two keys equal, which [`precedence`] then decides, never
/// put them out of order.
pub fn precedence_key(e: &RouteEntry) -> PrecedenceKey {
    let (exact, path) = e.path_parts();
    let capped = |n: usize, bits: u32| n.min((1 << bits) - 1) as u64;
    // Exact, then wildcards longest first, then any host, then none: 17 bits.
    let host = match HostRank::best(e) {
        HostRank::Exact => 0,
        HostRank::Wildcard(std::cmp::Reverse(len)) => 1 + (0xffff - capped(len, 16)),
        HostRank::Any => 0x1_0001,
        HostRank::None => 0x1_0002,
    };
    let steps = host << 46
        | u64::from(!exact) << 45
        | (0xffff_ffff - capped(path.len(), 32)) << 13
        | u64::from(e.methods.is_empty()) << 12
        | (0xfff - capped(e.headers.len(), 12));
    (steps, age_key(&e.route.metadata))
}

/// [`age_order`] as one integer (nanoseconds since the epoch), for sort keys; without
/// a creation time counts as newest.
pub fn age_key(meta: &ObjectMeta) -> i128 {
    meta.creation_timestamp
        .as_ref()
        .map_or(i128::MAX, |t| t.0.as_nanosecond())
}

/// Older objects first; objects without a creation time count as newest.
pub fn age_order(a: &ObjectMeta, b: &ObjectMeta) -> Ordering {
    match (&a.creation_timestamp, &b.creation_timestamp) {
        (Some(x), Some(y)) => x.0.cmp(&y.0),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}
