//! Syntax checks for host names, addresses and paths. Each returns the fix as the error.

/// A DNS host name as a client sends it in `Host`, optionally with a leading `*.`.
pub fn check_host(host: &str) -> Result<(), String> {
    let fix =
        "write a DNS name such as api.example.com or *.example.com, without scheme, port or path";
    if host.is_empty() {
        return Err(format!("empty host; {fix}"));
    }
    if host.contains("://") || host.contains('/') || host.contains(':') {
        return Err(format!("{host:?} is not a host name; {fix}"));
    }
    if host.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "{host:?} has upper-case letters; write it as {:?}",
            host.to_ascii_lowercase()
        ));
    }
    let bare = host.strip_prefix("*.").unwrap_or(host);
    if host.len() > 253 || bare.split('.').any(|label| !is_label(label)) {
        return Err(format!("{host:?} is not a valid host name; {fix}"));
    }
    Ok(())
}

fn is_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `host:port`, `ip:port` or `[ipv6]:port`. Returns (host, port, host is an IP).
pub fn parse_address(addr: &str) -> Result<(String, u16, bool), String> {
    let fix = "write it as host:port or ip:port, e.g. 10.0.0.7:8080 or api.internal:443";
    if let Ok(sock) = addr.parse::<std::net::SocketAddr>() {
        if sock.port() == 0 {
            return Err(format!("{addr:?} has port 0; {fix}"));
        }
        return Ok((sock.ip().to_string(), sock.port(), true));
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("{addr:?} has no port; {fix}"));
    };
    let port: u16 = match port.parse() {
        Ok(p) if p > 0 => p,
        _ => return Err(format!("{addr:?} has an invalid port {port:?}; {fix}")),
    };
    if host.starts_with('*') || check_host(host).is_err() {
        return Err(format!("{addr:?} has an invalid host {host:?}; {fix}"));
    }
    Ok((host.to_owned(), port, false))
}

/// A request path pattern: absolute, no query or fragment, no whitespace.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty path; write an absolute path such as /v1/items".into());
    }
    if !path.starts_with('/') {
        return Err(format!(
            "{path:?} does not start with /; write it as \"/{path}\""
        ));
    }
    if path.contains(['?', '#']) {
        return Err(format!(
            "{path:?} has a query or fragment; match the path only"
        ));
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{path:?} contains whitespace; percent-encode it (%20)"
        ));
    }
    never_matches(path).map_or(Ok(()), |why| {
        Err(format!(
            "{path:?} never matches: {why}; write the path as clients' requests reach the routes"
        ))
    })
}

/// Why a path can never match a request once Envoy has normalized it (RFC 3986 dot
/// segments removed, slashes merged, `%2F`/`%5C` decoded and redirected, `;` refused).
fn never_matches(path: &str) -> Option<&'static str> {
    if path.contains(';') {
        return Some(
            "requests with ';' in the path are refused at the edge (servlet path parameters)",
        );
    }
    if path.contains('\\') {
        return Some("backslashes are not part of normalized paths");
    }
    if path.contains("//") {
        return Some("Envoy merges repeated slashes before routing");
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Some("Envoy removes . and .. segments before routing");
    }
    let bytes = path.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b != b'%' {
            continue;
        }
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else {
            return Some("'%' must start a percent-encoding such as %20");
        };
        if v == b';' || v == b'%' {
            return Some(
                "requests with %3B or %25 in the path are refused at the edge (double decoding)",
            );
        }
        if v == b'/' || v == b'\\' {
            return Some("Envoy decodes %2F and %5C and redirects to the decoded path");
        }
        if v.is_ascii_alphanumeric() || b"-._~".contains(&v) {
            return Some(
                "Envoy decodes percent-encoded letters, digits and -._~; write the character itself",
            );
        }
    }
    None
}

/// HTTP methods a Route may name.
pub const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
];

/// Kubernetes-style object name (RFC 1123 subdomain), used for names we put into Envoy.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 || name.split('.').any(|l| !is_label(l)) {
        return Err(format!(
            "{name:?} is not a valid name; use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for ok in ["api.example.com", "*.example.com", "localhost", "a-b.c1"] {
            assert_eq!(check_host(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "API.example.com",
            "https://x.com",
            "x.com:8080",
            "x..com",
            "-x.com",
            "a b",
        ] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address("127.0.0.1:80"),
            Ok(("127.0.0.1".into(), 80, true))
        );
        assert_eq!(parse_address("[::1]:8080"), Ok(("::1".into(), 8080, true)));
        assert_eq!(
            parse_address("api.internal:443"),
            Ok(("api.internal".into(), 443, false))
        );
        for bad in [
            "127.0.0.1",
            "host:0",
            "host:http",
            ":80",
            "h_st:80",
            "10.0.0.1:70000",
        ] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths() {
        assert!(check_path("/v1/x").is_ok());
        assert!(check_path("/v1/caf%C3%A9/x%20y").is_ok());
        for bad in [
            "", "v1", "/a?b=1", "/a b", "/a;b", "/a//b", "/a/./b", "/a/..", "/a%2fb", "/%61dmin",
            "/a%zz", "/a%4", "/a\\b",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }
}
