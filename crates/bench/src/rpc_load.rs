//! Load for a gRPC service, called through a closure that returns whether the call
//! succeeded: open loop at a fixed rate (latency at a given throughput), or closed loop
//! with a fixed number of calls in flight (the most it answers).
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use parking_lot::Mutex;

use crate::gateway::quantile;

pub struct Sampled {
    pub calls: usize,
    pub failed: usize,
    /// Calls answered per second of the run.
    pub per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
}

pub(crate) fn summarize(mut took: Vec<Duration>, failed: usize, wall: Duration) -> Sampled {
    took.sort();
    Sampled {
        calls: took.len(),
        failed,
        per_sec: took.len() as f64 / wall.as_secs_f64(),
        p50: quantile(&took, 0.5),
        p99: quantile(&took, 0.99),
    }
}

/// `rate` calls per second for `d`, in batches on a 1 ms tick, each timed from its
/// start to its answer. A generator that falls behind shows as a lower `per_sec`.
pub async fn fixed_rate<F, Fut>(rate: u32, d: Duration, call: F) -> Sampled
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = bool> + Send + 'static,
{
    let per_tick = (rate / 1000).max(1) as usize;
    let results = Arc::new(Mutex::new((
        Vec::with_capacity(rate as usize * d.as_secs() as usize),
        0usize,
    )));
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut n = 0usize;
    let mut tasks = tokio::task::JoinSet::new();
    while started.elapsed() < d {
        tick.tick().await;
        for _ in 0..per_tick {
            let fut = call(n);
            n += 1;
            let results = results.clone();
            tasks.spawn(async move {
                let t = Instant::now();
                let ok = fut.await;
                let took = t.elapsed();
                let mut r = results.lock();
                r.0.push(took);
                r.1 += usize::from(!ok);
            });
        }
        // Reap finished calls so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let wall = started.elapsed();
    let (took, failed) = std::mem::take(&mut *results.lock());
    summarize(took, failed, wall)
}

/// `inflight` calls outstanding at all times for `d`.
pub async fn closed_loop<F, Fut>(inflight: usize, d: Duration, call: F) -> Sampled
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = bool> + Send + 'static,
{
    let started = Instant::now();
    let mut took = Vec::new();
    let mut failed = 0;
    let mut n = 0usize;
    let mut running = futures::stream::FuturesUnordered::new();
    loop {
        while started.elapsed() < d && running.len() < inflight {
            let fut = call(n);
            n += 1;
            running.push(async move {
                let t = Instant::now();
                (fut.await, t.elapsed())
            });
        }
        match running.next().await {
            Some((ok, t)) => {
                took.push(t);
                failed += usize::from(!ok);
            }
            None => break,
        }
    }
    summarize(took, failed, started.elapsed())
}
