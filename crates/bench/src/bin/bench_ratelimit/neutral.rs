//! The rate-limit service against Limitador measured by h2load, as issue 17 asks: one
//! C client process sends the same ShouldRateLimit frame to each server in turn, so
//! neither figure carries the benchmark's own Rust gRPC client. On this 2-core machine
//! that client costs more CPU per call than either server, so the closed loop through
//! it (`versus`) measures the client as much as the servers.
//!
//! h2load sees only HTTP status, and a gRPC error travels in a 200 answer's trailers,
//! so each round reads the server's own decision counters before and after: a round
//! counts only the calls its server says it decided.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use portcullis_bench::frame_load::HEALTH_PATH;
use portcullis_bench::h2load::{self, Spec};
use portcullis_bench::report::{Row, counter_sum, verdict_min};
use tonic_health::pb::HealthCheckRequest;

use super::{decision_request, fetch_text, versus::cpu_seconds};

const ROUNDS: usize = 3;
/// 64 calls in flight, as in the Rust client's closed loop.
const CONNECTIONS: usize = 4;
const STREAMS: usize = 16;
pub const PATH: &str = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit";

/// A server under test: where it listens, its process, and how to read how many
/// calls it has decided.
#[derive(Clone)]
pub struct Target {
    pub grpc: SocketAddr,
    pub pid: u32,
    /// The Redis it counts in, whose CPU per decision the rounds read too.
    pub store_pid: Option<u32>,
    /// Its Prometheus text endpoint.
    pub metrics: String,
    /// Counters whose sum is its decisions (with a label filter).
    pub counters: &'static [(&'static str, &'static str)],
}

/// Ours: every decision the store made (`outcome="ok"`; the load stays far under
/// the limit, so a decision is never "over_limit").
pub const OURS: &[(&str, &str)] = &[("portcullis_ratelimit_decisions_total", "outcome=\"ok\"")];
/// Limitador: calls let through and calls limited.
pub const LIMITADOR: &[(&str, &str)] = &[("authorized_calls", ""), ("limited_calls", "")];

async fn decided(t: &Target) -> anyhow::Result<f64> {
    let (status, text) = fetch_text(&t.metrics).await?;
    anyhow::ensure!(status == 200, "{}: {status}", t.metrics);
    Ok(counter_sum(&text, t.counters))
}

/// One side's rounds.
#[derive(Default)]
pub struct Tally {
    /// Best round: decisions per second, p50, p99.
    pub best: Option<(f64, Duration, Duration)>,
    /// Answered calls the server did not count as decided, over all rounds.
    pub undecided: u64,
    decided: f64,
    cpu: f64,
    store_cpu: f64,
}

impl Tally {
    /// Decisions per second of the server process's CPU time, over all rounds.
    pub fn per_cpu_second(&self) -> Option<f64> {
        (self.cpu > 0.0).then(|| self.decided / self.cpu)
    }

    /// Microseconds of the store's (Redis's) CPU time per decision, over all rounds.
    pub fn store_us_per_decision(&self) -> Option<f64> {
        (self.store_cpu > 0.0 && self.decided > 0.0).then(|| self.store_cpu / self.decided * 1e6)
    }
}

async fn round(t: &Target, spec: &Spec, scratch: &Path, tally: &mut Tally) -> anyhow::Result<()> {
    let store_cpu = || t.store_pid.and_then(cpu_seconds);
    let (before, cpu_before, store_before) = (decided(t).await?, cpu_seconds(t.pid), store_cpu());
    let run = tokio::task::block_in_place(|| h2load::run(spec, scratch))?;
    let (after, cpu_after, store_after) = (decided(t).await?, cpu_seconds(t.pid), store_cpu());
    if let (Some(b), Some(a)) = (store_before, store_after) {
        tally.store_cpu += a - b;
    }
    let counted = after - before;
    // The server may decide calls whose answers h2load stopped waiting for at the
    // end; never count more than h2load saw answered.
    let decisions = counted.min(run.ok as f64);
    tally.undecided += run.ok.saturating_sub(counted as u64) + run.bad;
    tally.decided += decisions;
    if let (Some(b), Some(a)) = (cpu_before, cpu_after) {
        tally.cpu += a - b;
    }
    let per_sec = run.per_sec * decisions / (run.ok.max(1) as f64);
    if tally.best.is_none_or(|(b, _, _)| per_sec > b) {
        tally.best = Some((per_sec, run.p50, run.p99));
    }
    Ok(())
}

/// Rounds alternating between `ours` and `theirs` (ours, theirs, …) after a warm-up
/// of each; each keeps its best round.
pub async fn versus(
    ours: &Target,
    theirs: &Target,
    round_secs: u64,
    scratch: &Path,
) -> anyhow::Result<(Tally, Tally)> {
    let frame = decision_frame(scratch)?;
    let spec = |t: &Target, secs: u64| spec(t.grpc, PATH, &frame, secs);
    let (mut a, mut b) = (Tally::default(), Tally::default());
    for t in [ours, theirs] {
        tokio::task::block_in_place(|| h2load::run(&spec(t, 1), scratch))
            .with_context(|| format!("warming up {}", t.grpc))?;
    }
    for _ in 0..ROUNDS {
        round(ours, &spec(ours, round_secs), scratch, &mut a).await?;
        round(theirs, &spec(theirs, round_secs), scratch, &mut b).await?;
    }
    Ok((a, b))
}

fn decision_frame(scratch: &Path) -> anyhow::Result<PathBuf> {
    let frame = scratch.join("should_rate_limit.grpc");
    std::fs::write(&frame, h2load::grpc_frame(&decision_request(0)))?;
    Ok(frame)
}

/// h2load's closed loop: [`CONNECTIONS`] × [`STREAMS`] calls in flight, posting `frame`.
fn spec(grpc: SocketAddr, path: &str, frame: &Path, secs: u64) -> Spec {
    Spec {
        url: format!("http://{grpc}{path}"),
        connect_to: None,
        clients: CONNECTIONS,
        streams: STREAMS,
        every: None,
        data: Some(frame.to_path_buf()),
        headers: h2load::grpc_headers(),
        h1: false,
        duration: Duration::from_secs(secs),
        warm_up: Duration::ZERO,
    }
}

/// Our server's decisions per second against its own gRPC health checks, both driven
/// by the same h2load closed loop in alternating rounds (health first, then
/// decisions) after a warm-up of each; each side keeps its best round. The health
/// side is the best h2load's answered calls per second with none failed (0 when
/// every round failed some).
pub async fn alone(ours: &Target, round_secs: u64, scratch: &Path) -> anyhow::Result<(Tally, f64)> {
    let frame = decision_frame(scratch)?;
    let health = scratch.join("health_check.grpc");
    std::fs::write(&health, h2load::grpc_frame(&HealthCheckRequest::default()))?;
    let decisions = |secs| spec(ours.grpc, PATH, &frame, secs);
    let checks = |secs| spec(ours.grpc, HEALTH_PATH, &health, secs);
    for warm in [checks(1), decisions(1)] {
        tokio::task::block_in_place(|| h2load::run(&warm, scratch))
            .with_context(|| format!("warming up {}", ours.grpc))?;
    }
    let (mut tally, mut best_health) = (Tally::default(), 0.0_f64);
    for _ in 0..ROUNDS {
        let run = tokio::task::block_in_place(|| h2load::run(&checks(round_secs), scratch))?;
        if run.bad == 0 {
            best_health = best_health.max(run.per_sec);
        }
        round(ours, &decisions(round_secs), scratch, &mut tally).await?;
    }
    Ok((tally, best_health))
}

/// What a row's value adds for calls answered but not counted as decided.
fn undecided_text(t: &Tally) -> String {
    match t.undecided {
        0 => String::new(),
        n => format!(", {n} answered but not decided"),
    }
}

/// [`alone`]'s row: the Redis store's decisions per second in a closed loop of 64
/// calls in flight, against `target`.
pub fn alone_row(what: &str, target: f64, (ours, health): &(Tally, f64)) -> Row {
    let (per_sec, p50, p99) = ours.best.unwrap_or_default();
    let undecided = undecided_text(ours);
    Row {
        metric: format!(
            "ShouldRateLimit decisions per second measured by h2load, {what} ({CONNECTIONS} connections × {STREAMS} streams: {} in flight; best of {ROUNDS} rounds alternating with health checks)",
            CONNECTIONS * STREAMS
        ),
        value: format!(
            "{per_sec:.0}/s, p50 / p99 {} / {} µs{undecided}",
            p50.as_micros(),
            p99.as_micros()
        ),
        target: format!("≥ {target:.0}/s"),
        baseline: format!("gRPC health checks, same client: {health:.0}/s"),
        ratio: format!("{:.2}×", per_sec / health.max(1.0)),
        verdict: match verdict_min(per_sec, target) {
            "ok" if ours.undecided > 0 => "MISS",
            v => v,
        },
    }
}

/// The comparison's row; `None` when Limitador is not built.
pub fn row(what: &str, target: f64, r: Option<&(Tally, Tally)>, theirs: &str) -> Row {
    let metric = format!(
        "ShouldRateLimit decisions per second measured by h2load, {what} vs Limitador `{theirs}` (one h2load process, {CONNECTIONS} connections × {STREAMS} streams, the same request; best of {ROUNDS} alternating rounds)"
    );
    let target_text = format!("≥ {target}× Limitador");
    let Some((ours, lim)) = r else {
        return Row {
            metric,
            value: "not measured: limitador-server not built (make limitador)".into(),
            target: target_text,
            baseline: "—".into(),
            ratio: "—".into(),
            verdict: "MISS",
        };
    };
    let side = |t: &Tally| {
        let (per_sec, p50, p99) = t.best.unwrap_or_default();
        let cpu = t
            .per_cpu_second()
            .map_or(String::new(), |c| format!("; {c:.0} per CPU-second"));
        let store = t.store_us_per_decision().map_or(String::new(), |us| {
            format!("; Redis {us:.1} µs CPU per decision")
        });
        let undecided = undecided_text(t);
        (
            per_sec,
            format!(
                "{per_sec:.0}/s, p50 / p99 {} / {} µs{cpu}{store}{undecided}",
                p50.as_micros(),
                p99.as_micros()
            ),
        )
    };
    let ((a, a_text), (b, b_text)) = (side(ours), side(lim));
    let ratio = a / b.max(1.0);
    let clean = ours.undecided == 0;
    Row {
        metric,
        value: a_text,
        target: target_text,
        baseline: format!("Limitador `{theirs}`: {b_text}"),
        ratio: format!("{ratio:.2}×"),
        verdict: match verdict_min(ratio, target) {
            "ok" if !clean => "MISS",
            v => v,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_decision_counters_and_nothing_else() {
        let ours = "# HELP portcullis_ratelimit_decisions_total x\nportcullis_ratelimit_decisions_total{limit=\"a\",outcome=\"ok\"} 40\nportcullis_ratelimit_decisions_total{limit=\"b\",outcome=\"ok\"} 2\nportcullis_ratelimit_decisions_total{limit=\"a\",outcome=\"store_failure_allowed\"} 7\nportcullis_ratelimit_decisions_total_other 9\n";
        assert_eq!(counter_sum(ours, OURS), 42.0);
        let lim = "authorized_calls{limitador_namespace=\"n\"} 10\nlimited_calls{limitador_namespace=\"n\"} 3\nauthorized_hits 99\n";
        assert_eq!(counter_sum(lim, LIMITADOR), 13.0);
    }

    #[test]
    fn the_closed_loop_row_needs_the_rate_and_every_call_decided() {
        let ms = Duration::from_millis;
        let run = |per_sec, undecided| Tally {
            best: Some((per_sec, ms(1), ms(3))),
            undecided,
            ..Default::default()
        };
        let row = alone_row("Redis store", 20_000.0, &(run(34_000.0, 0), 60_000.0));
        assert_eq!(row.verdict, "ok");
        assert_eq!(row.ratio, "0.57×");
        assert!(row.value.starts_with("34000/s"), "{}", row.value);
        let verdict = |per_sec, undecided| {
            alone_row(
                "Redis store",
                20_000.0,
                &(run(per_sec, undecided), 60_000.0),
            )
            .verdict
        };
        assert_eq!(verdict(34_000.0, 1), "MISS");
        assert_eq!(verdict(19_999.0, 0), "MISS");
        assert_eq!(verdict(9_999.0, 0), "FAIL");
        // Every round failed: no rate at all.
        let none = alone_row("Redis store", 20_000.0, &(Tally::default(), 0.0));
        assert_eq!(none.verdict, "FAIL");
    }
}
