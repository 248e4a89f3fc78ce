//! The Explain page: a form for a request, and the explain engine's answer (the same
//! as `portcullis explain` and `/debug/explain`): the Route that serves it and why,
//! its policy, and every Route that matched but lost.
use std::fmt::Write;

use portcullis_api::{
    Model,
    explain::{self, Explanation, Outcome},
};

use super::html::{Frame, Nav, close, esc, is_credential_header, open, url};

/// Bounds on what the form accepts (a request line and headers Envoy would take).
const MAX_URL: usize = 8192;
const MAX_HEADERS: usize = 100;
const MAX_HEADER_BYTES: usize = 16384;
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
];

#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct Form {
    pub method: Option<String>,
    pub url: Option<String>,
    /// One `name: value` per line.
    pub headers: Option<String>,
}

/// The request the form describes, or what is wrong with it (naming the field).
pub fn request(form: &Form) -> Result<Option<explain::Request>, String> {
    let Some(target) = form.url.as_deref().map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    if target.len() > MAX_URL {
        return Err(format!(
            "url: longer than {MAX_URL} bytes; Envoy refuses such request lines"
        ));
    }
    let method = form
        .method
        .as_deref()
        .unwrap_or("GET")
        .trim()
        .to_ascii_uppercase();
    if !METHODS.contains(&method.as_str()) {
        return Err(format!(
            "method: {method:?} is not one of {}",
            METHODS.join(", ")
        ));
    }
    let text = form.headers.as_deref().unwrap_or_default();
    if text.len() > MAX_HEADER_BYTES {
        return Err(format!("headers: more than {MAX_HEADER_BYTES} bytes"));
    }
    let mut headers = Vec::new();
    for (i, line) in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        if i >= MAX_HEADERS {
            return Err(format!("headers: more than {MAX_HEADERS}"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("headers: line {:?} is not `name: value`", line));
        };
        let name = name.trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.!#$%&'*+^`|~".contains(&b))
        {
            return Err(format!(
                "headers: {name:?} is not a header name (letters, digits, -)"
            ));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(Some(explain::Request {
        method,
        target: target.to_string(),
        headers,
    }))
}

pub fn render(model: &Model, form: &Form, problems: usize, version: &str) -> (bool, String) {
    let mut out = String::with_capacity(16384);
    open(
        &mut out,
        &Frame {
            nav: Nav::Explain,
            problems,
            version,
        },
    );
    let method = form.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
    out.push_str("<h1>Explain <small>which Route serves a request, and why: the answer Envoy gives with the configuration served now</small></h1>\
        <form id=\"explain-form\" class=\"explain\" method=\"get\" action=\"/explain\"><label>Method <select name=\"method\" id=\"explain-method\">");
    for m in METHODS {
        let _ = write!(
            out,
            "<option{}>{m}</option>",
            if m == method { " selected" } else { "" }
        );
    }
    let _ = write!(
        out,
        "</select></label><label class=\"wide\">URL <input id=\"explain-url\" name=\"url\" value=\"{}\" placeholder=\"http://api.example.com/v1/items or /v1/items\" required></label>\
         <label class=\"wide\">Headers <textarea id=\"explain-headers\" name=\"headers\" rows=\"2\" placeholder=\"x-canary: true\">{}</textarea></label>\
         <button id=\"explain-submit\">Explain</button></form>",
        esc(form.url.as_deref().unwrap_or_default()),
        esc(form.headers.as_deref().unwrap_or_default())
    );
    let ok = match request(form) {
        Ok(None) => {
            out.push_str("<p class=\"muted\">Give a URL with the host (or a <code>host:</code> header) to see the Route, its policy and every Route that lost. The command line has the same: <code>portcullis explain GET http://host/path</code>.</p>");
            true
        }
        Ok(Some(req)) => {
            let answer = explain::explain(model, &req);
            result(&mut out, &answer, &req);
            true
        }
        Err(e) => {
            let _ = write!(
                out,
                "<p class=\"alert\" id=\"explain-error\">{}</p>",
                esc(&e)
            );
            false
        }
    };
    close(&mut out);
    (ok, out)
}

fn result(out: &mut String, e: &Explanation, req: &explain::Request) {
    let mut json = format!(
        "/debug/explain?method={}&url={}",
        url(&req.method),
        url(&req.target)
    );
    for (k, v) in &req.headers {
        let _ = write!(json, "&header={}", url(&format!("{k}: {v}")));
    }
    let _ = write!(
        out,
        "<section class=\"answer\"><p class=\"request\"><code>{} {}{}</code> <a href=\"{}\">JSON</a></p>",
        esc(&e.method),
        esc(&e.host),
        esc(&e.path),
        esc(&json)
    );
    for note in &e.notes {
        let _ = write!(out, "<p class=\"note\">{}</p>", esc(note));
    }
    let _ = write!(
        out,
        "<p>Virtual host <code>{}</code>: {}</p>",
        esc(&e.virtual_host),
        esc(&e.virtual_host_why)
    );
    let served = match (e.outcome, &e.served) {
        (Outcome::Routed, Some(s)) => s,
        (Outcome::Redirected, _) => {
            let _ = write!(
                out,
                "<p class=\"verdict\" id=\"explain-outcome\" data-outcome=\"redirected\">→ 307 to <code>{}</code> ({})</p></section>",
                esc(e.redirect.as_deref().unwrap_or_default()),
                esc(e.reason.as_deref().unwrap_or_default())
            );
            return;
        }
        _ => {
            let _ = write!(
                out,
                "<p class=\"verdict bad\" id=\"explain-outcome\" data-outcome=\"{}\">→ {} {}</p></section>",
                if e.outcome == Outcome::Refused {
                    "refused"
                } else {
                    "not_found"
                },
                e.status.unwrap_or(0),
                esc(e.reason.as_deref().unwrap_or_default())
            );
            return;
        }
    };
    let _ = write!(
        out,
        "<p class=\"verdict\" id=\"explain-outcome\" data-outcome=\"routed\">→ Route <a id=\"explain-route\" data-route=\"{0}\" href=\"/routes?q={1}\">{0}</a>, paths[{2}] <code>{3}</code></p><table class=\"compact\"><tbody>",
        esc(&served.route),
        url(&served.route),
        served.path_index,
        esc(&served.path)
    );
    let row = |out: &mut String, k: &str, v: &str| {
        let _ = write!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(v));
    };
    row(
        out,
        "methods",
        &if served.methods.is_empty() {
            "any".into()
        } else {
            served.methods.join(", ")
        },
    );
    if !served.headers.is_empty() {
        let headers: Vec<String> = served.headers.iter().map(|h| hide_value(h)).collect();
        row(out, "headers", &headers.join("; "));
    }
    for b in &served.backends {
        let dests: Vec<String> = b
            .destinations
            .iter()
            .map(|d| {
                format!(
                    "{} {} (weight {}{})",
                    d.name,
                    d.address,
                    d.weight,
                    if d.failover { ", failover" } else { "" }
                )
            })
            .collect();
        row(
            out,
            "backend",
            &format!(
                "{} weight {} ({}%): {}",
                b.service,
                b.weight,
                b.share,
                dests.join(", ")
            ),
        );
    }
    let auth = match &served.auth {
        None => "none (public)".to_string(),
        Some(a) => a.summary(),
    };
    row(out, "auth", &auth);
    for l in &served.rate_limits {
        row(
            out,
            "rate limit",
            &format!(
                "{} by [{}]: {} ({} authentication; on failure {}{})",
                l.name,
                l.by.join(", "),
                l.windows.join(", "),
                if l.after_authentication {
                    "after"
                } else {
                    "before"
                },
                l.on_failure,
                if l.shadow { "; shadow" } else { "" }
            ),
        );
    }
    row(
        out,
        "timeout, retries",
        &format!(
            "{} (idle {}); retries {} on {}, backoff {}{}",
            served.timeout,
            served.idle_timeout,
            served.retry.attempts,
            served.retry.on.join(","),
            served.retry.backoff,
            if served.hedge { "; hedged" } else { "" }
        ),
    );
    out.push_str("</tbody></table>");
    if !e.lost.is_empty() {
        out.push_str("<h2>Matched but lost</h2><table class=\"compact\" id=\"explain-lost\"><thead><tr><th>Route</th><th>path</th><th>step</th><th>why the winner goes first</th></tr></thead><tbody>");
        for l in &e.lost {
            let _ = write!(
                out,
                "<tr data-route=\"{0}\"><td>{0}, paths[{1}]</td><td><code>{2}</code></td><td>{3}</td><td>{4}</td></tr>",
                esc(&l.route),
                l.path_index,
                esc(&l.path),
                esc(&l.step),
                esc(&l.why)
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section>");
}

/// The explain engine writes header matchers as `name = v`, `name starts with v`,
/// `name ~ v` or `name present`; values of credential headers are hidden.
fn hide_value(h: &str) -> String {
    let name = h.split(' ').next().unwrap_or_default();
    if !is_credential_header(name) || h.ends_with(" present") {
        return h.to_string();
    }
    for op in [" = ", " starts with ", " ~ "] {
        if let Some((n, _)) = h.split_once(op) {
            return format!("{n}{op}[hidden]");
        }
    }
    h.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(method: &str, url: &str, headers: &str) -> Form {
        Form {
            method: Some(method.into()),
            url: Some(url.into()),
            headers: Some(headers.into()),
        }
    }

    #[test]
    fn bad_input_names_the_field() {
        let e = request(&form("G<E>T", "/x", "")).unwrap_err();
        assert!(e.starts_with("method:"), "{e}");
        let e = request(&form("GET", &"/a".repeat(MAX_URL), "")).unwrap_err();
        assert!(e.starts_with("url:"), "{e}");
        let e = request(&form("GET", "/x", "no colon")).unwrap_err();
        assert!(e.starts_with("headers:"), "{e}");
        let e = request(&form("GET", "/x", "<b>: 1")).unwrap_err();
        assert!(e.starts_with("headers:"), "{e}");
        let many = "a: b\n".repeat(MAX_HEADERS + 1);
        assert!(request(&form("GET", "/x", &many)).is_err());
        assert!(
            request(&form("get", "/x", "X-Canary: true"))
                .unwrap()
                .is_some()
        );
        assert!(request(&form("GET", "  ", "")).unwrap().is_none());
    }

    #[test]
    fn credential_values_are_hidden() {
        assert_eq!(
            hide_value("authorization = Bearer x"),
            "authorization = [hidden]"
        );
        assert_eq!(
            hide_value("x-api-key starts with k"),
            "x-api-key starts with [hidden]"
        );
        assert_eq!(hide_value("x-canary = true"), "x-canary = true");
        assert_eq!(hide_value("cookie present"), "cookie present");
    }
}
