//! The embedded store: counters in `SHARDS` mutex-protected hash maps chosen by key
//! hash, so concurrent requests for different keys rarely share a lock. A request's
//! shards are locked in ascending order (no deadlock) for the atomic decision.
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};

use super::{Check, Store, StoreError, StoreReply};
use crate::algorithm::{self, Counts};
use crate::clock::Clock;

const SHARDS: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Slot {
    per_ms: u64,
    bucket: u64,
    prev: u64,
    curr: u64,
}

impl Slot {
    /// Counts as seen from bucket `now`: buckets roll forward lazily.
    fn counts_at(&self, now: u64) -> Counts {
        if now == self.bucket {
            Counts {
                prev: self.prev,
                curr: self.curr,
            }
        } else if now == self.bucket + 1 {
            Counts {
                prev: self.curr,
                curr: 0,
            }
        } else {
            Counts::default()
        }
    }
}

type Shard = HashMap<String, Slot>;

pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::new())).collect(),
            hasher: Default::default(),
        }
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn shard_of(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) % self.shards.len()
    }

    /// Synchronous core of [`Store::check_and_count`].
    pub fn check_and_count_sync(&self, now_ms: u64, hits: u32, checks: &[Check]) -> StoreReply {
        let shard_ids: Vec<usize> = checks.iter().map(|c| self.shard_of(&c.key)).collect();
        let mut order = shard_ids.clone();
        order.sort_unstable();
        order.dedup();
        let mut guards: Vec<MutexGuard<'_, Shard>> =
            order.iter().map(|&i| self.shards[i].lock()).collect();
        // Index into `guards` of each check's shard (`order` is sorted, so search it).
        let positions: Vec<usize> = shard_ids
            .iter()
            .map(|i| order.binary_search(i).unwrap_or(0))
            .collect();

        let mut counts = Vec::with_capacity(checks.len());
        let mut admitted = true;
        for (check, &pos) in checks.iter().zip(&positions) {
            let (bucket, _) = algorithm::bucket(now_ms, check.window.per_ms);
            let c = guards[pos]
                .get(&check.key)
                .map(|s| s.counts_at(bucket))
                .unwrap_or_default();
            if check.enforce && !algorithm::fits(&check.window, c, now_ms, hits) {
                admitted = false;
            }
            counts.push(c);
        }
        if admitted {
            for ((check, &pos), c) in checks.iter().zip(&positions).zip(&counts) {
                let (bucket, _) = algorithm::bucket(now_ms, check.window.per_ms);
                guards[pos].insert(
                    check.key.clone(),
                    Slot {
                        per_ms: check.window.per_ms,
                        bucket,
                        prev: c.prev,
                        curr: c.curr + hits as u64,
                    },
                );
            }
        }
        StoreReply {
            counted: vec![admitted; checks.len()],
            counts,
        }
    }

    /// Drops counters that no longer influence any decision (two buckets old).
    pub fn sweep(&self, now_ms: u64) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let before = shard.len();
            shard.retain(|_, s| algorithm::bucket(now_ms, s.per_ms).0 <= s.bucket + 1);
            removed += before - shard.len();
        }
        removed
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sweeps every `every` until the store is dropped.
    pub fn spawn_sweeper(self: &Arc<Self>, clock: Arc<dyn Clock>, every: Duration) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(store) = weak.upgrade() else { return };
                let removed = store.sweep(clock.now_ms());
                tracing::trace!(removed, "swept expired counters");
            }
        });
    }
}

#[tonic::async_trait]
impl Store for MemoryStore {
    async fn check_and_count(
        &self,
        now_ms: u64,
        hits: u32,
        checks: &[Check],
    ) -> Result<StoreReply, StoreError> {
        Ok(self.check_and_count_sync(now_ms, hits, checks))
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::{Algorithm, Window};

    fn check(key: &str, requests: u32, per_ms: u64) -> Check {
        Check {
            key: key.into(),
            window: Window {
                requests,
                per_ms,
                algorithm: Algorithm::Fixed,
            },
            enforce: true,
        }
    }

    #[test]
    fn denied_requests_count_nowhere() {
        let s = MemoryStore::new();
        let small = check("a", 1, 1000);
        let big = check("b", 100, 1000);
        assert!(
            s.check_and_count_sync(0, 1, &[small.clone(), big.clone()])
                .admitted()
        );
        let r = s.check_and_count_sync(1, 1, &[small, big.clone()]);
        assert!(!r.admitted());
        // "b" saw the second request but did not count it.
        let r = s.check_and_count_sync(2, 1, &[big]);
        assert_eq!(r.counts[0].curr, 1);
    }

    #[test]
    fn sweep_drops_old_buckets_only() {
        let s = MemoryStore::new();
        s.check_and_count_sync(0, 1, &[check("a", 5, 1000)]);
        s.check_and_count_sync(0, 1, &[check("b", 5, 60_000)]);
        assert_eq!(s.sweep(1500), 0, "a's bucket is still the previous bucket");
        assert_eq!(s.sweep(2000), 1);
        assert_eq!(s.len(), 1);
    }
}
