//! Per-Service signals for the last 15 minutes (request rate, error ratio, p50/p99
//! latency, 429s, 401/403s), from Prometheus when `--prometheus-url` is given, else
//! from the Envoys' admin stats the control plane samples itself (`--envoy-admin`).
//! Each chart is a small server-drawn SVG with one line on what it means and what to
//! check.
mod chart;
pub mod prom_text;
pub mod prometheus;
pub mod ring;
pub mod sampler;

use std::{fmt::Write, sync::Arc};

use portcullis_api::Model;

use super::html::{Frame, Nav, close, esc, open, open_live, url};

/// (unix seconds, value); NaN where there was nothing to measure.
pub type Series = Vec<(i64, f64)>;

#[derive(Clone, Debug)]
pub struct ServiceSignals {
    /// Envoy's `envoy_cluster_name`: `namespace/name`, dots as `_`.
    pub service: String,
    /// In [`SIGNALS`] order.
    pub series: [Series; 6],
}

/// How a source of signals is doing, for the Fleet page.
#[derive(Clone, Debug)]
pub struct SourceStatus {
    pub name: String,
    /// RFC 3339.
    pub last_ok: Option<String>,
    pub error: Option<String>,
}

pub struct Signal {
    pub title: &'static str,
    pub unit: Unit,
    /// What it means and what to check, in one line.
    pub hint: &'static str,
}

#[derive(Clone, Copy)]
pub enum Unit {
    PerSecond,
    Ratio,
    Millis,
}

pub const SIGNALS: [Signal; 6] = [
    Signal {
        title: "Requests",
        unit: Unit::PerSecond,
        hint: "Requests per second sent to this Service. Zero while clients still call: check Problems and Explain; a spike: check the 429s.",
    },
    Signal {
        title: "Errors (5xx)",
        unit: Unit::Ratio,
        hint: "Share of answers that were 5xx (backend, timeout, reset, no healthy destination). Above 1%: check the backend's logs and health.",
    },
    Signal {
        title: "Latency p50",
        unit: Unit::Millis,
        hint: "Half the requests took longer (backend time as Envoy sees it). Rising on flat traffic: the backend slowed down.",
    },
    Signal {
        title: "Latency p99",
        unit: Unit::Millis,
        hint: "1 in 100 took longer. Rising with p50 flat: one slow destination or dependency; near the Route's timeout: requests are cut off.",
    },
    Signal {
        title: "429 rate limited",
        unit: Unit::PerSecond,
        hint: "Answered 429, almost always by the gateway's rate limits. Legitimate clients here: raise the Route's rateLimits or key them per user.",
    },
    Signal {
        title: "401/403 refused",
        unit: Unit::PerSecond,
        hint: "Answered 401 or 403, mostly by authentication. A jump after a release: a client lost its key, or a Route's scopes changed.",
    },
];

/// Where the page's numbers come from.
#[derive(Clone, Default)]
pub enum Source {
    #[default]
    None,
    Envoy(Arc<sampler::Sampler>),
    Prometheus(Arc<prometheus::Prometheus>),
}

/// What the page shows.
pub struct Readout {
    pub source: String,
    pub services: Vec<ServiceSignals>,
    pub error: Option<String>,
    /// Services not tracked because the sampler's bound was reached.
    pub untracked: usize,
    pub now: i64,
}

impl Source {
    pub async fn read(&self) -> Readout {
        let now = jiff::Timestamp::now().as_second();
        let mut readout = Readout {
            source: String::new(),
            services: Vec::new(),
            error: None,
            untracked: 0,
            now,
        };
        match self {
            Source::None => {
                readout.source = "none".into();
                readout.error = Some(
                    "No source of signals: start the control plane with --prometheus-url http://PROMETHEUS:9090, \
                     or --envoy-admin HOST:PORT (repeatable) for it to sample the Envoys' admin stats itself. \
                     `portcullis up` passes its Envoy's."
                        .into(),
                );
            }
            Source::Envoy(s) => {
                readout.source = format!(
                    "Envoy admin stats of {}, sampled every {} s by the control plane",
                    s.admins().join(", "),
                    s.interval.as_secs_f64()
                );
                (readout.services, readout.untracked) = s.signals();
                let failing: Vec<String> = s
                    .status()
                    .into_iter()
                    .filter_map(|st| st.error.map(|e| format!("{}: {e}", st.name)))
                    .collect();
                if !failing.is_empty() {
                    readout.error = Some(failing.join("; "));
                }
            }
            Source::Prometheus(p) => {
                readout.source = format!("Prometheus at {}", p.shown);
                match p.read(now).await {
                    Ok(s) => readout.services = s,
                    Err(e) => readout.error = Some(format!("Prometheus: {e}")),
                }
            }
        }
        readout
    }

    /// Changes when there is something new to draw.
    pub fn token(&self) -> String {
        match self {
            Source::None => "none".into(),
            Source::Envoy(s) => format!("s{}", s.generation()),
            // Prometheus has new points every step.
            Source::Prometheus(_) => format!("p{}", jiff::Timestamp::now().as_second() / 15),
        }
    }

    pub fn status(&self) -> Vec<SourceStatus> {
        match self {
            Source::Envoy(s) => s.status(),
            _ => Vec::new(),
        }
    }
}

/// Cards shown unless a filter narrows them.
pub const DEFAULT_CARDS: usize = 50;

#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct Filter {
    #[serde(default)]
    pub q: String,
}

pub fn render(
    readout: &Readout,
    model: &Model,
    filter: &Filter,
    problems: usize,
    version: &str,
    token: &str,
) -> String {
    // Envoy's name for each Service, back to the Service.
    let names: std::collections::HashMap<String, String> = model
        .services
        .keys()
        .map(|k| {
            let cluster = portcullis_translate::cluster_name(k);
            (
                cluster.replace('.', "_"),
                format!("{}/{}", k.namespace, k.name),
            )
        })
        .collect();
    let q = filter.q.trim().to_ascii_lowercase();
    let mut cards: Vec<(String, &ServiceSignals, f64)> = readout
        .services
        .iter()
        .map(|s| {
            let name = names
                .get(&s.service)
                .cloned()
                .unwrap_or_else(|| s.service.clone());
            let latest = s.series[0].last().map_or(0.0, |p| p.1);
            (name, s, if latest.is_finite() { latest } else { 0.0 })
        })
        // Portcullis' own clusters (`_portcullis/…`) are not Services.
        .filter(|(name, _, _)| !name.starts_with('_'))
        .filter(|(name, _, _)| q.is_empty() || name.to_ascii_lowercase().contains(&q))
        .collect();
    cards.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    let mut out = String::with_capacity(16384 + cards.len().min(DEFAULT_CARDS) * 9000);
    open(
        &mut out,
        &Frame {
            nav: Nav::Signals,
            problems,
            version,
        },
    );
    let _ = write!(
        out,
        "<h1>Signals <small>per Service, last 15 minutes; source: {}</small></h1>\
         <form class=\"filter\" method=\"get\" action=\"/signals\">\
         <label>Service <input name=\"q\" value=\"{}\" autocomplete=\"off\"></label>\
         <button>Filter</button> <a href=\"/signals\">clear</a></form>",
        esc(&readout.source),
        esc(&filter.q)
    );
    open_live(&mut out, "signals", token);
    if let Some(e) = &readout.error {
        let _ = write!(out, "<p class=\"alert\">{}</p>", esc(e));
    }
    if readout.untracked > 0 {
        let _ = write!(
            out,
            "<p class=\"alert\">{} more Service(s) have traffic but are not tracked: the sampler keeps {} at most. Use --prometheus-url for more.</p>",
            readout.untracked,
            ring::MAX_SERVICES
        );
    }
    let with_data: std::collections::HashSet<&str> = cards.iter().map(|c| c.0.as_str()).collect();
    for (name, s, _) in cards.iter().take(DEFAULT_CARDS) {
        let _ = write!(
            out,
            "<section class=\"service\" data-service=\"{0}\"><h2>{0} <small><a href=\"/routes?q={1}\">Routes to it</a></small></h2><div class=\"charts\">",
            esc(name),
            url(name.rsplit('/').next().unwrap_or(name))
        );
        for (signal, series) in SIGNALS.iter().zip(&s.series) {
            chart::figure(&mut out, signal, series, readout.now);
        }
        out.push_str("</div></section>");
    }
    if cards.len() > DEFAULT_CARDS {
        let _ = write!(
            out,
            "<p class=\"more\">{} more Service(s) with traffic; filter by name to see them.</p>",
            cards.len() - DEFAULT_CARDS
        );
    }
    let mut quiet: Vec<&str> = names
        .values()
        .map(String::as_str)
        .filter(|n| !with_data.contains(n) && (q.is_empty() || n.to_ascii_lowercase().contains(&q)))
        .collect();
    quiet.sort_unstable();
    if !quiet.is_empty() {
        let _ = write!(
            out,
            "<section class=\"quiet\"><h2>No traffic in the window <small>{}</small></h2><p>",
            quiet.len()
        );
        for n in quiet.iter().take(200) {
            let _ = write!(out, "<code>{}</code> ", esc(n));
        }
        if quiet.len() > 200 {
            out.push('…');
        }
        out.push_str("</p></section>");
    }
    out.push_str("</div>");
    close(&mut out);
    out
}
