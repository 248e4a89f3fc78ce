//! With `--prometheus-url`, the page's signals are range queries over the Envoy
//! cluster stats Prometheus scrapes: the same expressions as the Grafana dashboard,
//! one query per signal for every Service at once.
use std::collections::HashMap;

use super::{Series, ServiceSignals, ring::WINDOW_SECS};

/// Points per chart: one every 15 s over the window.
const STEP_SECS: i64 = 15;

/// The six signals, in [`super::Signal`] order, as PromQL over 1 m rates.
const QUERIES: [&str; 6] = [
    "sum by (envoy_cluster_name) (rate(envoy_cluster_upstream_rq_total[1m]))",
    "sum by (envoy_cluster_name) (rate(envoy_cluster_upstream_rq_xx{envoy_response_code_class=\"5\"}[1m])) / sum by (envoy_cluster_name) (rate(envoy_cluster_upstream_rq_completed[1m]))",
    "histogram_quantile(0.5, sum by (envoy_cluster_name, le) (rate(envoy_cluster_upstream_rq_time_bucket[1m])))",
    "histogram_quantile(0.99, sum by (envoy_cluster_name, le) (rate(envoy_cluster_upstream_rq_time_bucket[1m])))",
    "sum by (envoy_cluster_name) (rate(envoy_cluster_upstream_rq{envoy_response_code=\"429\"}[1m]))",
    "sum by (envoy_cluster_name) (rate(envoy_cluster_upstream_rq{envoy_response_code=~\"401|403\"}[1m]))",
];

pub struct Prometheus {
    base: String,
    /// The URL without credentials, for the page.
    pub shown: String,
    client: reqwest::Client,
}

impl Prometheus {
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let base = url.trim().trim_end_matches('/').to_string();
        let rest = base.strip_prefix("http://").ok_or_else(|| {
            anyhow::anyhow!(
                "--prometheus-url {}: use http://host:port (https needs a proxy in front)",
                redact(&base)
            )
        })?;
        anyhow::ensure!(
            !rest.is_empty() && !rest.starts_with('/'),
            "--prometheus-url {}: no host; use http://host:port",
            redact(&base)
        );
        Ok(Self {
            shown: redact(&base),
            base,
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .build()?,
        })
    }

    /// Every Service's six series over the last 15 minutes, ending at `now`.
    pub async fn read(&self, now: i64) -> Result<Vec<ServiceSignals>, String> {
        let mut answers = tokio::task::JoinSet::new();
        for (i, q) in QUERIES.iter().enumerate() {
            let (client, url) = (
                self.client.clone(),
                format!("{}/api/v1/query_range", self.base),
            );
            let params = [
                ("query", q.to_string()),
                ("start", (now - WINDOW_SECS).to_string()),
                ("end", now.to_string()),
                ("step", STEP_SECS.to_string()),
            ];
            answers.spawn(async move {
                let resp = client.get(&url).query(&params).send().await;
                let body = match resp {
                    Ok(r) if r.status().is_success() => r.json::<serde_json::Value>().await,
                    Ok(r) => return (i, Err(format!("Prometheus answered {}", r.status()))),
                    Err(e) => return (i, Err(e.without_url().to_string())),
                };
                (i, body.map_err(|e| e.without_url().to_string()))
            });
        }
        let mut by_service: HashMap<String, [Series; 6]> = HashMap::new();
        while let Some(done) = answers.join_next().await {
            let Ok((i, body)) = done else { continue };
            for (service, series) in matrix(&body?) {
                by_service.entry(service).or_default()[i] = series;
            }
        }
        Ok(by_service
            .into_iter()
            .map(|(service, series)| ServiceSignals { service, series })
            .collect())
    }
}

/// `data.result[]` of a range query: `envoy_cluster_name` → points. Values Prometheus
/// writes as `NaN` (a ratio with no requests) stay NaN.
fn matrix(body: &serde_json::Value) -> Vec<(String, Series)> {
    let Some(result) = body["data"]["result"].as_array() else {
        return Vec::new();
    };
    result
        .iter()
        .filter_map(|r| {
            let name = r["metric"]["envoy_cluster_name"].as_str()?;
            let values = r["values"].as_array()?;
            let series = values
                .iter()
                .filter_map(|p| {
                    let t = p[0].as_f64()? as i64;
                    let v = p[1].as_str()?.parse::<f64>().ok()?;
                    Some((t, v))
                })
                .collect();
            Some((name.to_string(), series))
        })
        .collect()
}

/// `http://user:pass@host` → `http://host`: credentials never reach the page or logs.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(redact("http://u:p@prom:9090/x"), "http://prom:9090/x");
        assert_eq!(redact("http://prom:9090"), "http://prom:9090");
        let e = Prometheus::new("https://u:secret@prom")
            .err()
            .unwrap()
            .to_string();
        assert!(
            !e.contains("secret") && e.contains("http://host:port"),
            "{e}"
        );
        assert!(Prometheus::new("http://").is_err());
    }

    #[test]
    fn reads_a_range_query_answer() {
        let body = serde_json::json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"envoy_cluster_name": "demo/echo"}, "values": [[1700000000, "1.5"], [1700000015, "NaN"]]},
            {"metric": {}, "values": [[1700000000, "2"]]}
        ]}});
        let got = matrix(&body);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "demo/echo");
        assert_eq!(got[0].1[0], (1_700_000_000, 1.5));
        assert!(got[0].1[1].1.is_nan());
    }
}
