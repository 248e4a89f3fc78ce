//! The routing table patched from the last model's, when an edit adds and removes
//! entries that name plain hostnames only. Building the table indexes every entry by
//! every hostname it names (~2.5 ms of each edit at 10k Routes, most of it reading
//! 10k entries scattered in memory); a patch moves the last table's positions to the
//! new list and places each new entry in its hostnames' lists.
//!
//! Why a patch gives the full build's table: an entry naming plain hostnames only
//! belongs to exactly those hostnames' lists (no wildcard covers a plain domain of
//! another's list, and such an entry is never host-less), each list is sorted by
//! [`compare_on`] for its domain (a total order), and the entries kept keep their
//! relative order in the new list. What a patch cannot see, it leaves to a build:
//! Hosts that changed (admission), wildcard or host-less entries (they join many
//! lists), a hostname named for the first time or no longer named (a list comes or
//! goes).
use std::sync::Arc;

use super::Positions;
use crate::{Model, RouteEntry, precedence::compare_on};

/// How the last model's entries became this one's.
#[derive(Debug)]
pub(crate) struct Moves {
    /// For each entry of the last list, where it is now (`None`: gone).
    pub remap: Vec<Option<usize>>,
    /// Where the entries built for this list are.
    pub added: Vec<usize>,
    /// The hostnames the gone entries named (all plain).
    pub gone_hosts: Vec<String>,
}

/// Most new entries patched in; beyond, a build is as quick.
const MOST_ADDED: usize = 256;

/// An entry's hostnames when it names at least one and none is a wildcard.
pub(crate) fn plain_hosts(entry: &RouteEntry) -> Option<&[String]> {
    let hosts = entry.hosts();
    let plain = !hosts.is_empty() && hosts.iter().all(|h| !h.starts_with('*'));
    plain.then_some(hosts)
}

impl Model {
    /// This model's table from `last`, the table of the model before it (admitted by
    /// the same Hosts), whose entries `moves` maps to these. `None` when only a
    /// build can tell.
    pub(crate) fn patched_positions(&self, last: &Positions, moves: &Moves) -> Option<Positions> {
        if moves.added.len() > MOST_ADDED {
            return None;
        }
        let mut out = Positions::with_capacity(last.len());
        for (domain, at) in last {
            let mut now = Vec::with_capacity(at.len() + 1);
            for &i in at {
                if let Some(to) = *moves.remap.get(i)? {
                    now.push(to);
                }
            }
            out.push((domain.clone(), now));
        }
        // The named domains in order, then `*` (host-less entries only).
        let named = out.len().checked_sub(1)?;
        let find = |out: &Positions, host: &str| {
            out[..named]
                .binary_search_by(|(d, _)| d.as_str().cmp(host))
                .ok()
        };
        for &a in &moves.added {
            let entry: &Arc<RouteEntry> = self.routes.get(a)?;
            for (n, host) in plain_hosts(entry)?.iter().enumerate() {
                if entry.hosts()[..n].contains(host) {
                    continue;
                }
                let d = find(&out, host)?;
                // Validation already refused a Route naming a hostname whose Host
                // does not admit it; asked anyway, as the build asks of every entry.
                if !self.admission(host)(entry) {
                    continue;
                }
                let list = &mut out[d].1;
                let at =
                    list.partition_point(|&e| compare_on(host, &self.routes[e], entry).is_lt());
                list.insert(at, a);
            }
        }
        for host in &moves.gone_hosts {
            let d = find(&out, host)?;
            // No entry in the list names its domain any more: the domain may go (an
            // edited Route's new entries were placed above, so an edit is not this).
            let named_here = out[d]
                .1
                .iter()
                .any(|&e| self.routes[e].hosts().contains(host));
            if !named_here {
                return None;
            }
        }
        Some(out)
    }
}

#[cfg(test)]
#[path = "patch_tests.rs"]
mod tests;
