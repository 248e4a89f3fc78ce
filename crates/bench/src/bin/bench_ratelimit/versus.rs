//! The rate-limit service against Kuadrant's Limitador: the same closed-loop gRPC
//! client, the same descriptors, the same Redis. Rounds alternate between the two
//! servers (ours, theirs, ours, …) and each keeps its best round, so a burst of
//! other work on this shared machine does not land on one side only.
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use anyhow::bail;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use portcullis_bench::limitador::{LimitSpec, Limitador};
use portcullis_bench::report::Row;
use portcullis_bench::rpc_load::{self, Sampled};
use tonic::transport::Channel;

use super::{CLIENTS, LIMIT_NAME, decided, decided_per_sec, decision_request, neutral};

const ROUNDS: usize = 3;
const INFLIGHT: usize = 64;

type Call = Pin<Box<dyn Future<Output = bool> + Send>>;

/// A ShouldRateLimit caller over 4 HTTP/2 connections, once `addr` decides.
async fn decider(addr: SocketAddr) -> anyhow::Result<impl Fn(usize) -> Call> {
    let mut channels = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while channels.len() < 4 {
        match Channel::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect()
            .await
        {
            Ok(c) => channels.push(c),
            Err(e) if Instant::now() > deadline => bail!("{addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let decide = move |n: usize| -> Call {
        let mut c = RateLimitServiceClient::new(channels[n % channels.len()].clone());
        Box::pin(async move {
            c.should_rate_limit(decision_request(n))
                .await
                .is_ok_and(|r| decided(r.get_ref()))
        })
    };
    while !decide(0).await {
        if Instant::now() > deadline {
            bail!("{addr} never decided");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(decide)
}

fn best(a: Option<Sampled>, b: Sampled) -> Option<Sampled> {
    match a {
        Some(a) if decided_per_sec(&a) >= decided_per_sec(&b) => Some(a),
        _ => Some(b),
    }
}

/// One side of a comparison: its best round, and its decisions per second of its
/// own process's CPU time over all rounds.
pub struct Side {
    pub best: Sampled,
    pub per_cpu_second: Option<f64>,
}

/// The CPU seconds (user + system) process `pid` has used, from /proc.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    portcullis_bench::gateway::cpu_time(&format!("/proc/{pid}/stat")).map(|d| d.as_secs_f64())
}

/// Runs rounds against one side, counting its decided calls and CPU time.
struct Tally {
    pid: u32,
    best: Option<Sampled>,
    decided: f64,
    cpu: Option<f64>,
}

impl Tally {
    async fn round(&mut self, decide: &impl Fn(usize) -> Call, round: Duration) {
        let before = cpu_seconds(self.pid);
        let s = rpc_load::closed_loop(INFLIGHT, round, decide).await;
        let after = cpu_seconds(self.pid);
        self.decided += (s.calls - s.failed) as f64;
        self.cpu = match (self.cpu, before, after) {
            (Some(total), Some(b), Some(a)) => Some(total + (a - b)),
            _ => None,
        };
        self.best = best(self.best.take(), s);
    }

    fn side(self) -> Side {
        Side {
            best: self.best.expect("rounds"),
            per_cpu_second: self.cpu.filter(|&c| c > 0.0).map(|c| self.decided / c),
        }
    }
}

/// Each server's rounds, alternating: (ours, theirs). `pids` are the two server
/// processes, for their CPU time.
pub async fn versus(
    ours: SocketAddr,
    theirs: SocketAddr,
    pids: (u32, u32),
    round: Duration,
) -> anyhow::Result<(Side, Side)> {
    let (a, b) = (decider(ours).await?, decider(theirs).await?);
    rpc_load::closed_loop(INFLIGHT, Duration::from_secs(1), &a).await;
    rpc_load::closed_loop(INFLIGHT, Duration::from_secs(1), &b).await;
    let tally = |pid| Tally {
        pid,
        best: None,
        decided: 0.0,
        cpu: Some(0.0),
    };
    let (mut ta, mut tb) = (tally(pids.0), tally(pids.1));
    for _ in 0..ROUNDS {
        ta.round(&a, round).await;
        tb.round(&b, round).await;
    }
    Ok((ta.side(), tb.side()))
}

/// The limits file equivalent to the benchmark's Route limit: per client, far above
/// the load.
pub fn spec() -> LimitSpec<'static> {
    LimitSpec {
        namespace: portcullis_ratelimit::DOMAIN,
        condition_key: portcullis_ratelimit::LIMIT_KEY,
        condition_value: LIMIT_NAME,
        variable: "header:x-client",
        max_value: 1_000_000_000,
        seconds: 1,
    }
}

/// The closed loop through the Rust client, beside the h2load row that carries the
/// target: no target of its own (that client costs more CPU per call than either
/// server, on the same 2 cores). `None` when Limitador is not built.
pub fn row(what: &str, r: Option<&(Side, Side)>, theirs: &str) -> Option<Row> {
    let (Side { best: ours, .. }, Side { best: lim, .. }) = r?;
    let (a, b) = (decided_per_sec(ours), decided_per_sec(lim));
    Some(Row {
        metric: format!(
            "ShouldRateLimit decisions per second through the benchmark's Rust gRPC client (tonic, in the benchmark process), {what} vs Limitador `{theirs}` ({INFLIGHT} in flight, {CLIENTS} clients, best of {ROUNDS} alternating rounds)"
        ),
        value: format!(
            "{a:.0}/s, p50 / p99 {} / {} µs{}",
            ours.p50.as_micros(),
            ours.p99.as_micros(),
            undecided(ours)
        ),
        baseline: format!(
            "Limitador `{theirs}`: {b:.0}/s, p50 / p99 {} / {} µs{}",
            lim.p50.as_micros(),
            lim.p99.as_micros(),
            undecided(lim)
        ),
        target: "— (h2load row above)".into(),
        ratio: format!("{:.2}×", a / b.max(1.0)),
        verdict: "ok",
    })
}

fn undecided(s: &Sampled) -> String {
    match s.failed {
        0 => String::new(),
        n => format!(", {n} not decided"),
    }
}

/// Both comparisons with one Limitador: through the Rust client (`tonic`, when asked)
/// and through h2load.
pub struct Compared {
    pub tonic: Option<(Side, Side)>,
    pub neutral: (neutral::Tally, neutral::Tally),
}

/// Starts Limitador with `storage` and compares it with the service `ours`.
pub async fn against(
    bin: &std::path::Path,
    ours: &neutral::Target,
    storage: &[&str],
    round: Duration,
    tonic: bool,
    scratch: &std::path::Path,
) -> anyhow::Result<Compared> {
    let lim = Limitador::start(bin, &spec(), storage)?;
    let theirs = neutral::Target {
        grpc: lim.addr,
        pid: lim.pid(),
        // The same Redis as ours, when it counts in Redis.
        store_pid: ours
            .store_pid
            .filter(|_| storage.first() != Some(&"memory")),
        metrics: format!("http://{}/metrics", lim.http),
        counters: neutral::LIMITADOR,
    };
    // Both decide before anything is measured (the Rust client's readiness check).
    let _ = decider(ours.grpc).await?;
    let _ = decider(theirs.grpc).await?;
    let tonic = match tonic {
        true => Some(versus(ours.grpc, theirs.grpc, (ours.pid, theirs.pid), round).await?),
        false => None,
    };
    let neutral = neutral::versus(ours, &theirs, round.as_secs().max(1), scratch).await?;
    let rate = |t: &neutral::Tally| t.best.map_or(0.0, |b| b.0);
    println!(
        "vs limitador {}: h2load {:.0}/s vs {:.0}/s{}",
        storage[0],
        rate(&neutral.0),
        rate(&neutral.1),
        tonic.as_ref().map_or(String::new(), |(a, b)| format!(
            "; Rust client {:.0}/s vs {:.0}/s",
            decided_per_sec(&a.best),
            decided_per_sec(&b.best)
        )),
    );
    drop(lim);
    Ok(Compared { tonic, neutral })
}

/// Decisions per second of each server's own CPU time, over all its rounds: what each
/// would decide with a core to itself. The closed loop above leaves neither server
/// busy all the time on this 2-core machine (the client shares it), so its figure
/// follows the loop's latency as much as the server's work.
pub fn cpu_row(what: &str, r: Option<&(Side, Side)>, theirs: &str) -> Option<Row> {
    let (ours, lim) = r?;
    let (a, b) = (ours.per_cpu_second?, lim.per_cpu_second?);
    Some(Row {
        metric: format!(
            "ShouldRateLimit decisions per CPU-second of the server process, {what} vs Limitador `{theirs}` (the rounds above, user + system time from /proc)"
        ),
        value: format!("{a:.0}"),
        target: "—".into(),
        baseline: format!("Limitador `{theirs}`: {b:.0}"),
        ratio: format!("{:.2}×", a / b.max(1.0)),
        verdict: "ok",
    })
}
