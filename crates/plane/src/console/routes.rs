//! The Routing table page: every virtual host with its entries in the order Envoy tries
//! them ([`portcullis_api::Model::table`], the table the translator writes), each with
//! its match, backends, auth, limits, policy and conditions.
use std::{collections::HashMap, fmt::Write};

use portcullis_api::{
    Model, RouteEntry,
    explain::{Served, served},
    precedence::HostRank,
    table::ANY_HOST,
};

use super::html::{Frame, Nav, close, esc, header_text, open, open_live, url};
use crate::file_source::{Board, ObjectView};

/// Rows shown unless `all` is asked for: a browser handles this many comfortably; the
/// filter narrows the rest.
pub const DEFAULT_ROWS: usize = 1000;

/// Case-insensitive substring filters; empty matches everything.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct Filter {
    #[serde(default)]
    pub ns: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub q: String,
    /// Show every row, not only the first [`DEFAULT_ROWS`].
    #[serde(default)]
    pub all: Option<String>,
}

impl Filter {
    fn keeps_host(&self, domain: &str) -> bool {
        contains(domain, &self.host)
    }

    fn keeps(&self, e: &RouteEntry) -> bool {
        if !contains(&e.key.namespace, &self.ns) {
            return false;
        }
        if self.q.is_empty() {
            return true;
        }
        let (_, path) = e.path_parts();
        contains(&e.key.name, &self.q)
            || contains(&format!("{}/{}", e.key.namespace, e.key.name), &self.q)
            || contains(path, &self.q)
            || e.methods.iter().any(|m| contains(m, &self.q))
            || e.backends.iter().any(|(s, _)| contains(&s.name, &self.q))
            || e.headers.iter().any(|h| contains(&h.name, &self.q))
    }
}

fn contains(haystack: &str, needle: &str) -> bool {
    needle.is_empty()
        || haystack
            .to_ascii_lowercase()
            .contains(&needle.trim().to_ascii_lowercase())
}

pub fn render(
    model: &Model,
    board: &Board,
    filter: &Filter,
    problems: usize,
    token: &str,
) -> String {
    let conditions: HashMap<&str, &ObjectView> = board
        .objects
        .iter()
        .map(|o| (o.object.as_str(), o))
        .collect();
    let table = model.table();
    let total: usize = table.iter().map(|h| h.entries.len()).sum();
    let limit = if filter.all.is_some() {
        usize::MAX
    } else {
        DEFAULT_ROWS
    };
    let mut out = String::with_capacity(8192 + total.min(limit) * 900);
    open(
        &mut out,
        &Frame {
            nav: Nav::Routes,
            problems,
            version: &board.version,
        },
    );
    let _ = write!(
        out,
        "<h1>Routing table <small>{} served Route(s) in {} virtual host(s); each host lists its entries in the order Envoy tries them, and the first that matches serves</small></h1>\
         <form class=\"filter\" method=\"get\" action=\"/routes\">\
         <label>Namespace <input name=\"ns\" value=\"{}\" autocomplete=\"off\"></label>\
         <label>Host <input name=\"host\" value=\"{}\" autocomplete=\"off\"></label>\
         <label>Text <input id=\"filter-text\" name=\"q\" value=\"{}\" placeholder=\"route, path, method, service\" autocomplete=\"off\"></label>\
         <button>Filter</button> <a href=\"/routes\">clear</a></form>",
        board
            .objects
            .iter()
            .filter(|o| o.served && o.object.starts_with("Route "))
            .count(),
        table.len(),
        esc(&filter.ns),
        esc(&filter.host),
        esc(&filter.q)
    );
    open_live(&mut out, "routes", token);
    let mut shown = 0usize;
    let mut hidden = 0usize;
    for host in &table {
        if !filter.keeps_host(&host.domain) {
            continue;
        }
        let rows: Vec<(usize, &&std::sync::Arc<RouteEntry>)> = host
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| filter.keeps(e))
            .collect();
        if rows.is_empty() {
            continue;
        }
        if shown >= limit {
            hidden += rows.len();
            continue;
        }
        let _ = write!(
            out,
            "<section class=\"host\" data-host=\"{0}\"><h2>{0} <small>{1} entr{2}{3}</small></h2>\
             <table class=\"routes\"><thead><tr><th>#</th><th>Route</th><th>Match</th><th>Backends</th>\
             <th>Auth</th><th>Limits</th><th>Policy</th><th>Status</th></tr></thead><tbody>",
            esc(&host.domain),
            host.entries.len(),
            if host.entries.len() == 1 { "y" } else { "ies" },
            if host.domain == ANY_HOST {
                ": requests for a host no Route names"
            } else {
                ""
            }
        );
        for (i, e) in rows {
            if shown >= limit {
                hidden += 1;
                continue;
            }
            shown += 1;
            let view = conditions
                .get(format!("Route {}/{}", e.key.namespace, e.key.name).as_str())
                .copied();
            row(&mut out, model, &host.domain, i + 1, e, view);
        }
        out.push_str("</tbody></table></section>");
    }
    if shown == 0 {
        out.push_str("<p class=\"empty\">No entry matches the filter.</p>");
    }
    if hidden > 0 {
        let _ = write!(
            out,
            "<p class=\"more\">{hidden} more entr{} not shown: narrow the filter, or \
             <a href=\"/routes?ns={}&amp;host={}&amp;q={}&amp;all=1\">show all</a>.</p>",
            if hidden == 1 { "y" } else { "ies" },
            url(&filter.ns),
            url(&filter.host),
            url(&filter.q)
        );
    }
    out.push_str("</div>");
    close(&mut out);
    out
}

fn row(
    out: &mut String,
    model: &Model,
    domain: &str,
    position: usize,
    e: &RouteEntry,
    view: Option<&ObjectView>,
) {
    let s = served(model, e);
    let route = format!("{}/{}", e.key.namespace, e.key.name);
    let via = match HostRank::of(e, domain) {
        HostRank::Exact if domain != ANY_HOST => String::new(),
        HostRank::Wildcard(_) => format!(
            "<small class=\"via\">via {}</small>",
            esc(&e.hosts().join(", "))
        ),
        _ if domain != ANY_HOST => "<small class=\"via\">any host</small>".into(),
        _ => String::new(),
    };
    let _ = write!(
        out,
        "<tr data-route=\"{0}\" data-path-index=\"{1}\"><td class=\"pos\">{position}</td>\
         <td><a href=\"/routes?q={2}\">{0}</a><br><small>paths[{1}]</small>{via}</td><td>",
        esc(&route),
        e.path_index,
        url(&route),
    );
    let (_, path) = e.path_parts();
    let _ = write!(
        out,
        "<span class=\"methods\">{}</span> <code>{}</code>",
        if e.methods.is_empty() {
            "any method".to_string()
        } else {
            e.methods.join(", ")
        },
        esc(&s.path)
    );
    for h in &e.headers {
        let _ = write!(out, "<br><small>header {}</small>", esc(&header_text(h)));
    }
    let target = if domain == ANY_HOST {
        path.to_string()
    } else {
        format!("http://{}{path}", domain.replacen('*', "x", 1))
    };
    let _ = write!(
        out,
        "<br><a class=\"explain-link\" href=\"/explain?method={}&amp;url={}\">explain</a></td><td>",
        url(e.methods.first().map_or("GET", String::as_str)),
        url(&target)
    );
    backends(out, &s);
    out.push_str("</td><td>");
    auth(out, &s);
    out.push_str("</td><td>");
    limits(out, &s);
    let _ = write!(
        out,
        "</td><td><small>timeout {}<br>retries {} on {}{}</small></td><td>",
        esc(&s.timeout),
        s.retry.attempts,
        esc(&s.retry.on.join(", ")),
        if s.hedge { "<br>hedged" } else { "" }
    );
    status(out, view);
    out.push_str("</td></tr>");
}

fn backends(out: &mut String, s: &Served) {
    for b in &s.backends {
        let _ = write!(
            out,
            "<div class=\"backend\"><a href=\"/signals?q={}\">{}</a> <span class=\"share\">{}%</span>",
            url(&b.service),
            esc(&b.service),
            b.share
        );
        for d in &b.destinations {
            let _ = write!(
                out,
                "<br><small>{} {} w{}{}{}</small>",
                esc(&d.name),
                esc(&d.address),
                d.weight,
                d.region
                    .as_deref()
                    .map(|r| format!(" {}", esc(r)))
                    .unwrap_or_default(),
                if d.failover { " failover" } else { "" }
            );
        }
        out.push_str("</div>");
    }
}

fn auth(out: &mut String, s: &Served) {
    match &s.auth {
        None => out.push_str("<span class=\"muted\">public</span>"),
        Some(a) => {
            let _ = write!(
                out,
                "<span class=\"badge {}\">{}</span>",
                if a.required { "auth" } else { "warning" },
                if a.required { "required" } else { "optional" }
            );
            if !a.scopes.is_empty() {
                let _ = write!(
                    out,
                    "<br><small>scopes {}</small>",
                    esc(&a.scopes.join(" "))
                );
            }
            if a.shadow {
                out.push_str("<br><small>shadow: never refuses</small>");
            }
        }
    }
}

fn limits(out: &mut String, s: &Served) {
    if s.rate_limits.is_empty() {
        out.push_str("<span class=\"muted\">none</span>");
    }
    for l in &s.rate_limits {
        let _ = write!(
            out,
            "<div><b>{}</b> <small>by {}: {}{}{}</small></div>",
            esc(&l.name),
            esc(&l.by.join(", ")),
            esc(&l.windows.join(", ")),
            if l.on_failure == "deny" {
                "; fails closed"
            } else {
                ""
            },
            if l.shadow { "; shadow" } else { "" }
        );
    }
}

/// The Route's conditions that say something: warnings, shadowing.
fn status(out: &mut String, view: Option<&ObjectView>) {
    let Some(view) = view else {
        return;
    };
    let mut any = false;
    for c in &view.conditions {
        let (tone, show) = match (c.type_.as_str(), c.is_true()) {
            ("Shadowed", true) if c.reason == "AuthBypassed" => ("error", true),
            ("Shadowed", true) => ("warning", true),
            ("Accepted", true) if !c.message.is_empty() => ("warning", true),
            ("Programmed", false) => ("error", true),
            _ => ("", false),
        };
        if show {
            any = true;
            let label = if c.type_ == "Accepted" {
                "Warning"
            } else {
                &c.reason
            };
            let _ = write!(
                out,
                "<span class=\"badge {tone}\" title=\"{}\">{}</span> ",
                esc(&c.message),
                esc(label)
            );
        }
    }
    if !any {
        out.push_str("<span class=\"badge ok\">OK</span>");
    }
}
