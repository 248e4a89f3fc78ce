//! What a limit source answers for a request: the limits that apply, which counter
//! each uses and the names it is reported under. The sources (xDS configs, envoyproxy
//! files, Limitador files) produce [`Hit`]s; the limiter consumes them. Living apart
//! from both keeps the dependencies one-way: sources → this module ← limiter.
use std::sync::Arc;

use crate::limit::Limit;

/// A request descriptor entry (key, value).
pub type Entry<'a> = (&'a str, &'a str);

/// One limit that applies to a request.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Index of the request descriptor whose status reports this limit.
    pub descriptor: usize,
    pub limit: Arc<Limit>,
    /// envoyproxy stat key (`ratelimit.service.rate_limit.<full>.*`).
    pub stat: Arc<StatKey>,
    /// Names of limits this one replaces (envoyproxy `replaces`).
    pub replaces: Arc<[String]>,
    /// The name other limits replace this one by (envoyproxy `rate_limit.name`).
    pub replaceable_as: Option<Arc<str>>,
    /// The entries identifying the counter when they are not the descriptor's own
    /// (`share_threshold` patterns, Limitador variables).
    pub counter: Option<Arc<[(String, String)]>>,
}

impl Hit {
    /// The `limit` label of `portcullis_ratelimit_*` metrics: the limit's name, or else
    /// its stat key.
    pub fn metric_name(&self) -> &str {
        if self.limit.name.is_empty() {
            &self.stat.full
        } else {
            &self.limit.name
        }
    }
}

/// An envoyproxy stat key, `<domain>.<component>…`, split as its Prometheus mapping
/// labels it: `domain`, `key1` (the first component) and `key2` (the rest).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatKey {
    pub domain: String,
    pub key1: String,
    pub key2: String,
    /// `domain.key1.key2` without empty parts.
    pub full: String,
}

impl StatKey {
    /// From the domain and the per-level components (`key` or `key_value`), each
    /// sanitised as envoyproxy sanitises stat names.
    pub fn new<S: AsRef<str>>(domain: &str, components: &[S]) -> StatKey {
        let domain = sanitize(domain);
        let key1 = components
            .first()
            .map_or(String::new(), |c| sanitize(c.as_ref()));
        let key2 = components
            .iter()
            .skip(1)
            .map(|c| sanitize(c.as_ref()))
            .collect::<Vec<_>>()
            .join(".");
        let full = [domain.as_str(), key1.as_str(), key2.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(".");
        StatKey {
            domain,
            key1,
            key2,
            full,
        }
    }
}

/// envoyproxy's `SanitizeStatName`: `:` and `|` become `_`, and so do the dots of
/// dotted IPv4 addresses (statsd would read them as separators).
pub fn sanitize(s: &str) -> String {
    let mut out: Vec<u8> = s
        .bytes()
        .map(|b| if b == b':' || b == b'|' { b'_' } else { b })
        .collect();
    let mut i = 0;
    while i < out.len() {
        match ipv4_at(&out, i) {
            Some(end) => {
                for b in &mut out[i..end] {
                    if *b == b'.' {
                        *b = b'_';
                    }
                }
                i = end;
            }
            None => i += 1,
        }
    }
    // Only ASCII bytes were replaced by ASCII bytes, so this stays valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// End of a `\d{1,3}(\.\d{1,3}){3}` match starting at `start` (greedy, as Go's regexp).
fn ipv4_at(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    for group in 0..4 {
        if group > 0 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let digits = b[i.min(b.len())..]
            .iter()
            .take(3)
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 {
            return None;
        }
        i += digits;
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_like_envoyproxy() {
        assert_eq!(
            sanitize("remote_address_10.0.0.1"),
            "remote_address_10_0_0_1"
        );
        assert_eq!(sanitize("a:b|c"), "a_b_c");
        assert_eq!(sanitize("1234.5.6.7"), "1234_5_6_7");
        assert_eq!(sanitize("host_example.com"), "host_example.com");
        assert_eq!(sanitize("v1.2.3"), "v1.2.3");
    }

    #[test]
    fn stat_keys_split_into_the_mapper_labels() {
        let k = StatKey::new("messaging", &["message_type_marketing", "to_number"]);
        assert_eq!(
            (k.domain.as_str(), k.key1.as_str(), k.key2.as_str()),
            ("messaging", "message_type_marketing", "to_number")
        );
        assert_eq!(k.full, "messaging.message_type_marketing.to_number");
        let k = StatKey::new("d", &["a", "b", "c"]);
        assert_eq!((k.key2.as_str(), k.full.as_str()), ("b.c", "d.a.b.c"));
        assert_eq!(StatKey::new("d", &["a"]).full, "d.a");
    }
}
