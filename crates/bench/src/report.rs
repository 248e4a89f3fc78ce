//! Results as a markdown table, written between markers in docs/benchmarks.md.
use std::path::Path;

/// The command line the benchmarks with a results section share.
#[derive(clap::Parser)]
pub struct Args {
    /// Write the results section into this markdown file.
    #[arg(long)]
    pub out: Option<String>,
    /// Shorter runs (a smoke test of the benchmark itself).
    #[arg(long)]
    pub quick: bool,
}

pub struct Row {
    pub metric: String,
    pub value: String,
    pub target: String,
    pub baseline: String,
    pub ratio: String,
    pub verdict: &'static str,
}

pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| metric | value | target | baseline (same run) | ratio | |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out += &format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.metric, r.value, r.target, r.baseline, r.ratio, r.verdict
        );
    }
    out
}

/// Replaces the section between `<!-- name:start -->` and `<!-- name:end -->`.
pub fn write_section(file: &Path, name: &str, body: &str) -> std::io::Result<()> {
    let (start, end) = (
        format!("<!-- {name}:start -->"),
        format!("<!-- {name}:end -->"),
    );
    let old = std::fs::read_to_string(file).unwrap_or_else(|_| {
        "# Benchmarks\n\nProduced by `make bench`; every figure is measured, never assumed.\n"
            .into()
    });
    let section = format!("{start}\n{body}\n{end}");
    let new = match (old.find(&start), old.find(&end)) {
        (Some(a), Some(b)) if b > a => format!("{}{}{}", &old[..a], section, &old[b + end.len()..]),
        _ => format!("{}\n{}\n", old.trim_end(), section),
    };
    std::fs::write(file, new)
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cores} cores, {cpu}")
}

/// Peak resident memory of this process, in MiB (VmHWM).
pub fn peak_rss_mib() -> f64 {
    status_mib("VmHWM:")
}

/// Resident memory of this process now, in MiB (VmRSS).
pub fn rss_mib() -> f64 {
    status_mib("VmRSS:")
}

/// A target verdict for a figure where lower is better: "ok" within the target, "MISS"
/// up to 2× over it, "FAIL" beyond (the regression guard: the bench then exits non-zero).
pub fn verdict_max(value: f64, target: f64) -> &'static str {
    if value <= target {
        "ok"
    } else if value <= 2.0 * target {
        "MISS"
    } else {
        "FAIL"
    }
}

/// A target verdict for a figure where higher is better (a rate, a ratio to a
/// baseline): "ok" at or above the target, "MISS" down to half of it, "FAIL" below.
pub fn verdict_min(value: f64, target: f64) -> &'static str {
    if value >= target {
        "ok"
    } else if value >= target / 2.0 {
        "MISS"
    } else {
        "FAIL"
    }
}

/// The sum of the named counters in a Prometheus text exposition: each `(name,
/// filter)` takes the samples of `name` (with or without labels) whose line holds
/// `filter`.
pub fn counter_sum(text: &str, counters: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            counters.iter().any(|(name, filter)| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(['{', ' ']))
                    && l.contains(filter)
            })
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Fails the run when a row is more than 2× off its target (the regression guard).
pub fn guard(rows: &[Row]) -> anyhow::Result<()> {
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| r.verdict == "FAIL")
        .map(|r| r.metric.as_str())
        .collect();
    anyhow::ensure!(
        failed.is_empty(),
        "regression guard: more than 2× off target: {}",
        failed.join("; ")
    );
    Ok(())
}

fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(field)).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<f64>()
                    .unwrap_or(0.0)
            })
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// The 1-minute load average (/proc/loadavg): on a shared machine, how many runnable
/// tasks competed with the benchmark.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(verdict: &'static str) -> Row {
        Row {
            metric: format!("a figure that is {verdict}"),
            value: String::new(),
            target: String::new(),
            baseline: String::new(),
            ratio: String::new(),
            verdict,
        }
    }

    /// Within the target is ok, up to 2× off a MISS, beyond a FAIL, either way round.
    #[test]
    fn verdicts_follow_the_two_times_rule() {
        assert_eq!(verdict_max(20.0, 20.0), "ok");
        assert_eq!(verdict_max(40.0, 20.0), "MISS");
        assert_eq!(verdict_max(40.1, 20.0), "FAIL");
        assert_eq!(verdict_min(1.2, 1.2), "ok");
        assert_eq!(verdict_min(0.6, 1.2), "MISS");
        assert_eq!(verdict_min(0.59, 1.2), "FAIL");
    }

    /// The regression guard fails the run on a FAIL only, naming it.
    #[test]
    fn the_guard_fails_only_on_a_fail() {
        assert!(guard(&[row("ok"), row("MISS")]).is_ok());
        let err = guard(&[row("ok"), row("FAIL"), row("MISS")]).unwrap_err();
        assert!(err.to_string().contains("a figure that is FAIL"), "{err}");
        assert!(!err.to_string().contains("MISS"), "{err}");
    }
}
