//! What each replica's Envoys run, in a form replicas can share.
//!
//! Every replica serves xDS, but only the lease holder writes status, so it must learn
//! what the Envoys connected to its peers ACKed or rejected. Each replica publishes a
//! [`FleetReport`] (its Envoys grouped by identical per-type state) in a ConfigMap
//! ([`crate::fleet_sync`]); the leader merges the fresh ones with its own. Versions
//! are content hashes per type, so a version ACKed on any replica means the same
//! content everywhere.
use std::collections::BTreeMap;

use portcullis_xds::NodeStatus;
use serde::{Deserialize, Serialize};

/// Node ids kept per group, to name an Envoy in a `Rejected` message.
const SAMPLE_IDS: usize = 3;
/// Groups kept per report; the rest are merged into one group with no state, which
/// counts as not yet programmed (the safe answer). Bounds the ConfigMap far below
/// the API server's 1 MiB object limit.
pub const MAX_GROUPS: usize = 500;
/// Envoy's NACK details can be long; the condition message needs the start.
const MAX_MESSAGE: usize = 1024;

/// The state of one resource type on an Envoy, without what only one stream knows.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TypeState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nack: Option<Nack>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Nack {
    pub version: String,
    pub message: String,
}

/// `count` Envoys in the same state; `nodes` names up to three of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvoyGroup {
    pub count: usize,
    pub nodes: Vec<String>,
    /// type URL → state.
    pub types: BTreeMap<String, TypeState>,
}

impl EnvoyGroup {
    /// One Envoy, `node`, that ACKed every type of `snapshot` at its version: the fleet
    /// of the controller's tests and benchmark, where no Envoy runs.
    pub fn all_acked(node: &str, snapshot: &portcullis_xds::Snapshot) -> EnvoyGroup {
        let types = snapshot.type_urls().map(|t| {
            let state = TypeState {
                acked: snapshot.type_version(t).map(str::to_owned),
                nack: None,
            };
            (t.to_owned(), state)
        });
        EnvoyGroup {
            count: 1,
            nodes: vec![node.to_owned()],
            types: types.collect(),
        }
    }
}

/// One replica's Envoys, as published in its ConfigMap.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetReport {
    pub replica: String,
    /// RFC 3339; refreshed by every heartbeat.
    pub updated_at: String,
    pub envoys: Vec<EnvoyGroup>,
}

/// Groups the Envoy streams among `nodes` by identical ACK/NACK state.
///
/// `portcullis ratelimit` holds an ADS stream too, for its `RateLimitConfig`s, and
/// never subscribes to Envoy's types: it is left out so it cannot keep every object
/// Pending. A stream that has asked for nothing yet counts as an Envoy (Pending).
pub fn summarize(nodes: &[NodeStatus]) -> Vec<EnvoyGroup> {
    let mut groups: BTreeMap<BTreeMap<String, TypeState>, EnvoyGroup> = BTreeMap::new();
    for node in nodes.iter().filter(|n| is_envoy(n)) {
        let types: BTreeMap<String, TypeState> = node
            .types
            .iter()
            .map(|(t, s)| {
                let state = TypeState {
                    acked: s.acked.clone(),
                    nack: s.nack.as_ref().map(|n| Nack {
                        version: n.version.clone(),
                        message: truncate(&n.message),
                    }),
                };
                (t.clone(), state)
            })
            .collect();
        let group = groups.entry(types.clone()).or_insert_with(|| EnvoyGroup {
            count: 0,
            nodes: Vec::new(),
            types,
        });
        group.count += 1;
        if group.nodes.len() < SAMPLE_IDS && !group.nodes.contains(&node.id) {
            group.nodes.push(node.id.clone());
        }
    }
    let mut out: Vec<EnvoyGroup> = groups.into_values().collect();
    if out.len() > MAX_GROUPS {
        let rest = out.split_off(MAX_GROUPS - 1);
        out.push(EnvoyGroup {
            count: rest.iter().map(|g| g.count).sum(),
            nodes: rest
                .into_iter()
                .flat_map(|g| g.nodes)
                .take(SAMPLE_IDS)
                .collect(),
            types: BTreeMap::new(),
        });
    }
    out
}

fn is_envoy(node: &NodeStatus) -> bool {
    node.types.is_empty()
        || node
            .types
            .keys()
            .any(|t| t.starts_with("type.googleapis.com/envoy."))
}

fn truncate(message: &str) -> String {
    if message.len() <= MAX_MESSAGE {
        return message.to_owned();
    }
    let mut end = MAX_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

#[cfg(test)]
#[path = "fleet_tests.rs"]
mod tests;
