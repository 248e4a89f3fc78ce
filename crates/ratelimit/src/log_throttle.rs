//! At most one log line per interval for an event that can happen on every request:
//! with its store down, the service would otherwise write a warning per decision
//! (20,000 lines a second at the benchmark's rate) and spend its CPU on its logs
//! while the outage lasts. The metrics still count every event.
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct LogThrottle {
    every: Duration,
    /// When the last line was written, and how many events went unlogged since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogThrottle {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// [`LogThrottle::admit_at`] now: tokio's clock (the wall clock, or a test's
    /// paused one).
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(tokio::time::Instant::now().into_std())
    }

    /// `Some(skipped)` when a line may be written at `now` (`skipped`: the events not
    /// logged since the last line); `None` when it must be skipped.
    pub fn admit_at(&self, now: Instant) -> Option<u64> {
        // A panic elsewhere while holding the lock leaves plain numbers: keep going.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, skipped) = &mut *state;
        match last {
            Some(at) if now.saturating_duration_since(*at) < self.every => {
                *skipped += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(skipped))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_next_says_how_many_were_skipped() {
        let t = LogThrottle::new(Duration::from_secs(1));
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(t.admit_at(at(0)), Some(0));
        // A flood within the second: all skipped.
        for ms in 1..1_000 {
            assert_eq!(t.admit_at(at(ms)), None, "{ms} ms");
        }
        assert_eq!(t.admit_at(at(1_000)), Some(999));
        assert_eq!(t.admit_at(at(1_500)), None);
        // A quiet spell: the next event is logged at once, with what was skipped.
        assert_eq!(t.admit_at(at(60_000)), Some(1));
        assert_eq!(t.admit_at(at(61_000)), Some(0));
        // A clock read out of order (another thread's older `now`) is skipped, not a panic.
        assert_eq!(t.admit_at(at(100)), None);
    }
}
