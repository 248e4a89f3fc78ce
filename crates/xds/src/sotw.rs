//! State-of-the-World ADS: per-stream decision logic, free of I/O.

use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use prost::bytes::Bytes;

use crate::nodes::Event;
use crate::order::{ByType, defers_removals};
use crate::snapshot::{Entry, Snapshot};
use crate::subscription::{Output, Subscription};
use crate::wire::{Carried, SotwResponse};

/// Suffix of the interim version that still carries removed resources; it
/// only has to differ from the final version.
const KEEP_SUFFIX: &str = "-keep";

#[derive(Debug)]
struct TypeState {
    sub: Subscription,
    /// Type version the client holds: from its first request, then whatever
    /// we last sent in full. Sending is driven by this, not by ACKs, so a
    /// NACKed version is not resent.
    client_version: Option<String>,
    /// Latest nonce sent; requests carrying another nonce are stale.
    nonce: Option<String>,
    /// `version_info` of the latest response (what an ACK/NACK refers to).
    sent_version: Option<String>,
    /// Subscription and snapshot of the latest full response: what it selected there
    /// is what the client holds, to detect removals and resend their bodies. Kept as
    /// these two references rather than a list of names so a stream costs O(1) here.
    sent_sub: Subscription,
    sent_from: Arc<Snapshot>,
}

/// One SotW stream's protocol state.
#[derive(Debug)]
pub(crate) struct SotwStream {
    snapshot: Arc<Snapshot>,
    types: ByType<TypeState>,
    next_nonce: u64,
}

impl SotwStream {
    pub(crate) fn new(snapshot: Arc<Snapshot>) -> Self {
        SotwStream {
            snapshot,
            types: ByType::default(),
            next_nonce: 0,
        }
    }

    /// How many types the stream holds, and whether `type_url` would be a new one.
    pub(crate) fn type_count(&self, type_url: &str) -> (usize, bool) {
        (self.types.len(), self.types.get(type_url).is_none())
    }

    pub(crate) fn on_request(&mut self, req: DiscoveryRequest) -> Output<SotwResponse> {
        let mut out = Output::default();
        let t = req.type_url.as_str();
        if t.is_empty() {
            tracing::warn!("ignoring SotW request without type_url");
            return out;
        }
        let snapshot = self.snapshot.clone();
        let current = snapshot.effective_type_version(t);
        let Some(st) = self.types.get_mut(t) else {
            // First request for this type on this stream. Its nonce (if
            // any) belongs to an earlier stream and carries no ACK meaning.
            let sub = Subscription::first(&req.resource_names);
            let client_version = Some(req.version_info.clone()).filter(|v| !v.is_empty());
            let mut st = TypeState {
                sent_sub: Subscription::default(),
                sent_from: snapshot.clone(),
                sub,
                client_version,
                nonce: None,
                sent_version: None,
            };
            if st.client_version.as_deref() == Some(current.as_str()) {
                // Reconnect with identical content: the client already runs
                // this; remember what it has so later removals are ordered.
                st.sent_sub = st.sub.clone();
                out.events.push(Event::Ack {
                    type_url: t.to_owned(),
                    version: current,
                });
            } else {
                send_current(&mut self.next_nonce, t, &snapshot, &mut st, &mut out);
            }
            self.types.insert(t, st);
            return out;
        };

        if !req.response_nonce.is_empty() {
            if st.nonce.as_deref() != Some(req.response_nonce.as_str()) {
                tracing::debug!(
                    type_url = t,
                    nonce = req.response_nonce,
                    "ignoring stale request"
                );
                return out;
            }
            let version = st.sent_version.clone().unwrap_or_default();
            out.events.push(match &req.error_detail {
                Some(status) => Event::Nack {
                    type_url: t.to_owned(),
                    version,
                    message: status.message.clone(),
                },
                None => Event::Ack {
                    type_url: t.to_owned(),
                    version,
                },
            });
        }
        let sub = st.sub.replace(&req.resource_names);
        let names_changed = sub != st.sub;
        st.sub = sub;
        if names_changed || st.client_version.as_deref() != Some(current.as_str()) {
            send_current(&mut self.next_nonce, t, &snapshot, st, &mut out);
        }
        out
    }

    /// A new snapshot: push every subscribed type whose version changed,
    /// in dependency order, deferring cluster/endpoint removals.
    pub(crate) fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Output<SotwResponse> {
        self.snapshot = snapshot.clone();
        let mut out = Output::default();
        let mut finals = Vec::new();
        for i in 0..self.types.len() {
            let (t, st) = self.types.at_mut(i);
            let current = snapshot.effective_type_version(t);
            if st.client_version.as_deref() == Some(current.as_str()) {
                // Same type version, same content: what the client holds is selected
                // the same way here, so the older snapshot need not be kept alive.
                st.sent_from = snapshot.clone();
                continue;
            }
            if defers_removals(t) {
                let removed: Vec<&Entry> = st
                    .sent_sub
                    .select(&st.sent_from, t)
                    .into_iter()
                    .filter(|e| {
                        let n = &e.resource.name;
                        st.sub.covers(n) && snapshot.entry(t, n).is_none()
                    })
                    .collect();
                if !removed.is_empty() {
                    // Interim response: new content plus the removed
                    // resources, so nothing referencing them breaks yet.
                    let mut union = st.sub.select(&snapshot, t);
                    union.extend(removed);
                    union.sort_by(|a, b| a.resource.name.cmp(&b.resource.name));
                    let version = format!("{current}{KEEP_SUFFIX}");
                    let resp = response(&mut self.next_nonce, t, &version, each(&union));
                    st.nonce = Some(resp.nonce.clone());
                    st.sent_version = Some(version.clone());
                    out.events.push(sent_event(&resp));
                    out.responses.push(resp);
                    finals.push(i);
                    continue;
                }
            }
            if sends_changes_only(t) && st.sent_sub == st.sub {
                send_changes(&mut self.next_nonce, t, &snapshot, st, &mut out);
            } else {
                send_current(&mut self.next_nonce, t, &snapshot, st, &mut out);
            }
        }
        for i in finals {
            let (t, st) = self.types.at_mut(i);
            send_current(&mut self.next_nonce, t, &snapshot, st, &mut out);
        }
        out
    }
}

/// Types whose SotW responses may carry only the resources that changed: the xDS
/// protocol requires the whole set for Listener and Cluster only, and Envoy keeps the
/// RouteConfigurations and Secrets a response leaves out. Sending only the changed one
/// is what makes a one-Route edit cheap when routing is split by Host
/// (portcullis-translate `host_routes`): Envoy neither receives nor re-parses the rest.
fn sends_changes_only(t: &str) -> bool {
    t == crate::type_url::ROUTE_CONFIGURATION || t == crate::type_url::SECRET
}

/// The changed and new resources the subscription selects, at the current type
/// version; everything (as [`send_current`]) when none of them changed, so every type
/// version is still sent and acknowledged.
fn send_changes(
    next_nonce: &mut u64,
    t: &str,
    snapshot: &Arc<Snapshot>,
    st: &mut TypeState,
    out: &mut Output<SotwResponse>,
) {
    let changed: Vec<&Entry> = st
        .sub
        .select(snapshot, t)
        .into_iter()
        .filter(|e| {
            let name = &e.resource.name;
            st.sent_from.resource_version(t, name) != snapshot.resource_version(t, name)
        })
        .collect();
    if changed.is_empty() {
        return send_current(next_nonce, t, snapshot, st, out);
    }
    let version = snapshot.effective_type_version(t);
    let resp = response(next_nonce, t, &version, each(&changed));
    st.nonce = Some(resp.nonce.clone());
    st.sent_version = Some(version.clone());
    st.client_version = Some(version);
    st.sent_from = snapshot.clone();
    out.events.push(sent_event(&resp));
    out.responses.push(resp);
}

/// Send everything the subscription selects at the current type version.
fn send_current(
    next_nonce: &mut u64,
    t: &str,
    snapshot: &Arc<Snapshot>,
    st: &mut TypeState,
    out: &mut Output<SotwResponse>,
) {
    let version = snapshot.effective_type_version(t);
    let resp = response(next_nonce, t, &version, selected(&st.sub, snapshot, t));
    st.nonce = Some(resp.nonce.clone());
    st.sent_version = Some(version.clone());
    st.client_version = Some(version);
    st.sent_sub = st.sub.clone();
    st.sent_from = snapshot.clone();
    out.events.push(sent_event(&resp));
    out.responses.push(resp);
}

/// What `sub` selects of type `t`: the snapshot's shared block when that is every
/// resource of the type, as for all Envoys of a fleet.
fn selected(sub: &Subscription, snapshot: &Snapshot, t: &str) -> Carried<Bytes> {
    let all = || {
        snapshot
            .all_fields(t)
            .map(|(fields, count)| Carried::All { fields, count })
    };
    if sub.wildcard {
        return all().unwrap_or_default();
    }
    if snapshot.selects_all(t, &sub.names)
        && let Some(all) = all()
    {
        return all;
    }
    let entries = sub.select(snapshot, t);
    // Names are distinct and each selected one exists: as many means all of them.
    if entries.len() == snapshot.type_len(t)
        && let Some(all) = all()
    {
        snapshot.remember_selects_all(t, &sub.names);
        return all;
    }
    each(&entries)
}

fn each(entries: &[&Entry]) -> Carried<Bytes> {
    Carried::Each(entries.iter().map(|e| e.encoded.clone()).collect())
}

fn response(
    next_nonce: &mut u64,
    t: &str,
    version: &str,
    resources: Carried<Bytes>,
) -> SotwResponse {
    *next_nonce += 1;
    SotwResponse {
        version_info: version.to_owned(),
        resources,
        type_url: t.to_owned(),
        nonce: next_nonce.to_string(),
    }
}

fn sent_event(resp: &SotwResponse) -> Event {
    Event::Sent {
        type_url: resp.type_url.clone(),
        version: resp.version_info.clone(),
        resources: resp.resources.len(),
    }
}

#[cfg(test)]
#[path = "sotw_tests.rs"]
mod tests;
