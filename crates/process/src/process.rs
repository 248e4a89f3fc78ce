//! Metrics every Portcullis process exports besides its own: the standard Prometheus
//! process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_open_fds`, `process_start_time_seconds`, …, the names client libraries in
//! every language use, so stock dashboards work) and `portcullis_build_info`.
//!
//! They are computed from `/proc/self` at each scrape and appended by
//! [`crate::render_metrics`], so every `/metrics` endpoint has them without each
//! component registering anything. The prometheus crate's `process` feature does the
//! same through the `procfs` crate; reading four small files keeps that tree out.
use std::sync::OnceLock;

use prometheus::{Counter, Gauge, IntGauge, Opts, core::Collector, proto::MetricFamily};

static COMPONENT: OnceLock<String> = OnceLock::new();

/// Names this process in `portcullis_build_info{component}` (`authz`, `ratelimit`,
/// `accesslog`, `control-plane`, …). The first call wins; unset, it is `portcullis`.
pub fn set_component(component: &str) {
    let _ = COMPONENT.set(component.to_string());
}

/// The metric families of this process, freshly read. Linux only: elsewhere the
/// process metrics are absent (build info stays).
pub fn families() -> Vec<MetricFamily> {
    let mut out = build_info();
    if let Some(p) = read_self() {
        out.extend(p.families());
    }
    out
}

fn build_info() -> Vec<MetricFamily> {
    let component = COMPONENT.get().map(String::as_str).unwrap_or("portcullis");
    let opts = Opts::new(
        "portcullis_build_info",
        "Always 1; labels say which Portcullis build and component this is.",
    )
    .const_label("version", env!("CARGO_PKG_VERSION"))
    .const_label("component", component);
    match IntGauge::with_opts(opts) {
        Ok(g) => {
            g.set(1);
            g.collect()
        }
        Err(_) => Vec::new(),
    }
}

/// What `/proc/self` says about this process.
#[derive(Debug, PartialEq)]
pub(crate) struct ProcessStats {
    pub cpu_seconds: f64,
    pub start_time_seconds: f64,
    pub virtual_bytes: u64,
    pub resident_bytes: u64,
    pub threads: u64,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

fn read_self() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let mut p = parse_stat(
        &stat,
        &boot,
        rustix::param::clock_ticks_per_second(),
        rustix::param::page_size() as u64,
    )?;
    p.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64);
    p.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| parse_max_open_files(&l));
    Some(p)
}

/// Parses `/proc/self/stat` (and `btime` of `/proc/stat`). The command name, field 2,
/// is in parentheses and may itself contain spaces and `)`, so fields are counted
/// from the last `)`.
pub(crate) fn parse_stat(
    stat: &str,
    proc_stat: &str,
    ticks: u64,
    page: u64,
) -> Option<ProcessStats> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state): field N is f[N - 3].
    let field = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    let ticks = ticks.max(1) as f64;
    let boot: u64 = proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(ProcessStats {
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        threads: field(20)?,
        start_time_seconds: boot as f64 + field(22)? as f64 / ticks,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)?.saturating_mul(page),
        open_fds: None,
        max_fds: None,
    })
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
pub(crate) fn parse_max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl ProcessStats {
    fn families(&self) -> Vec<MetricFamily> {
        let mut out = Vec::new();
        let mut gauge = |name: &str, help: &str, v: f64| {
            if let Ok(g) = Gauge::with_opts(Opts::new(name, help)) {
                g.set(v);
                out.extend(g.collect());
            }
        };
        gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            self.start_time_seconds,
        );
        gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            self.virtual_bytes as f64,
        );
        gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            self.resident_bytes as f64,
        );
        gauge(
            "process_threads",
            "Number of OS threads in the process.",
            self.threads as f64,
        );
        if let Some(n) = self.open_fds {
            gauge(
                "process_open_fds",
                "Number of open file descriptors.",
                n as f64,
            );
        }
        if let Some(n) = self.max_fds {
            gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                n as f64,
            );
        }
        if let Ok(c) = Counter::with_opts(Opts::new(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        )) {
            c.inc_by(self.cpu_seconds);
            out.extend(c.collect());
        }
        out
    }
}

#[cfg(test)]
#[path = "process_tests.rs"]
mod tests;
