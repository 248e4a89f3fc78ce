//! Per-stream status of connected Envoy nodes, as shown in debug output and
//! used for status reporting.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

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

impl NodeStatus {
    /// Whether the node currently rejects the latest version of some type.
    pub(crate) fn has_nack(&self) -> bool {
        self.types.values().any(|t| t.nack.is_some())
    }

    pub(crate) fn apply(&mut self, event: &Event) {
        match event {
            Event::Sent {
                type_url, version, ..
            } => {
                let t = self.types.entry(type_url.clone()).or_default();
                t.sent = Some(version.clone());
                t.sent_at = Some(rfc3339(SystemTime::now()));
            }
            Event::Ack { type_url, version } => {
                let t = self.types.entry(type_url.clone()).or_default();
                t.acked = Some(version.clone());
                t.nack = None;
            }
            Event::Nack {
                type_url,
                version,
                message,
            } => {
                self.types.entry(type_url.clone()).or_default().nack = Some(NackStatus {
                    version: version.clone(),
                    // Envoy may quote the whole rejected resource: keep the start.
                    message: crate::limits::truncate(message, crate::limits::MAX_NACK_MESSAGE)
                        .to_string(),
                    at: rfc3339(SystemTime::now()),
                });
            }
        }
    }
}
