//! Per-stream status of connected Envoy nodes, as shown in debug output and
//! used for status reporting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::SystemTime;

use serde::Serialize;

use crate::order::ByType;

/// Which ADS variant a stream uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Sotw,
    Delta,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Sotw => "sotw",
            Protocol::Delta => "delta",
        }
    }
}

/// One open ADS stream. A node id may have several (e.g. during a hot
/// restart), so they are keyed by `stream_id`.
#[derive(Clone, Debug, Serialize)]
pub struct NodeStatus {
    pub stream_id: u64,
    pub id: String,
    pub cluster: String,
    pub protocol: Protocol,
    pub peer: Option<String>,
    /// RFC 3339, UTC.
    pub connected_at: String,
    /// When the node last sent a request on this stream (RFC 3339, UTC).
    pub last_seen: String,
    pub types: BTreeMap<String, TypeStatus>,
}

/// Status of one resource type on one stream.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TypeStatus {
    /// Version of the last response sent.
    pub sent: Option<String>,
    /// When it was sent (RFC 3339, UTC).
    pub sent_at: Option<String>,
    /// Last version the node ACKed.
    pub acked: Option<String>,
    /// Last rejection; cleared by a later ACK, so `Some` means the node is
    /// currently running older config than we sent.
    pub nack: Option<NackStatus>,
    /// The last push latency measured on this stream, in milliseconds: from the
    /// version arriving in a snapshot (or the stream opening) to this node's ACK.
    pub push_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NackStatus {
    pub version: String,
    pub message: String,
    /// RFC 3339, UTC.
    pub at: String,
}

pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Things a stream's protocol logic observed; the driver applies them to
/// the shared status table, metrics and logs.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Event {
    Sent {
        type_url: String,
        version: String,
        resources: usize,
    },
    Ack {
        type_url: String,
        version: String,
    },
    Nack {
        type_url: String,
        version: String,
        message: String,
    },
}

/// One open stream as the status table keeps it: what [`NodeStatus`] shows, without
/// its text. Every connected Envoy has one, so times stay times and the types sit in a
/// vector until someone asks ([`Record::status`]); a `NodeStatus` as stored would cost
/// a B-tree node (room for eleven types) and a formatted time per type.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) id: String,
    pub(crate) cluster: String,
    protocol: Protocol,
    peer: Option<SocketAddr>,
    connected_at: SystemTime,
    pub(crate) last_seen: SystemTime,
    types: ByType<TypeRecord>,
}

#[derive(Debug, Default)]
struct TypeRecord {
    sent: Option<String>,
    sent_at: Option<SystemTime>,
    acked: Option<String>,
    /// Boxed: rare, and the only large field.
    nack: Option<Box<NackStatus>>,
    push_ms: Option<u64>,
}

impl Record {
    pub(crate) fn new(protocol: Protocol, peer: Option<SocketAddr>) -> Record {
        let now = SystemTime::now();
        Record {
            id: String::new(),
            cluster: String::new(),
            protocol,
            peer,
            connected_at: now,
            last_seen: now,
            types: ByType::default(),
        }
    }

    /// The stream as [`crate::Cache::nodes`] shows it.
    pub(crate) fn status(&self, stream_id: u64) -> NodeStatus {
        let types = self
            .types
            .iter()
            .map(|(t, r)| {
                let status = TypeStatus {
                    sent: r.sent.clone(),
                    sent_at: r.sent_at.map(rfc3339),
                    acked: r.acked.clone(),
                    nack: r.nack.as_deref().cloned(),
                    push_ms: r.push_ms,
                };
                (t.to_owned(), status)
            })
            .collect();
        NodeStatus {
            stream_id,
            id: self.id.clone(),
            cluster: self.cluster.clone(),
            protocol: self.protocol,
            peer: self.peer.map(|p| p.to_string()),
            connected_at: rfc3339(self.connected_at),
            last_seen: rfc3339(self.last_seen),
            types,
        }
    }

    /// The version of `type_url` the node last ACKed.
    pub(crate) fn acked(&self, type_url: &str) -> Option<&str> {
        self.types.get(type_url)?.acked.as_deref()
    }

    pub(crate) fn set_push_ms(&mut self, type_url: &str, ms: u64) {
        if let Some(t) = self.types.get_mut(type_url) {
            t.push_ms = Some(ms);
        }
    }

    /// Whether the node currently rejects the latest version of some type.
    pub(crate) fn has_nack(&self) -> bool {
        self.types.iter().any(|(_, t)| t.nack.is_some())
    }

    pub(crate) fn apply(&mut self, event: &Event) {
        match event {
            Event::Sent {
                type_url, version, ..
            } => {
                let t = self.types.get_or_default(type_url);
                t.sent = Some(version.clone());
                t.sent_at = Some(SystemTime::now());
            }
            Event::Ack { type_url, version } => {
                let t = self.types.get_or_default(type_url);
                t.acked = Some(version.clone());
                t.nack = None;
            }
            Event::Nack {
                type_url,
                version,
                message,
            } => {
                self.types.get_or_default(type_url).nack = Some(Box::new(NackStatus {
                    version: version.clone(),
                    // Envoy may quote the whole rejected resource: keep the start.
                    message: crate::limits::truncate(message, crate::limits::MAX_NACK_MESSAGE)
                        .to_string(),
                    at: rfc3339(SystemTime::now()),
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::type_url::{CLUSTER, LISTENER};

    #[test]
    fn a_record_shows_as_the_status_it_stands_for() {
        let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let mut r = Record::new(Protocol::Delta, Some(peer));
        r.id = "envoy-1".into();
        let sent = |t: &str, v: &str| Event::Sent {
            type_url: t.into(),
            version: v.into(),
            resources: 1,
        };
        r.apply(&sent(LISTENER, "v1"));
        r.apply(&sent(CLUSTER, "v1"));
        r.apply(&Event::Nack {
            type_url: CLUSTER.into(),
            version: "v1".into(),
            message: "x".repeat(10 * MAX_NACK),
        });
        assert!(r.has_nack());
        let status = r.status(7);
        assert_eq!((status.stream_id, status.id.as_str()), (7, "envoy-1"));
        assert_eq!(status.peer.as_deref(), Some("127.0.0.1:4000"));
        assert_eq!(status.protocol, Protocol::Delta);
        // Times read as RFC 3339 text, as before they were kept as times.
        assert!(
            status.connected_at.ends_with('Z'),
            "{}",
            status.connected_at
        );
        let cds = &status.types[CLUSTER];
        assert_eq!(cds.sent.as_deref(), Some("v1"));
        assert!(cds.sent_at.as_deref().is_some_and(|t| t.ends_with('Z')));
        let nack = cds.nack.as_ref().unwrap();
        assert_eq!(nack.message.len(), MAX_NACK, "a quoted resource is cut");
        assert_eq!(status.types[LISTENER].nack, None);

        // An ACK clears the rejection and is what `acked` reads.
        r.apply(&Event::Ack {
            type_url: CLUSTER.into(),
            version: "v2".into(),
        });
        r.set_push_ms(CLUSTER, 12);
        assert!(!r.has_nack());
        assert_eq!(r.acked(CLUSTER), Some("v2"));
        assert_eq!(r.acked(LISTENER), None);
        assert_eq!(r.status(7).types[CLUSTER].push_ms, Some(12));
    }

    const MAX_NACK: usize = crate::limits::MAX_NACK_MESSAGE;
}
