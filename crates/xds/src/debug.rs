//! JSON for `GET /debug/xds`.

use serde_json::{Map, Value, json};

use crate::cache::Cache;

impl Cache {
    /// Snapshot summary, open streams and the NACK total, for operators.
    pub fn debug(&self) -> Value {
        let snapshot = self.snapshot();
        let types: Map<String, Value> = snapshot
            .type_urls()
            .map(|t| {
                (
                    t.to_owned(),
                    json!({
                        "version": snapshot.type_version(t),
                        "resources": snapshot.type_len(t),
                    }),
                )
            })
            .collect();
        let nodes: Vec<Value> = self
            .nodes()
            .into_iter()
            .map(|n| {
                json!({
                    "id": n.id,
                    "stream_id": n.stream_id,
                    "cluster": n.cluster,
                    "protocol": n.protocol,
                    "peer": n.peer,
                    "connected_at": n.connected_at,
                    "last_seen": n.last_seen,
                    "types": n.types,
                })
            })
            .collect();
        json!({
            "snapshot": {
                "version": snapshot.version(),
                "resources": snapshot.len(),
                "types": types,
            },
            "nodes": nodes,
            "nacks_total": self.nacks_total(),
        })
    }
}
