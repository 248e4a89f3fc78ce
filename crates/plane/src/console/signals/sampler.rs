//! Without Prometheus, the control plane samples the Envoys' admin stats itself: every
//! interval it reads each Envoy's cluster counters and latency buckets
//! (`/stats/prometheus?usedonly&filter=…`, a few lines per Service), turns the change
//! since the previous sample into the page's six values, and keeps 15 minutes of them
//! ([`super::ring`]).
//!
//! Envoy admin addresses come from `--envoy-admin` (repeatable); `portcullis up` passes
//! its own Envoy's. They are not learned from xDS node metadata on purpose: a node could
//! name any address, and the control plane would fetch it.
use std::{
    collections::HashMap,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use parking_lot::Mutex;

use super::{
    SourceStatus,
    prom_text::{self, Counters},
    ring::{Change, Rings, change, values},
};

/// Only the stats the page charts (Envoy's stat names, before tag extraction). Service
/// clusters are `namespace/name` and namespaces start with a letter or digit, which
/// keeps Portcullis' own clusters (`_portcullis/…`) out.
const FILTER: &str = r"^cluster\.[a-z0-9][^./]*/[^.]+\.(upstream_rq_total|upstream_rq_completed|upstream_rq_5xx|upstream_rq_401|upstream_rq_403|upstream_rq_429|upstream_rq_time)$";
/// An answer larger than this is cut off (10k Services take about 3 MB).
const MAX_BODY: usize = 32 << 20;

pub struct Sampler {
    admins: Vec<String>,
    pub interval: Duration,
    client: reqwest::Client,
    state: Mutex<State>,
    generation: AtomicU64,
}

struct State {
    /// Per admin address: when, and the counters read then.
    previous: HashMap<String, (Instant, HashMap<String, Counters>)>,
    rings: Rings,
    status: Vec<SourceStatus>,
}

impl Sampler {
    /// `admins`: `host:port` (an `http://` prefix is accepted).
    pub fn new(admins: &[String], interval: Duration) -> anyhow::Result<Self> {
        let admins = admins
            .iter()
            .map(|a| normalize(a))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let client = reqwest::Client::builder()
            .timeout(interval.clamp(Duration::from_secs(1), Duration::from_secs(5)))
            .build()?;
        let status = admins
            .iter()
            .map(|a| SourceStatus {
                name: format!("Envoy admin {a}"),
                last_ok: None,
                error: None,
            })
            .collect();
        Ok(Self {
            admins,
            interval,
            client,
            state: Mutex::new(State {
                previous: HashMap::new(),
                rings: Rings::new(interval.as_secs().max(1)),
                status,
            }),
            generation: AtomicU64::new(0),
        })
    }

    pub fn admins(&self) -> &[String] {
        &self.admins
    }

    /// Samples every interval until `shutdown` resolves.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => self.sample().await,
            }
        }
    }

    /// One sample of every Envoy.
    pub async fn sample(&self) {
        let mut reads = tokio::task::JoinSet::new();
        for (i, admin) in self.admins.iter().enumerate() {
            let (client, admin) = (self.client.clone(), admin.clone());
            reads.spawn(async move { (i, Instant::now(), read(&client, &admin).await) });
        }
        let mut results = Vec::with_capacity(self.admins.len());
        while let Some(r) = reads.join_next().await {
            if let Ok(r) = r {
                results.push(r);
            }
        }
        let now = jiff::Timestamp::now();
        let mut state = self.state.lock();
        let mut changes: HashMap<String, Vec<Change>> = HashMap::new();
        for (i, at, result) in results {
            let admin = &self.admins[i];
            match result {
                Ok(current) => {
                    state.status[i].last_ok = Some(super::super::rfc3339(now));
                    state.status[i].error = None;
                    if let Some((then, previous)) = state.previous.get(admin) {
                        let seconds = at.duration_since(*then).as_secs_f64();
                        for (cluster, c) in &current {
                            changes.entry(cluster.clone()).or_default().push(change(
                                previous.get(cluster),
                                c,
                                seconds,
                            ));
                        }
                    }
                    state.previous.insert(admin.clone(), (at, current));
                }
                Err(e) => {
                    tracing::debug!(admin, error = %e, "could not sample Envoy's stats");
                    state.status[i].error = Some(e);
                    // The next good read is a new baseline, not a jump.
                    state.previous.remove(admin);
                }
            }
        }
        let points = changes
            .iter()
            .map(|(k, c)| (k.clone(), values(c)))
            .collect();
        state.rings.record(now.as_second(), points);
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    pub fn signals(&self) -> (Vec<super::ServiceSignals>, usize) {
        let state = self.state.lock();
        (state.rings.signals(), state.rings.untracked)
    }

    pub fn status(&self) -> Vec<SourceStatus> {
        self.state.lock().status.clone()
    }

    /// Changes with every sample.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }
}

fn normalize(admin: &str) -> anyhow::Result<String> {
    let a = admin.trim();
    let a = a.strip_prefix("http://").unwrap_or(a).trim_end_matches('/');
    let ok = !a.is_empty()
        && !a.contains(['/', '?', '#', '@', ' '])
        && a.rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
    anyhow::ensure!(
        ok,
        "--envoy-admin {admin:?}: write the Envoy admin address as host:port, e.g. 127.0.0.1:9901"
    );
    Ok(a.to_string())
}

async fn read(client: &reqwest::Client, admin: &str) -> Result<HashMap<String, Counters>, String> {
    let url = format!(
        "http://{admin}/stats/prometheus?usedonly&filter={}",
        super::super::html::url(FILTER)
    );
    let mut resp = client.get(&url).send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("{} answered {}", admin, resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("{admin}: stats larger than {MAX_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(prom_text::parse(&String::from_utf8_lossy(&body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_addresses_are_host_and_port() {
        assert_eq!(normalize("127.0.0.1:9901").unwrap(), "127.0.0.1:9901");
        assert_eq!(normalize("http://envoy:9901/").unwrap(), "envoy:9901");
        for bad in [
            "",
            "9901",
            "host",
            "host:port",
            "a:1/stats",
            "u@h:1",
            "h:99999",
        ] {
            let e = normalize(bad).unwrap_err().to_string();
            assert!(
                e.contains("--envoy-admin") && e.contains("host:port"),
                "{e}"
            );
        }
    }
}
