//! What Envoy does to a request's host and path before it routes, as Portcullis
//! configures it (`normalize_path`, `merge_slashes`, escaped slashes unescaped and
//! redirected, any `:port` stripped from the host, the `;`/`%3B`/`%25` guard).
use serde::{Deserialize, Serialize};

/// The request as routing sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Normalized {
    /// Lower-cased, without port.
    pub host: String,
    /// After normalization, without the query string.
    pub path: String,
    /// What changed on the way, in words; empty when nothing did.
    pub notes: Vec<String>,
    /// Envoy answers before routing: (status, why).
    pub refused: Option<(u16, String)>,
    /// Envoy redirects to this path (escaped slashes), before routing.
    pub redirect: Option<String>,
}

/// `target` is the request target: origin-form (`/a?b`) or absolute-form
/// (`http://host/a`); `host` is the Host header, used unless the target names one.
pub fn normalize(host: &str, target: &str) -> Normalized {
    let mut notes = Vec::new();
    let (host, rest) = match target.split_once("://") {
        Some((_, after)) => {
            let end = after.find(['/', '?']).unwrap_or(after.len());
            (&after[..end], &after[end..])
        }
        None => (host, target),
    };
    let host = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
    let raw_path = rest.split(['?', '#']).next().unwrap_or_default();
    let raw_path = if raw_path.is_empty() { "/" } else { raw_path };
    let mut out = Normalized {
        host,
        path: String::new(),
        notes: Vec::new(),
        refused: None,
        redirect: None,
    };
    // Envoy's normalization refuses a NUL, raw or percent-encoded.
    let nul = raw_path.to_ascii_lowercase().contains("%00");
    if nul || raw_path.bytes().any(|b| b.is_ascii_control()) || !raw_path.starts_with('/') {
        out.path = raw_path.to_string();
        out.refused = Some((400, "not a valid request path".into()));
        return out;
    }
    let decoded = decode_unreserved(raw_path);
    if decoded != raw_path {
        notes.push("percent-encoded letters, digits and -._~ decoded".to_string());
    }
    let slashed = decoded.replace('\\', "/");
    if slashed != decoded {
        notes.push("backslashes read as slashes".to_string());
    }
    let merged = merge_slashes(&slashed);
    if merged != slashed {
        notes.push("repeated slashes merged".to_string());
    }
    let path = remove_dot_segments(&merged);
    if path != merged {
        notes.push("dot segments (. and ..) removed".to_string());
    }
    if path != raw_path {
        notes.insert(0, format!("path {raw_path} normalized to {path}"));
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        let to = merge_slashes(
            &path
                .replace("%2F", "/")
                .replace("%2f", "/")
                .replace("%5C", "/")
                .replace("%5c", "/"),
        );
        out.redirect = Some(to);
    } else if path.contains(';') || lower.contains("%3b") || lower.contains("%25") {
        out.refused = Some((
            400,
            "paths with ';', %3B or %25 are refused at the edge (path parameters, double encoding)"
                .into(),
        ));
    }
    out.path = path;
    out.notes = notes;
    out
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

fn decode_unreserved(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = path
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            && (v.is_ascii_alphanumeric() || b"-._~".contains(&v))
        {
            out.push(v as char);
            i += 3;
            continue;
        }
        // Safe: we only split at ASCII positions, and push whole chars below.
        let ch = path[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    out
}

/// RFC 3986 §5.2.4 on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    for (i, seg) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        match *seg {
            "." => {
                if last {
                    segments.push("");
                }
            }
            ".." => {
                segments.pop();
                if last {
                    segments.push("");
                }
            }
            s => segments.push(s),
        }
    }
    format!("/{}", segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_envoy() {
        let n = normalize("X.Test:8080", "/public/../%61dmin//users?q=1");
        assert_eq!(n.host, "x.test");
        assert_eq!(n.path, "/admin/users");
        assert!(n.refused.is_none() && n.redirect.is_none());
        assert!(
            n.notes[0].contains("normalized to /admin/users"),
            "{:?}",
            n.notes
        );
        let n = normalize("x", "http://API.example.com:443/a/./b/");
        assert_eq!(
            (n.host.as_str(), n.path.as_str()),
            ("api.example.com", "/a/b/")
        );
        assert_eq!(
            normalize("x", "/admin%2Fusers").redirect.as_deref(),
            Some("/admin/users")
        );
        for bad in ["/admin;x", "/admin%3bx", "/%2561dmin"] {
            assert_eq!(normalize("x", bad).refused.map(|r| r.0), Some(400), "{bad}");
        }
        assert_eq!(normalize("[::1]:80", "/").host, "[::1]");
        assert_eq!(normalize("x", "/..").path, "/");
    }
}
