//! The `Programmed` condition: did every connected Envoy ACK a configuration that
//! contains this object as it is served now?
//!
//! xDS versions are content hashes per resource type, so "the node ACKed type version
//! V" pins down exactly which content it runs. Versions are numbered per type as they
//! are published, and each served object keeps, per type it lives in, the first version
//! that carried it at its served generation: every later version carries it too, since
//! an object that changes or leaves is placed anew. A node has programmed an object when,
//! for every type the object lives in, its ACKed version is that one or later (among the
//! last few remembered). A NACK of such a version makes the condition False with Envoy's
//! message. The Envoys are those of
//! every replica ([`crate::fleet`]), not only the ones connected to the lease holder.
use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
};

use portcullis_api::{Condition, Model, ObjectKey, RouteEntry, status::types::PROGRAMMED};
use portcullis_translate::write_cluster_name;
use portcullis_xds::{Snapshot, type_url};

use crate::fleet::EnvoyGroup;

/// The types an object can live in, in the order a condition checks them.
const TYPES: [&str; 5] = [
    type_url::CLUSTER,
    type_url::CLUSTER_LOAD_ASSIGNMENT,
    type_url::ROUTE_CONFIGURATION,
    type_url::LISTENER,
    type_url::SECRET,
];
const CLUSTER: u8 = 1 << 0;
const ENDPOINTS: u8 = 1 << 1;
const ROUTES: u8 = 1 << 2;
const LISTENER: u8 = 1 << 3;
const SECRET: u8 = 1 << 4;

/// How many published type versions are remembered per type. A node that ACKed an
/// older one than this is counted as not (yet) programmed, which is the safe answer.
const HISTORY: usize = 64;

/// One type's recent versions, each with the sequence number it was (last) published
/// under, newest last.
#[derive(Default)]
struct Versions {
    seq: u64,
    recent: VecDeque<(String, u64)>,
}

impl Versions {
    /// `version` is being published now; returns its sequence number. A version
    /// published again (an edit undone) is numbered anew: it carries what is served now.
    fn publish(&mut self, version: &str) -> u64 {
        if self.recent.back().is_some_and(|(v, _)| v == version) {
            return self.seq;
        }
        self.recent.retain(|(v, _)| v != version);
        self.seq += 1;
        self.recent.push_back((version.to_owned(), self.seq));
        while self.recent.len() > HISTORY {
            self.recent.pop_front();
        }
        self.seq
    }

    fn seq_of(&self, version: &str) -> Option<u64> {
        self.recent
            .iter()
            .rev()
            .find(|(v, _)| v == version)
            .map(|&(_, s)| s)
    }
}

/// Where a served object is: its generation, the types it lives in, and per type the
/// first version (sequence number) that carried it at that generation. Every version
/// published since carried it too: an object that changes or leaves is placed anew.
struct Placed {
    generation: i64,
    types: u8,
    since: [u64; TYPES.len()],
    /// The last [`Programmed::record`] that found it served.
    seen: u64,
}

#[derive(Default)]
pub struct Programmed {
    versions: [Versions; TYPES.len()],
    /// Hashed, not ordered: every record and every status round looks up each object,
    /// and at 10k objects a B-tree's string compares were most of `record`.
    placed: HashMap<ObjectKey, Placed, foldhash::fast::RandomState>,
    records: u64,
    /// The route entries the last record placed (shared with its model). An entry of
    /// this record that is one of them, the very same allocation, is its Route served
    /// as it was then, so nothing of it changed: looking up its Route by key and
    /// reading its generation, per entry, was most of `record` at 10k Routes.
    entries: Vec<Arc<RouteEntry>>,
}

impl Programmed {
    /// Records what `snapshot` (translated from `model`) carries. Call after every
    /// publish, identical snapshots included (a no-op then). Touches only the objects
    /// that are new, changed generation or moved between types, so an edit of one
    /// object among thousands costs a lookup per object.
    pub fn record(&mut self, model: &Model, snapshot: &Snapshot) {
        self.records += 1;
        let mut seq = [0; TYPES.len()];
        for (i, t) in TYPES.iter().enumerate() {
            if let Some(version) = snapshot.type_version(t) {
                seq[i] = self.versions[i].publish(version);
            }
        }
        let mut cluster = String::new();
        for (key, svc) in &model.services {
            write_cluster_name(&mut cluster, key);
            let endpoints = snapshot
                .get(type_url::CLUSTER_LOAD_ASSIGNMENT, &cluster)
                .is_some();
            let types = CLUSTER | if endpoints { ENDPOINTS } else { 0 };
            self.place(key, svc.metadata.generation.unwrap_or(0), types, &seq);
        }
        // Both lists are in precedence order, and an edit leaves most entries where they
        // were: the same allocations at the front and at the back of both are passed
        // by comparing pointers in step, and only the middle is looked up (at 10k
        // Routes, a map of every entry per record was a visible part of an edit).
        let old = std::mem::take(&mut self.entries);
        let new = &model.routes;
        let same = |(a, b): (&Arc<RouteEntry>, &Arc<RouteEntry>)| Arc::ptr_eq(a, b);
        let front = old.iter().zip(new).take_while(|&p| same(p)).count();
        let back = (old[front..].iter().rev())
            .zip(new[front..].iter().rev())
            .take_while(|&p| same(p))
            .count();
        let (old_middle, new_middle) =
            (&old[front..old.len() - back], &new[front..new.len() - back]);
        // Each last entry in the middle, and whether this record still has it. Entries
        // are distinct allocations, so one passed above is not among these.
        let mut last: HashMap<*const RouteEntry, bool, foldhash::fast::RandomState> =
            old_middle.iter().map(|e| (Arc::as_ptr(e), false)).collect();
        for entry in new_middle {
            if let Some(still) = last.get_mut(&Arc::as_ptr(entry)) {
                *still = true;
                continue;
            }
            let g = entry.route.metadata.generation.unwrap_or(0);
            self.place(&entry.key, g, ROUTES, &seq);
        }
        // A Host shapes the route configuration (ownership, redirects); with a
        // certificate it is also a filter chain of the HTTPS listener and an SDS secret.
        for (key, served) in &model.hosts {
            let tls = served.certificate.is_some()
                && snapshot
                    .get(
                        type_url::SECRET,
                        &portcullis_translate::tls::secret_name(key),
                    )
                    .is_some();
            let types = ROUTES | if tls { LISTENER | SECRET } else { 0 };
            let g = served.host.metadata.generation.unwrap_or(0);
            self.place(key, g, types, &seq);
        }
        let records = self.records;
        // Routes whose entries all left and were not placed again (served no more).
        // A Route's entries are built together, so one that left usually means its
        // Route was edited (placed again) or removed; checking that none of its entries
        // stayed costs a pass over the entries only when a Route was removed.
        let placed = &self.placed;
        let mut gone: HashSet<&ObjectKey, foldhash::fast::RandomState> = old_middle
            .iter()
            .filter(|e| !last[&Arc::as_ptr(e)])
            .map(|e| &e.key)
            .filter(|k| placed.get(*k).is_some_and(|p| p.seen != records))
            .collect();
        if !gone.is_empty() {
            for entry in &model.routes {
                gone.remove(&entry.key);
            }
        }
        let gone: Vec<ObjectKey> = gone.into_iter().cloned().collect();
        for key in &gone {
            self.placed.remove(key);
        }
        // Other objects are placed on every record: those not seen now are not served.
        // Routes unchanged since the last record were not looked at (not `seen`).
        self.placed
            .retain(|k, p| p.seen == records || k.kind == "Route");
        self.entries = model.routes.clone();
    }

    /// `key` is served at generation `g` in `types`; `seq` numbers the versions being
    /// published. A type it newly lives in, or any type after a new generation, is
    /// carried from this publish on.
    fn place(&mut self, key: &ObjectKey, g: i64, types: u8, seq: &[u64; TYPES.len()]) {
        let seen = self.records;
        let Some(p) = self.placed.get_mut(key) else {
            self.placed.insert(
                key.clone(),
                Placed {
                    generation: g,
                    types,
                    since: *seq,
                    seen,
                },
            );
            return;
        };
        let renewed = if p.generation == g { !p.types } else { u8::MAX };
        for (i, since) in p.since.iter_mut().enumerate() {
            if types & renewed & (1 << i) != 0 {
                *since = seq[i];
            }
        }
        p.generation = g;
        p.types = types;
        p.seen = seen;
    }

    /// The condition for `key`, given the Envoys connected to every replica. `None`
    /// when the object is not served (its other conditions already say why).
    pub fn condition(&self, key: &ObjectKey, envoys: &[EnvoyGroup]) -> Option<Condition> {
        let placed = self.placed.get(key)?;
        let total: usize = envoys.iter().map(|g| g.count).sum();
        if total == 0 {
            return Some(Condition {
                status: "Unknown".into(),
                ..Condition::new(
                    PROGRAMMED,
                    false,
                    "NoEnvoy",
                    "no Envoy is connected to any control plane replica",
                )
            });
        }
        let mut pending = 0;
        for group in envoys {
            for (i, t) in TYPES.iter().enumerate() {
                if placed.types & (1 << i) == 0 {
                    continue;
                }
                let state = group.types.get(*t);
                let acked = state.and_then(|s| s.acked.as_deref());
                if acked.is_some_and(|v| self.carries(i, v, placed)) {
                    continue;
                }
                if let Some(nack) = state.and_then(|s| s.nack.as_ref())
                    && self.carries(i, &nack.version, placed)
                {
                    return Some(Condition::new(
                        PROGRAMMED,
                        false,
                        "Rejected",
                        format!(
                            "{} rejected the configuration: {}",
                            name_envoys(group),
                            nack.message
                        ),
                    ));
                }
                pending += group.count;
                break;
            }
        }
        Some(if pending == 0 {
            Condition::new(
                PROGRAMMED,
                true,
                "Programmed",
                format!("ACKed by {total} Envoy(s)"),
            )
        } else {
            Condition::new(
                PROGRAMMED,
                false,
                "Pending",
                format!("{pending} of {total} Envoy(s) have not ACKed it yet"),
            )
        })
    }

    /// Whether `version` of type `i` carries the object `placed` as it is served now.
    fn carries(&self, i: usize, version: &str, placed: &Placed) -> bool {
        self.versions[i]
            .seq_of(version)
            .is_some_and(|s| s >= placed.since[i])
    }
}

/// "Envoy edge-1", or "Envoy edge-1 and 4 more" for a group.
fn name_envoys(group: &EnvoyGroup) -> String {
    let first = group
        .nodes
        .first()
        .map(String::as_str)
        .unwrap_or("(unnamed)");
    match group.count {
        0 | 1 => format!("Envoy {first}"),
        n => format!("Envoy {first} and {} more", n - 1),
    }
}

#[cfg(test)]
#[path = "programmed_tests.rs"]
mod tests;
