//! Hedged requests across regional endpoints, and retries with backoff and jitter.
//!
//! `hedged` asks endpoint 0; if it has not answered after `delay`, endpoint 1 too, and
//! so on. The first success wins and the others are dropped (cancelled). A failure
//! starts the next endpoint at once instead of waiting for the delay.
use std::future::Future;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};

pub async fn hedged<T, E, F, Fut>(endpoints: usize, delay: Duration, mut attempt: F) -> Result<T, E>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    assert!(endpoints > 0, "hedged needs at least one endpoint");
    let mut running = FuturesUnordered::new();
    running.push(attempt(0));
    let mut next = 1;
    let mut last_err = None;
    loop {
        let hedge = tokio::time::sleep(delay);
        tokio::select! {
            done = running.next() => match done {
                Some(Ok(v)) => return Ok(v),
                Some(Err(e)) => {
                    last_err = Some(e);
                    if next < endpoints {
                        running.push(attempt(next));
                        next += 1;
                    } else if running.is_empty() {
                        return Err(last_err.expect("set just above"));
                    }
                }
                None => return Err(last_err.expect("an attempt ran")),
            },
            _ = hedge, if next < endpoints => {
                running.push(attempt(next));
                next += 1;
            }
        }
    }
}

/// Exponential backoff with full jitter: attempt `n` (0-based) waits a uniformly random
/// time in `[0, min(max, base * 2^n)]`, so clients that failed together do not retry
/// together.
pub fn backoff(base: Duration, max: Duration, n: u32) -> Duration {
    let cap = base.saturating_mul(1u32 << n.min(16)).min(max);
    cap.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn answer(ms: u64, ok: bool, tag: usize) -> Result<usize, usize> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        if ok { Ok(tag) } else { Err(tag) }
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_primary_is_overtaken_after_the_delay() {
        let start = tokio::time::Instant::now();
        let lat = [300, 5];
        let r = hedged(2, Duration::from_millis(20), |i| answer(lat[i], true, i)).await;
        assert_eq!(r, Ok(1));
        assert_eq!(start.elapsed(), Duration::from_millis(25));
    }

    #[tokio::test(start_paused = true)]
    async fn a_fast_primary_never_starts_the_hedge() {
        let started = Arc::new(AtomicUsize::new(0));
        let s = started.clone();
        let r = hedged(3, Duration::from_millis(20), move |i| {
            s.fetch_add(1, Ordering::SeqCst);
            answer(5, true, i)
        })
        .await;
        assert_eq!(r, Ok(0));
        assert_eq!(started.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_fail_over_at_once_and_the_last_error_is_returned() {
        let start = tokio::time::Instant::now();
        let r = hedged(3, Duration::from_secs(1), |i| answer(1, i == 2, i)).await;
        assert_eq!(r, Ok(2));
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(3),
            "no hedge delay waited"
        );
        let r = hedged(2, Duration::from_secs(1), |i| answer(1, false, i)).await;
        assert_eq!(r, Err(1));
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let (base, max) = (Duration::from_millis(10), Duration::from_millis(100));
        for n in 0..20 {
            let d = backoff(base, max, n);
            assert!(d <= (base * 2u32.pow(n.min(16))).min(max), "{n}: {d:?}");
        }
        let distinct: std::collections::HashSet<_> =
            (0..20).map(|_| backoff(base, max, 3)).collect();
        assert!(distinct.len() > 1, "jittered");
    }
}
