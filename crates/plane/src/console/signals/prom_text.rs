//! Envoy's `/stats/prometheus` text, read into per-cluster counters: only what the
//! Signals page charts, keyed by `envoy_cluster_name` (the Service's `namespace/name`,
//! dots as `_`).
use std::collections::HashMap;

/// One cluster's cumulative counters in one Envoy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    /// Requests sent to the Service (`upstream_rq_total`).
    pub requests: f64,
    /// Requests answered, by the Service or by Envoy on its behalf (a 429 from the rate
    /// limits, a 401 from ext_authz): `upstream_rq_completed`.
    pub completed: f64,
    pub errors_5xx: f64,
    /// Answered 429 (`upstream_rq_429`: the gateway's rate limits, or the backend).
    pub status_429: f64,
    /// Answered 401 or 403 (ext_authz, or the backend).
    pub status_401_403: f64,
    /// `upstream_rq_time` buckets: (upper bound in ms, cumulative count), ascending,
    /// `+Inf` last.
    pub latency: Vec<(f64, f64)>,
}

/// Most clusters one Envoy's answer may add: bounds what a huge or hostile answer costs.
pub const MAX_CLUSTERS: usize = 10_000;

/// Reads the lines Portcullis asks Envoy for; everything else is ignored.
pub fn parse(text: &str) -> HashMap<String, Counters> {
    let mut out: HashMap<String, Counters> = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, labels, value)) = split(line) else {
            continue;
        };
        let Some(cluster) = label(labels, "envoy_cluster_name") else {
            continue;
        };
        if !out.contains_key(&cluster) && out.len() >= MAX_CLUSTERS {
            continue;
        }
        let c = out.entry(cluster).or_default();
        match name {
            "envoy_cluster_upstream_rq_total" => c.requests = value,
            "envoy_cluster_upstream_rq_completed" => c.completed = value,
            "envoy_cluster_upstream_rq_xx"
                if label(labels, "envoy_response_code_class").as_deref() == Some("5") =>
            {
                c.errors_5xx = value
            }
            "envoy_cluster_upstream_rq" => match label(labels, "envoy_response_code").as_deref() {
                Some("429") => c.status_429 = value,
                Some("401" | "403") => c.status_401_403 += value,
                _ => {}
            },
            "envoy_cluster_upstream_rq_time_bucket" => {
                let le = match label(labels, "le").as_deref() {
                    Some("+Inf") => f64::INFINITY,
                    Some(v) => match v.parse() {
                        Ok(v) => v,
                        Err(_) => continue,
                    },
                    None => continue,
                };
                if c.latency.len() < 64 {
                    c.latency.push((le, value));
                }
            }
            _ => {}
        }
    }
    for c in out.values_mut() {
        c.latency.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// `name{labels} value` → parts; `name value` has empty labels.
fn split(line: &str) -> Option<(&str, &str, f64)> {
    let (head, value) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}').filter(|&c| c > open)?;
            (
                (&line[..open], &line[open + 1..close]),
                line[close + 1..].trim(),
            )
        }
        None => {
            let (n, v) = line.split_once(' ')?;
            ((n, ""), v.trim())
        }
    };
    let value = value.split_whitespace().next()?.parse().ok()?;
    Some((head.0, head.1, value))
}

/// The value of `key` in `k="v",k2="v2"`, with `\"`, `\\` and `\n` unescaped.
fn label(labels: &str, key: &str) -> Option<String> {
    let mut rest = labels;
    while !rest.is_empty() {
        let (k, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, ch)) = chars.next() {
            match ch {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => return None,
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                _ => value.push(ch),
            }
        }
        let end = end?;
        if k.trim().trim_start_matches(',') == key {
            return Some(value);
        }
        rest = after[end + 1..].trim_start_matches(',');
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENVOY: &str = r#"# TYPE envoy_cluster_upstream_rq_total counter
envoy_cluster_upstream_rq_total{envoy_cluster_name="demo/echo"} 6
# TYPE envoy_cluster_upstream_rq_xx counter
envoy_cluster_upstream_rq_xx{envoy_response_code_class="5",envoy_cluster_name="demo/echo"} 2
envoy_cluster_upstream_rq_xx{envoy_response_code_class="4",envoy_cluster_name="demo/echo"} 3
envoy_cluster_upstream_rq_completed{envoy_cluster_name="demo/echo"} 10
envoy_cluster_upstream_rq{envoy_response_code="200",envoy_cluster_name="demo/echo"} 6
envoy_cluster_upstream_rq{envoy_response_code="429",envoy_cluster_name="demo/echo"} 4
envoy_cluster_upstream_rq{envoy_response_code="401",envoy_cluster_name="shop/a_b"} 1
envoy_cluster_upstream_rq{envoy_response_code="403",envoy_cluster_name="shop/a_b"} 2
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="demo/echo",le="+Inf"} 6
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="demo/echo",le="0.5"} 1
envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="demo/echo",le="5"} 5
envoy_cluster_upstream_rq_time_sum{envoy_cluster_name="demo/echo"} 9
"#;

    #[test]
    fn reads_what_the_page_charts() {
        let got = parse(ENVOY);
        let echo = &got["demo/echo"];
        assert_eq!(
            (
                echo.requests,
                echo.completed,
                echo.errors_5xx,
                echo.status_429
            ),
            (6.0, 10.0, 2.0, 4.0)
        );
        assert_eq!(
            echo.latency,
            vec![(0.5, 1.0), (5.0, 5.0), (f64::INFINITY, 6.0)]
        );
        assert_eq!(got["shop/a_b"].status_401_403, 3.0);
    }

    #[test]
    fn odd_lines_are_skipped_not_fatal() {
        let got = parse(
            "garbage\nenvoy_cluster_upstream_rq_total{envoy_cluster_name=\"x\"} notanumber\n\
             envoy_cluster_upstream_rq_total{envoy_cluster_name=\"unterminated} 1\n\
             envoy_cluster_upstream_rq_total{envoy_cluster_name=\"q\\\"uote\"} 3\n{}\n}{ 1",
        );
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got["q\"uote"].requests, 3.0);
    }

    #[test]
    fn a_flood_of_clusters_is_capped() {
        let text: String = (0..MAX_CLUSTERS + 50)
            .map(|i| {
                format!("envoy_cluster_upstream_rq_total{{envoy_cluster_name=\"n/c{i}\"}} 1\n")
            })
            .collect();
        assert_eq!(parse(&text).len(), MAX_CLUSTERS);
    }
}
