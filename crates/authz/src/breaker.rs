//! A per-endpoint circuit breaker. Closed: calls flow and consecutive failures are
//! counted. Open (after `failure_threshold` in a row): calls fail at once, so a dead
//! backend costs microseconds instead of a timeout per request. Half-open (after
//! `open_for`): one probe is let through; its success closes the breaker, its failure
//! opens it again.
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The value of the `portcullis_authz_breaker_state` gauge.
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            open_for: Duration::from_secs(5),
        }
    }
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Breaker {
        Breaker {
            config,
            inner: Mutex::new(Inner::Closed { failures: 0 }),
        }
    }

    /// May a call go out now? In half-open only the first caller (the probe) may.
    pub fn try_acquire(&self) -> bool {
        let mut inner = self.inner.lock();
        match *inner {
            Inner::Closed { .. } => true,
            Inner::Open { until } if Instant::now() >= until => {
                *inner = Inner::HalfOpen { probing: true };
                true
            }
            Inner::Open { .. } => false,
            Inner::HalfOpen { ref mut probing } => !std::mem::replace(probing, true),
        }
    }

    pub fn on_success(&self) {
        *self.inner.lock() = Inner::Closed { failures: 0 };
    }

    pub fn on_failure(&self) {
        let mut inner = self.inner.lock();
        let open = Inner::Open {
            until: Instant::now() + self.config.open_for,
        };
        *inner = match *inner {
            Inner::Closed { failures } if failures + 1 < self.config.failure_threshold => {
                Inner::Closed {
                    failures: failures + 1,
                }
            }
            _ => open,
        };
    }

    /// A call that was let through ended without an answer either way (cancelled by a
    /// faster hedge): a half-open probe slot is handed back.
    pub fn on_abandoned(&self) {
        let mut inner = self.inner.lock();
        if let Inner::HalfOpen { probing } = &mut *inner {
            *probing = false;
        }
    }

    pub fn state(&self) -> BreakerState {
        match *self.inner.lock() {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if Instant::now() >= until => BreakerState::HalfOpen,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig {
            failure_threshold: 3,
            open_for: Duration::from_secs(10),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_and_half_opens_with_one_probe() {
        let b = breaker();
        for _ in 0..2 {
            assert!(b.try_acquire());
            b.on_failure();
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.on_failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.try_acquire());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.try_acquire(), "the probe");
        assert!(!b.try_acquire(), "only one probe");
        b.on_failure();
        assert_eq!(b.state(), BreakerState::Open, "a failed probe reopens");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(b.try_acquire());
        b.on_success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.try_acquire() && b.try_acquire());
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_count_and_abandoned_probes_return_the_slot() {
        let b = breaker();
        b.on_failure();
        b.on_failure();
        b.on_success();
        b.on_failure();
        b.on_failure();
        assert_eq!(
            b.state(),
            BreakerState::Closed,
            "failures must be consecutive"
        );
        b.on_failure();
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(b.try_acquire());
        b.on_abandoned();
        assert!(b.try_acquire(), "slot handed back");
    }
}
