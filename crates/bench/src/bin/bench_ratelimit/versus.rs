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

use super::{CLIENTS, LIMIT_NAME, decided, decided_per_sec, decision_request};

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

/// Best closed-loop round of each server: (ours, theirs).
pub async fn versus(
    ours: SocketAddr,
    theirs: SocketAddr,
    round: Duration,
) -> anyhow::Result<(Sampled, Sampled)> {
    let (a, b) = (decider(ours).await?, decider(theirs).await?);
    rpc_load::closed_loop(INFLIGHT, Duration::from_secs(1), &a).await;
    rpc_load::closed_loop(INFLIGHT, Duration::from_secs(1), &b).await;
    let (mut best_a, mut best_b) = (None, None);
    for _ in 0..ROUNDS {
        best_a = best(best_a, rpc_load::closed_loop(INFLIGHT, round, &a).await);
        best_b = best(best_b, rpc_load::closed_loop(INFLIGHT, round, &b).await);
    }
    Ok((best_a.expect("rounds"), best_b.expect("rounds")))
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

/// One comparison row; `None` for Limitador when it is not built.
pub fn row(what: &str, target: f64, r: Option<&(Sampled, Sampled)>, theirs: &str) -> Row {
    let metric = format!(
        "ShouldRateLimit decisions per second, {what} vs Limitador `{theirs}` ({INFLIGHT} in flight, {CLIENTS} clients, best of {ROUNDS} alternating rounds)"
    );
    let t = target;
    let target = format!("≥ {target}× Limitador");
    let Some((ours, lim)) = r else {
        return Row {
            metric,
            value: "not measured: limitador-server not built (make limitador)".into(),
            target,
            baseline: "—".into(),
            ratio: "—".into(),
            verdict: "MISS",
        };
    };
    let (a, b) = (decided_per_sec(ours), decided_per_sec(lim));
    let ratio = a / b.max(1.0);
    Row {
        metric,
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
        target,
        ratio: format!("{ratio:.2}×"),
        verdict: if ratio >= t {
            "ok"
        } else if ratio >= t / 2.0 {
            "MISS"
        } else {
            "FAIL"
        },
    }
}

fn undecided(s: &Sampled) -> String {
    match s.failed {
        0 => String::new(),
        n => format!(", {n} not decided"),
    }
}

/// Starts Limitador with `storage` and compares it with the service at `ours`.
pub async fn against(
    bin: &std::path::Path,
    ours: SocketAddr,
    storage: &[&str],
    round: Duration,
) -> anyhow::Result<(Sampled, Sampled)> {
    let lim = Limitador::start(bin, &spec(), storage)?;
    let r = versus(ours, lim.addr, round).await;
    println!(
        "vs limitador {}: {}",
        storage[0],
        match &r {
            Ok((a, b)) => format!("{:.0}/s vs {:.0}/s", decided_per_sec(a), decided_per_sec(b)),
            Err(e) => format!("{e:#}"),
        }
    );
    drop(lim);
    r
}
