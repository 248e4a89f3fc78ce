//! The Fleet page: what this control plane serves, who is connected to it (Envoys and
//! rate-limit services), which version of each type each one runs, how long pushes
//! took, and when each was last heard from.
use std::fmt::Write;

use portcullis_xds::{NodeStatus, Snapshot};

use super::{
    html::{Frame, Nav, close, esc, open, open_live, short_version, time},
    problems::{display_id, kind_of, short_type},
    signals::SourceStatus,
};

pub fn render(
    snapshot: &Snapshot,
    nodes: &[NodeStatus],
    nacks_total: u64,
    sources: &[SourceStatus],
    problems: usize,
    version: &str,
) -> String {
    let mut out = String::with_capacity(8192 + nodes.len() * 1500);
    open(
        &mut out,
        &Frame {
            nav: Nav::Fleet,
            problems,
            version,
        },
    );
    open_live(&mut out, "fleet", &token(snapshot, nodes));
    let envoys: Vec<&NodeStatus> = nodes.iter().filter(|n| kind_of(n) == "Envoy").collect();
    let others: Vec<&NodeStatus> = nodes.iter().filter(|n| kind_of(n) != "Envoy").collect();
    let _ = write!(
        out,
        "<h1>Fleet <small>{} Envoy(s), {} rate-limit service(s) connected to this control plane; {nacks_total} NACK(s) since it started</small></h1>",
        envoys.len(),
        others.len()
    );
    out.push_str("<section><h2>Snapshot served</h2><table class=\"compact\"><thead><tr><th>type</th><th>version</th><th>resources</th></tr></thead><tbody>");
    for t in snapshot.type_urls() {
        let _ = write!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(short_type(t)),
            esc(short_version(snapshot.type_version(t).unwrap_or_default())),
            snapshot.type_len(t)
        );
    }
    out.push_str("</tbody></table></section>");
    let envoy_types: Vec<&str> = snapshot
        .type_urls()
        .filter(|t| t.starts_with("type.googleapis.com/envoy."))
        .collect();
    let other_types: Vec<&str> = snapshot
        .type_urls()
        .filter(|t| !t.starts_with("type.googleapis.com/envoy."))
        .collect();
    streams(&mut out, "Envoys", &envoys, &envoy_types, snapshot);
    streams(
        &mut out,
        "Rate-limit services",
        &others,
        &other_types,
        snapshot,
    );
    signal_sources(&mut out, sources);
    out.push_str("</div>");
    close(&mut out);
    out
}

fn streams(
    out: &mut String,
    title: &str,
    nodes: &[&NodeStatus],
    types: &[&str],
    snapshot: &Snapshot,
) {
    let _ = write!(out, "<section><h2>{title}</h2>");
    if nodes.is_empty() {
        out.push_str("<p class=\"empty\">None connected.</p></section>");
        return;
    }
    out.push_str(
        "<table class=\"fleet\"><thead><tr><th>node</th><th>connected</th><th title=\"when it last sent a request: Envoy writes only to subscribe, ACK or NACK, so a quiet stream is normal\">last message</th>",
    );
    for t in types {
        let _ = write!(out, "<th>{}</th>", esc(short_type(t)));
    }
    out.push_str("</tr></thead><tbody>");
    for n in nodes {
        let _ = write!(
            out,
            "<tr data-node=\"{}\"><td><b>{}</b><br><small>{} · {} · {}</small></td><td>",
            esc(&n.id),
            esc(&display_id(n)),
            esc(&n.cluster),
            n.protocol.as_str(),
            esc(n.peer.as_deref().unwrap_or("?"))
        );
        time(out, &n.connected_at);
        out.push_str("</td><td>");
        time(out, &n.last_seen);
        out.push_str("</td>");
        for t in types {
            out.push_str("<td>");
            type_cell(out, n, t, snapshot);
            out.push_str("</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></section>");
}

/// ACKed version against the served one, the last push latency, and a NACK if any.
fn type_cell(out: &mut String, n: &NodeStatus, type_url: &str, snapshot: &Snapshot) {
    let Some(t) = n.types.get(type_url) else {
        out.push_str("<span class=\"muted\">not subscribed</span>");
        return;
    };
    let current = snapshot.type_version(type_url);
    let acked = t.acked.as_deref();
    let (tone, label) = if t.nack.is_some() {
        ("error", "NACK")
    } else if acked.is_some() && acked == current {
        ("ok", "in sync")
    } else {
        ("warning", "pending")
    };
    let _ = write!(
        out,
        "<span class=\"badge {tone}\">{label}</span> <code title=\"ACKed version\">{}</code>",
        esc(short_version(acked.unwrap_or("-")))
    );
    if let Some(ms) = t.push_ms {
        let _ = write!(
            out,
            "<br><small title=\"from the version entering a snapshot to this node's ACK\">push {ms} ms</small>"
        );
    }
    if let Some(nack) = &t.nack {
        let _ = write!(
            out,
            "<div class=\"nack\"><small>rejected <code>{}</code>: {}</small></div>",
            esc(short_version(&nack.version)),
            esc(&nack.message)
        );
    }
}

fn signal_sources(out: &mut String, sources: &[SourceStatus]) {
    if sources.is_empty() {
        return;
    }
    out.push_str("<section><h2>Signal sources</h2><table class=\"compact\"><thead><tr><th>source</th><th>last sample</th><th>state</th></tr></thead><tbody>");
    for s in sources {
        let _ = write!(out, "<tr><td><code>{}</code></td><td>", esc(&s.name));
        match &s.last_ok {
            Some(t) => time(out, t),
            None => out.push_str("never"),
        }
        let _ = write!(
            out,
            "</td><td>{}</td></tr>",
            match &s.error {
                Some(e) => format!("<span class=\"badge error\">error</span> {}", esc(e)),
                None => "<span class=\"badge ok\">ok</span>".into(),
            }
        );
    }
    out.push_str("</tbody></table></section>");
}

/// Changes when a stream connects, disconnects, ACKs or NACKs.
pub fn token(snapshot: &Snapshot, nodes: &[NodeStatus]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    snapshot.version().hash(&mut h);
    for n in nodes {
        (n.stream_id, &n.id).hash(&mut h);
        for (t, s) in &n.types {
            (t, &s.acked, s.nack.as_ref().map(|n| &n.version), s.push_ms).hash(&mut h);
        }
    }
    format!("{:016x}", h.finish())
}
