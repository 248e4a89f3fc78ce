//! Which Route serves a request, and why: the answer `portcullis explain`, the admin
//! API's `/debug/explain` and the console give, computed from the same routing table
//! the translator hands Envoy ([`crate::table`]) and the same precedence steps.
//!
//! It mirrors what Envoy does with the configuration Portcullis writes: normalize the
//! path ([`normalize`]), pick the virtual host (exact domain, then the longest wildcard,
//! then `*`), and take the first entry of that host's table that matches method, path
//! (without regard to case) and headers. Every other entry that matched lost to the
//! winner at one precedence step, which is named.
pub mod normalize;
mod policy;
mod text;

use serde::{Deserialize, Serialize};

use crate::{
    HeaderMatch, Model, RouteEntry,
    precedence::{Step, covers, deciding_step},
    table::ANY_HOST,
};
pub use policy::{Served, served};

/// A request to explain.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub method: String,
    /// The request target: `/path?query` or `http://host/path`.
    pub target: String,
    /// `(name, value)`; a `host` header names the host when the target does not.
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn new(method: &str, target: &str, headers: &[(&str, &str)]) -> Self {
        Self {
            method: method.to_string(),
            target: target.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        // Envoy matches repeated headers as one value joined by commas.
        (!values.is_empty()).then(|| values.join(","))
    }
}

/// What happens to the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A Route serves it (`served`).
    Routed,
    /// Envoy answers `status` itself before routing.
    Refused,
    /// Envoy redirects to `redirect` before routing.
    Redirected,
    /// No Route matches: 404.
    NotFound,
}

/// An entry that matched the request but lost to the one that serves it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lost {
    pub route: String,
    pub path_index: usize,
    pub path: String,
    /// The precedence step that decided.
    pub step: String,
    pub why: String,
}

/// The answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    pub method: String,
    /// Host and path as routing sees them.
    pub host: String,
    pub path: String,
    /// Normalization Envoy applied, in words.
    pub notes: Vec<String>,
    pub virtual_host: String,
    pub virtual_host_why: String,
    pub outcome: Outcome,
    /// Envoy's own answer (refused: 400; not found: 404; redirected: 307).
    pub status: Option<u16>,
    pub reason: Option<String>,
    pub redirect: Option<String>,
    pub served: Option<Served>,
    pub lost: Vec<Lost>,
}

/// Explains `request` against `model`.
pub fn explain(model: &Model, request: &Request) -> Explanation {
    let host_header = request.header("host").unwrap_or_default();
    let n = normalize::normalize(&host_header, &request.target);
    let (virtual_host, virtual_host_why) = virtual_host(model, &n.host);
    let mut out = Explanation {
        method: request.method.clone(),
        host: n.host.clone(),
        path: n.path.clone(),
        notes: n.notes.clone(),
        virtual_host: virtual_host.clone(),
        virtual_host_why,
        outcome: Outcome::NotFound,
        status: Some(404),
        reason: Some("no Route matches on this host".into()),
        redirect: None,
        served: None,
        lost: Vec::new(),
    };
    if let Some(to) = n.redirect {
        out.outcome = Outcome::Redirected;
        out.status = Some(307);
        out.reason = Some("escaped slashes (%2F, %5C) are decoded and redirected".into());
        out.redirect = Some(to);
        return out;
    }
    if let Some((status, why)) = n.refused {
        out.outcome = Outcome::Refused;
        out.status = Some(status);
        out.reason = Some(why);
        return out;
    }
    let table = model.host_table(&virtual_host);
    let matching: Vec<&RouteEntry> = table
        .entries
        .iter()
        .map(|e| &***e)
        .filter(|e| matches(e, request, &n.path))
        .collect();
    let Some((winner, rest)) = matching.split_first() else {
        return out;
    };
    out.outcome = Outcome::Routed;
    out.status = None;
    out.reason = None;
    out.served = Some(served(model, winner));
    out.lost = rest
        .iter()
        .map(|loser| {
            let (step, why) = deciding_step(&virtual_host, winner, loser)
                .map(|(s, _)| (s, s.explain(winner, loser, &virtual_host)))
                .unwrap_or((Step::Name, "same entry".into()));
            Lost {
                route: format!("{}/{}", loser.key.namespace, loser.key.name),
                path_index: loser.path_index,
                path: policy::path_text(loser),
                step: step.to_string(),
                why,
            }
        })
        .collect();
    out
}

/// Envoy's choice of virtual host: the exact domain, else the longest wildcard that
/// covers the host, else `*`.
fn virtual_host(model: &Model, host: &str) -> (String, String) {
    let hosts = model.route_hosts();
    if hosts.iter().any(|h| h == host) {
        return (host.to_string(), "a Route names this host".into());
    }
    if let Some(w) = hosts
        .iter()
        .filter(|h| h.starts_with('*') && covers(h, host))
        .max_by_key(|h| h.len())
    {
        return (w.clone(), format!("the wildcard {w} covers it"));
    }
    (
        ANY_HOST.to_string(),
        "no Route names this host: only Routes without hosts apply".into(),
    )
}

/// Does `entry` match, as the Envoy route Portcullis writes for it would?
pub fn matches(entry: &RouteEntry, request: &Request, path: &str) -> bool {
    if !entry.methods.is_empty() && !entry.methods.contains(&request.method) {
        return false;
    }
    let (exact, p) = entry.path_parts();
    let (path, p) = (path.to_ascii_lowercase(), p.to_ascii_lowercase());
    let path_ok = if exact {
        path == p
    } else if p.ends_with('/') {
        path.starts_with(&p)
    } else {
        path == p
            || path
                .strip_prefix(&p)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    path_ok && entry.headers.iter().all(|h| header_matches(h, request))
}

fn header_matches(h: &HeaderMatch, request: &Request) -> bool {
    let Some(value) = request.header(&h.name) else {
        return false;
    };
    match (&h.exact, &h.prefix, &h.regex) {
        (Some(v), _, _) => value == *v,
        (_, Some(v), _) => value.starts_with(v.as_str()),
        // RE2 semantics: ASCII classes, the whole value.
        (_, _, Some(re)) => regex::bytes::Regex::new(&format!("(?-u)^(?:{re})$"))
            .is_ok_and(|r| r.is_match(value.as_bytes())),
        _ => true,
    }
}

#[cfg(test)]
mod tests;
