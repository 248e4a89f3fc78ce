//! Writing HTML by hand, safely: every piece of text that comes from a manifest, an
//! Envoy or a request goes through [`esc`] (element text and quoted attributes alike),
//! every URL parameter through [`url`]. Tenants write Route names, paths and header
//! values, so nothing they write may become markup.
use std::fmt::{self, Write};

/// Text escaped for HTML element content and double- or single-quoted attributes.
pub struct Esc<'a>(pub &'a str);

pub fn esc(s: &str) -> Esc<'_> {
    Esc(s)
}

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// A query-string value, percent-encoded (everything but unreserved characters).
pub struct Url<'a>(pub &'a str);

pub fn url(s: &str) -> Url<'_> {
    Url(s)
}

impl fmt::Display for Url<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                f.write_char(b as char)?;
            } else {
                write!(f, "%{b:02X}")?;
            }
        }
        Ok(())
    }
}

/// The pages, for the navigation bar.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Problems,
    Routes,
    Fleet,
    Signals,
    Explain,
}

impl Nav {
    const ALL: [(Nav, &'static str, &'static str); 5] = [
        (Nav::Problems, "/", "Problems"),
        (Nav::Routes, "/routes", "Routing table"),
        (Nav::Fleet, "/fleet", "Fleet"),
        (Nav::Signals, "/signals", "Signals"),
        (Nav::Explain, "/explain", "Explain"),
    ];

    pub fn title(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(n, _, _)| *n == self)
            .map_or("", |(_, _, t)| t)
    }
}

/// What the frame around a page shows.
pub struct Frame<'a> {
    pub nav: Nav,
    /// Problems right now (the count in the navigation bar).
    pub problems: usize,
    /// The snapshot version served.
    pub version: &'a str,
}

/// Opens a page: head, navigation, `<main>`. Close it with [`close`].
pub fn open(out: &mut String, frame: &Frame<'_>) {
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Portcullis</title>\
         <link rel=\"stylesheet\" href=\"/console/console.css\">\
         <script src=\"/console/console.js\" defer></script></head><body>\
         <header><a class=\"brand\" href=\"/\">Portcullis</a><nav>",
        frame.nav.title()
    );
    for (nav, href, title) in Nav::ALL {
        let class = if nav == frame.nav {
            " class=\"active\""
        } else {
            ""
        };
        let _ = write!(out, "<a href=\"{href}\"{class}>{title}");
        if nav == Nav::Problems {
            let tone = if frame.problems == 0 { "ok" } else { "bad" };
            let _ = write!(
                out,
                " <span id=\"problem-count\" class=\"count {tone}\">{}</span>",
                frame.problems
            );
        }
        out.push_str("</a>");
    }
    let _ = write!(
        out,
        "</nav><span class=\"version\" title=\"snapshot version served to Envoy\">{}</span></header><main>",
        esc(short_version(frame.version))
    );
}

pub fn close(out: &mut String) {
    out.push_str(
        "</main><footer>Read-only. The same data as JSON: \
         <a href=\"/debug/objects\">/debug/objects</a> · <a href=\"/debug/xds\">/debug/xds</a> · \
         <a href=\"/debug/explain?url=/\">/debug/explain</a> · <a href=\"/metrics\">/metrics</a>\
         </footer></body></html>",
    );
}

/// Opens the part of a page the script refreshes when `token` changes.
pub fn open_live(out: &mut String, page: &str, token: &str) {
    let _ = write!(
        out,
        "<div id=\"live\" data-page=\"{}\" data-token=\"{}\">",
        esc(page),
        esc(token)
    );
}

/// A `<time>` the script keeps relative ("12 s ago"); `rfc3339` stays in the tooltip.
pub fn time(out: &mut String, rfc3339: &str) {
    let _ = write!(
        out,
        "<time datetime=\"{0}\" title=\"{0}\">{0}</time>",
        esc(rfc3339)
    );
}

/// Versions are content hashes; the first 12 characters tell them apart.
pub fn short_version(v: &str) -> &str {
    match v.char_indices().nth(12) {
        Some((i, _)) => &v[..i],
        None => v,
    }
}

/// Values of headers that usually carry credentials are not shown: a Route matching
/// `authorization` or a key header on an exact value would otherwise publish it.
pub fn is_credential_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "auth",
        "cookie",
        "token",
        "secret",
        "key",
        "password",
        "session",
        "signature",
    ]
    .iter()
    .any(|w| name.contains(w))
}

/// `name = value` / `name starts with value` / `name ~ regex` with the value hidden
/// when the header carries credentials.
pub fn header_text(h: &portcullis_api::HeaderMatch) -> String {
    let hide = is_credential_header(&h.name);
    let value = |v: &str| {
        if hide {
            "[hidden]".to_string()
        } else {
            v.to_string()
        }
    };
    match (&h.exact, &h.prefix, &h.regex) {
        (Some(v), _, _) => format!("{} = {}", h.name, value(v)),
        (_, Some(v), _) => format!("{} starts with {}", h.name, value(v)),
        (_, _, Some(v)) => format!("{} ~ {}", h.name, value(v)),
        _ => format!("{} present", h.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\"").to_string(),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(esc("plain/é").to_string(), "plain/é");
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(url("a b&c=d/é").to_string(), "a%20b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn hides_credential_header_values() {
        let h = portcullis_api::HeaderMatch {
            name: "x-api-key".into(),
            exact: Some("s3cret".into()),
            ..Default::default()
        };
        assert_eq!(header_text(&h), "x-api-key = [hidden]");
        let h = portcullis_api::HeaderMatch {
            name: "x-canary".into(),
            exact: Some("true".into()),
            ..Default::default()
        };
        assert_eq!(header_text(&h), "x-canary = true");
    }

    #[test]
    fn short_versions_cut_on_characters() {
        assert_eq!(short_version("abcdef0123456789"), "abcdef012345");
        assert_eq!(short_version("ééééééééééééé"), "éééééééééééé");
    }
}
