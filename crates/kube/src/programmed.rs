//! The `Programmed` condition: did every connected Envoy ACK a configuration that
//! contains this object as it is served now?
//!
//! xDS versions are content hashes per resource type, so "the node ACKed type version
//! V" pins down exactly which content it runs. For each published snapshot we record,
//! per type, which objects (at which generation) that type version carried; a node has
//! programmed an object when, for every type the object lives in, its ACKed version
//! is one that carried the object at its served generation. A NACK of a version that
//! carried it makes the condition False with Envoy's message. The Envoys are those of
//! every replica ([`crate::fleet`]), not only the ones connected to the lease holder.
use std::collections::{BTreeMap, VecDeque};

use portcullis_api::{Condition, Model, ObjectKey, status::types::PROGRAMMED};
use portcullis_translate::cluster_name;
use portcullis_xds::{Snapshot, type_url};

use crate::fleet::EnvoyGroup;

/// Objects a type version carried: key → served generation (0 when unknown).
type Carried = BTreeMap<ObjectKey, i64>;

/// How many published type versions are remembered per type. A node that ACKed an
/// older one than this is counted as not (yet) programmed, which is the safe answer.
const HISTORY: usize = 64;

#[derive(Default)]
pub struct Programmed {
    /// type URL → recent (type version, what it carried), newest last.
    history: BTreeMap<&'static str, VecDeque<(String, Carried)>>,
    /// Types each served object lives in.
    types_of: BTreeMap<ObjectKey, Vec<&'static str>>,
    generation: Carried,
}

impl Programmed {
    /// Records what `snapshot` (translated from `model`) carries. Call after every
    /// publish, identical snapshots included (a no-op then).
    pub fn record(&mut self, model: &Model, snapshot: &Snapshot) {
        let mut carried: BTreeMap<&'static str, Carried> = BTreeMap::new();
        let mut types_of: BTreeMap<ObjectKey, Vec<&'static str>> = BTreeMap::new();
        let mut generation = Carried::new();
        for (key, svc) in &model.services {
            let g = svc.metadata.generation.unwrap_or(0);
            generation.insert(key.clone(), g);
            let cluster = cluster_name(key);
            let mut types = vec![type_url::CLUSTER];
            carried
                .entry(type_url::CLUSTER)
                .or_default()
                .insert(key.clone(), g);
            if snapshot
                .get(type_url::CLUSTER_LOAD_ASSIGNMENT, &cluster)
                .is_some()
            {
                types.push(type_url::CLUSTER_LOAD_ASSIGNMENT);
                carried
                    .entry(type_url::CLUSTER_LOAD_ASSIGNMENT)
                    .or_default()
                    .insert(key.clone(), g);
            }
            types_of.insert(key.clone(), types);
        }
        for entry in &model.routes {
            let g = entry.route.metadata.generation.unwrap_or(0);
            generation.insert(entry.key.clone(), g);
            carried
                .entry(type_url::ROUTE_CONFIGURATION)
                .or_default()
                .insert(entry.key.clone(), g);
            types_of.insert(entry.key.clone(), vec![type_url::ROUTE_CONFIGURATION]);
        }
        // A Host shapes the route configuration (ownership, redirects); with a
        // certificate it is also a filter chain of the HTTPS listener and an SDS secret.
        for (key, served) in &model.hosts {
            let g = served.host.metadata.generation.unwrap_or(0);
            generation.insert(key.clone(), g);
            let mut types = vec![type_url::ROUTE_CONFIGURATION];
            if served.certificate.is_some()
                && snapshot
                    .get(
                        type_url::SECRET,
                        &portcullis_translate::tls::secret_name(key),
                    )
                    .is_some()
            {
                types.extend([type_url::LISTENER, type_url::SECRET]);
            }
            for t in &types {
                carried.entry(t).or_default().insert(key.clone(), g);
            }
            types_of.insert(key.clone(), types);
        }
        for t in [
            type_url::CLUSTER,
            type_url::CLUSTER_LOAD_ASSIGNMENT,
            type_url::ROUTE_CONFIGURATION,
            type_url::LISTENER,
            type_url::SECRET,
        ] {
            let Some(version) = snapshot.type_version(t) else {
                continue;
            };
            let now = carried.remove(t).unwrap_or_default();
            let h = self.history.entry(t).or_default();
            // Same content, maybe newer generations (an edit that changes no output):
            // the version carries both.
            if let Some((_, c)) = h.iter_mut().find(|(v, _)| v == version) {
                c.extend(now);
                continue;
            }
            h.push_back((version.to_owned(), now));
            while h.len() > HISTORY {
                h.pop_front();
            }
        }
        self.types_of = types_of;
        self.generation = generation;
    }

    /// The condition for `key`, given the Envoys connected to every replica. `None`
    /// when the object is not served (its other conditions already say why).
    pub fn condition(&self, key: &ObjectKey, envoys: &[EnvoyGroup]) -> Option<Condition> {
        let types = self.types_of.get(key)?;
        let generation = self.generation.get(key).copied().unwrap_or(0);
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
            for t in types {
                let state = group.types.get(*t);
                let acked = state.and_then(|s| s.acked.as_deref());
                if acked.is_some_and(|v| self.carries(t, v, key, generation)) {
                    continue;
                }
                if let Some(nack) = state.and_then(|s| s.nack.as_ref())
                    && self.carries(t, &nack.version, key, generation)
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

    fn carries(&self, type_url: &str, version: &str, key: &ObjectKey, generation: i64) -> bool {
        self.history.get(type_url).is_some_and(|h| {
            h.iter()
                .any(|(v, c)| v == version && c.get(key) == Some(&generation))
        })
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
