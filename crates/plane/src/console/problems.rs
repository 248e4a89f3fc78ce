//! The Problems page: everything that keeps configuration from serving as written,
//! newest first, each with the message and what to do about it.
//!
//! Sources: the board's conditions (invalid, unresolved, conflicted, shadowed, the
//! Programmed condition where the controller sets it), unreadable documents, and the
//! xDS streams (NACKs, Envoys stuck on an older version, no Envoy at all).
use std::fmt::Write;

use jiff::Timestamp;
use portcullis_api::status::types::{ACCEPTED, CONFLICTED, PROGRAMMED, RESOLVED_REFS, SHADOWED};
use portcullis_xds::{NodeStatus, Snapshot};

use super::html::{Frame, Nav, close, esc, open, open_live, time};
use crate::file_source::Board;

/// An Envoy that has not ACKed a version this long after it was sent is reported
/// (pushes normally take milliseconds; this keeps an ordinary push off the page).
pub const PENDING_GRACE_SECS: i64 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    /// Invalid, Conflicted, AuthBypassed, …
    pub kind: &'static str,
    /// `Route ns/name`, a file, or `Envoy node-id`.
    pub subject: String,
    pub message: String,
    pub fix: String,
    /// RFC 3339: when it started.
    pub since: String,
    /// Whether the object still serves (its last good version, or the rest of it).
    pub serving: Option<bool>,
}

/// Every problem, newest first (errors before warnings at the same second).
pub fn collect(
    board: &Board,
    nodes: &[NodeStatus],
    snapshot: &Snapshot,
    now: Timestamp,
) -> Vec<Problem> {
    let mut out = Vec::new();
    for e in &board.file_errors {
        out.push(Problem {
            severity: Severity::Error,
            kind: "Unreadable",
            subject: e.split(": ").next().unwrap_or_default().to_string(),
            message: e.clone(),
            fix: "Fix the document (the message names the field); the objects last read from this file keep serving until it parses. `portcullis validate DIR` checks offline.".into(),
            since: board.file_errors_since.get(e).cloned().unwrap_or_default(),
            serving: None,
        });
    }
    for o in &board.objects {
        for c in &o.conditions {
            if c.type_ == PROGRAMMED
                && c.reason == "Pending"
                && c.last_transition_time
                    .as_deref()
                    .and_then(parse)
                    .is_none_or(|t| (now - t).get_seconds() < PENDING_GRACE_SECS)
            {
                continue;
            }
            if let Some((severity, kind, fix)) = classify(&o.object, c) {
                out.push(Problem {
                    severity,
                    kind,
                    subject: o.object.clone(),
                    message: c.message.clone(),
                    fix: fix.into(),
                    since: c.last_transition_time.clone().unwrap_or_default(),
                    serving: Some(o.served),
                });
            }
        }
    }
    fleet(&mut out, nodes, snapshot, now);
    out.sort_by(|a, b| {
        parse(&b.since)
            .cmp(&parse(&a.since))
            .then(a.severity.cmp(&b.severity))
            .then_with(|| a.subject.cmp(&b.subject))
    });
    out
}

fn parse(t: &str) -> Option<Timestamp> {
    t.parse().ok()
}

/// Which conditions are problems, and the advice for each.
fn classify(
    object: &str,
    c: &portcullis_api::Condition,
) -> Option<(Severity, &'static str, &'static str)> {
    let route = object.starts_with("Route ");
    match (c.type_.as_str(), c.is_true(), c.reason.as_str()) {
        (ACCEPTED, false, "InternalError") => Some((
            Severity::Error,
            "InternalError",
            "A bug in Portcullis, not in the manifest: report it with the message. The object is left out; everything else serves.",
        )),
        (ACCEPTED, false, _) => Some((
            Severity::Error,
            "Invalid",
            "Fix the field the message names and apply again; `portcullis validate` checks manifests offline. An object that served before keeps its last good version.",
        )),
        (ACCEPTED, true, _) if !c.message.is_empty() => Some((
            Severity::Warning,
            "Warning",
            "Served as written; the message says what would make it safer.",
        )),
        (RESOLVED_REFS, false, _) => Some((
            Severity::Error,
            "Unresolved",
            if route {
                "Create the Service or fix spec.backends[].service (Services are looked up in the Route's namespace)."
            } else {
                "Fix the reference the message names."
            },
        )),
        (CONFLICTED, true, _) => Some((
            Severity::Error,
            "Conflicted",
            "The older Route keeps the match: change this Route's match (path, methods, headers or hosts) or remove one of the two. The Explain tab shows which Route serves a request.",
        )),
        (SHADOWED, true, "AuthBypassed") => Some((
            Severity::Error,
            "AuthBypassed",
            "Requests meant to be authenticated are served without it: add the host to this Route's hosts, or give the Route that takes them the same auth.",
        )),
        (SHADOWED, true, _) => Some((
            Severity::Warning,
            "Shadowed",
            "Part of this Route never matches on some hosts: add the host to its hosts, or narrow the Route that takes the requests.",
        )),
        // NoEnvoy is one fleet-wide problem, not one per object; Pending is listed
        // once it lasts (see `collect`).
        (PROGRAMMED, false, "Rejected" | "Pending") => Some((
            Severity::Error,
            "NotProgrammed",
            "Some Envoy does not run this object as written: the message names it; the Fleet tab has its last NACK.",
        )),
        _ => None,
    }
}

/// NACKs, Envoys stuck on an older version, and no Envoy at all.
fn fleet(out: &mut Vec<Problem>, nodes: &[NodeStatus], snapshot: &Snapshot, now: Timestamp) {
    for n in nodes {
        let who = format!("{} {}", kind_of(n), display_id(n));
        for (type_url, t) in &n.types {
            let short = short_type(type_url);
            if let Some(nack) = &t.nack {
                out.push(Problem {
                    severity: Severity::Error,
                    kind: "NACK",
                    subject: who.clone(),
                    message: format!(
                        "rejected {short} version {}: {}",
                        super::html::short_version(&nack.version),
                        nack.message
                    ),
                    fix: "It keeps running its previous configuration. The message is Envoy's: find the object it names (Problems and the Routing table), fix or remove it; if the manifests are valid, this is a translation bug worth reporting.".into(),
                    since: nack.at.clone(),
                    serving: None,
                });
                continue;
            }
            let Some(current) = snapshot.type_version(type_url) else {
                continue;
            };
            if t.acked.as_deref() == Some(current) {
                continue;
            }
            let sent = t.sent_at.as_deref().unwrap_or(&n.connected_at);
            let waited = parse(sent).map_or(0, |s| (now - s).get_seconds());
            if waited >= PENDING_GRACE_SECS {
                out.push(Problem {
                    severity: Severity::Error,
                    kind: "NotProgrammed",
                    subject: who.clone(),
                    message: format!(
                        "has not acknowledged {short} version {} ({waited} s); it runs {}",
                        super::html::short_version(current),
                        t.acked
                            .as_deref()
                            .map_or("nothing of this type yet".into(), |v| format!(
                                "version {}",
                                super::html::short_version(v)
                            ))
                    ),
                    fix: "Check that process: it may be overloaded, or stuck warming clusters (Envoy's /clusters and /config_dump on its admin address).".into(),
                    since: sent.to_string(),
                    serving: None,
                });
            }
        }
    }
    let envoys = nodes.iter().filter(|n| kind_of(n) == "Envoy").count();
    let has_envoy_config = snapshot
        .type_urls()
        .any(|t| t.starts_with("type.googleapis.com/envoy."));
    if envoys == 0 && has_envoy_config {
        out.push(Problem {
            severity: Severity::Error,
            kind: "NotProgrammed",
            subject: "Fleet".into(),
            message: "no Envoy is connected to this control plane: nothing it serves is programmed".into(),
            fix: "Start Envoy with the bootstrap `portcullis bootstrap --xds-addr HOST:PORT` prints, pointed at this control plane's --xds-addr.".into(),
            since: String::new(),
            serving: None,
        });
    }
}

/// Envoys subscribe to Envoy's types; `portcullis ratelimit` only to its own.
pub fn kind_of(n: &NodeStatus) -> &'static str {
    if n.types.is_empty()
        || n.types
            .keys()
            .any(|t| t.starts_with("type.googleapis.com/envoy."))
    {
        "Envoy"
    } else {
        "Rate-limit service"
    }
}

pub fn display_id(n: &NodeStatus) -> String {
    if n.id.is_empty() {
        format!("stream {}", n.stream_id)
    } else {
        n.id.clone()
    }
}

/// `…envoy.config.cluster.v3.Cluster` → `Cluster`.
pub fn short_type(type_url: &str) -> &str {
    type_url.rsplit(['.', '/']).next().unwrap_or(type_url)
}

/// A fingerprint of the problem list, for the page's live refresh.
pub fn token(problems: &[Problem], version: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    version.hash(&mut h);
    for p in problems {
        (p.kind, &p.subject, &p.message, &p.since, p.serving).hash(&mut h);
    }
    format!("{:016x}", h.finish())
}

pub fn render(problems: &[Problem], version: &str) -> String {
    let mut out = String::with_capacity(4096 + problems.len() * 600);
    let frame = Frame {
        nav: Nav::Problems,
        problems: problems.len(),
        version,
    };
    open(&mut out, &frame);
    open_live(&mut out, "problems", &token(problems, version));
    let errors = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    if problems.is_empty() {
        out.push_str(
            "<section class=\"empty ok\"><h1>No problems</h1><p>Every object is valid and served, \
             and every connected Envoy runs the current configuration.</p></section>",
        );
    } else {
        let _ = write!(
            out,
            "<h1>Problems <small>{errors} error(s), {} warning(s), newest first</small></h1><ol class=\"problems\">",
            problems.len() - errors
        );
        for p in problems {
            row(&mut out, p);
        }
        out.push_str("</ol>");
    }
    out.push_str("</div>");
    close(&mut out);
    out
}

fn row(out: &mut String, p: &Problem) {
    let tone = match p.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let _ = write!(
        out,
        "<li class=\"problem {tone}\" data-kind=\"{}\"><div class=\"head\"><span class=\"badge {tone}\">{}</span> <strong class=\"subject\">{}</strong>",
        esc(p.kind),
        esc(p.kind),
        esc(&p.subject)
    );
    // Whether the object serves at all, where that is news: an invalid, unresolved or
    // conflicted object that still serves does so with its last good version.
    let refused = matches!(
        p.kind,
        "Invalid" | "InternalError" | "Unresolved" | "Conflicted"
    );
    match p.serving {
        Some(true) if refused => {
            out.push_str(" <span class=\"note\">its last good version keeps serving</span>")
        }
        Some(false) => out.push_str(" <span class=\"note\">not served</span>"),
        _ => {}
    }
    if !p.since.is_empty() {
        out.push_str(" <span class=\"since\">since ");
        time(out, &p.since);
        out.push_str("</span>");
    }
    let _ = write!(
        out,
        "</div><p class=\"message\">{}</p><p class=\"fix\"><b>Fix:</b> {}</p></li>",
        esc(&p.message),
        code_spans(&esc(&p.fix).to_string())
    );
}

/// `a` in the (escaped) advice becomes <code>a</code>; the advice is ours, never a
/// tenant's, and is escaped before this.
fn code_spans(escaped: &str) -> String {
    let mut out = String::with_capacity(escaped.len() + 16);
    for (i, part) in escaped.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file_source::ObjectView;
    use portcullis_api::Condition;
    use portcullis_xds::{NackStatus, Protocol, Resource, TypeStatus};

    fn programmed(reason: &str, status: &str, since: &str) -> Condition {
        Condition {
            status: status.into(),
            last_transition_time: Some(since.into()),
            ..Condition::new(PROGRAMMED, false, reason, format!("{reason} here"))
        }
    }

    fn node(acked: Option<&str>, sent_at: &str, nack: bool) -> NodeStatus {
        let t = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
        NodeStatus {
            stream_id: 1,
            id: "edge-1".into(),
            cluster: "c".into(),
            protocol: Protocol::Sotw,
            peer: None,
            connected_at: sent_at.into(),
            last_seen: sent_at.into(),
            types: [(
                t.to_string(),
                TypeStatus {
                    sent: Some("new".into()),
                    sent_at: Some(sent_at.into()),
                    acked: acked.map(Into::into),
                    nack: nack.then(|| NackStatus {
                        version: "new".into(),
                        message: "bad cluster".into(),
                        at: sent_at.into(),
                    }),
                    push_ms: None,
                },
            )]
            .into(),
        }
    }

    #[test]
    fn lasting_pending_and_rejected_are_problems_not_a_fresh_push() {
        let now: Timestamp = "2026-12-01T00:01:00Z".parse().unwrap();
        let board = Board {
            objects: ["fresh", "stuck", "nacked", "no-envoy"]
                .iter()
                .zip([
                    programmed("Pending", "False", "2026-12-01T00:00:58Z"),
                    programmed("Pending", "False", "2026-12-01T00:00:10Z"),
                    programmed("Rejected", "False", "2026-12-01T00:00:30Z"),
                    programmed("NoEnvoy", "Unknown", "2026-12-01T00:00:00Z"),
                ])
                .map(|(name, c)| ObjectView {
                    object: format!("Route ns/{name}"),
                    served: true,
                    conditions: vec![c],
                })
                .collect(),
            ..Default::default()
        };
        let got = collect(&board, &[], &Snapshot::empty(), now);
        let subjects: Vec<&str> = got.iter().map(|p| p.subject.as_str()).collect();
        // Newest first.
        assert_eq!(subjects, ["Route ns/nacked", "Route ns/stuck"]);
    }

    #[test]
    fn envoys_behind_for_long_or_rejecting_are_problems() {
        let snapshot = Snapshot::new([Resource::new(
            "c",
            envoy_types::pb::google::protobuf::Any {
                type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
                value: vec![],
            },
        )]);
        let now: Timestamp = "2026-12-01T00:01:00Z".parse().unwrap();
        let behind = |acked, sent_at, nack| {
            collect(
                &Board::default(),
                &[node(acked, sent_at, nack)],
                &snapshot,
                now,
            )
        };
        assert!(
            behind(None, "2026-12-01T00:00:55Z", false).is_empty(),
            "a push in flight"
        );
        let stuck = behind(Some("old"), "2026-12-01T00:00:30Z", false);
        assert_eq!((stuck.len(), stuck[0].kind), (1, "NotProgrammed"));
        assert!(
            stuck[0].message.contains("has not acknowledged Cluster"),
            "{:?}",
            stuck[0]
        );
        let nacked = behind(Some("old"), "2026-12-01T00:00:59Z", true);
        assert_eq!((nacked.len(), nacked[0].kind), (1, "NACK"));
        assert!(nacked[0].message.contains("bad cluster"));
        // Serving Envoy config with no Envoy at all is a problem of its own.
        let none = collect(&Board::default(), &[], &snapshot, now);
        assert!(
            none[0].message.starts_with("no Envoy is connected"),
            "{none:?}"
        );
    }
}
