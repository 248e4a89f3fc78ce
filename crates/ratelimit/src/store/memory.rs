//! The embedded store: counters in `SHARDS` mutex-protected tables chosen by key hash,
//! so concurrent requests for different keys rarely share a lock. A request's shards
//! are locked in ascending order (no deadlock) for the atomic decision.
//!
//! Bounded: at most `max_keys` counters. A new key arriving at a full shard evicts one
//! of a few sampled counters: an expired one if sampled, else the one with the least
//! usage (so a flood of fresh keys mostly evicts other fresh keys, not the counters
//! that are close to their limits). Every eviction is counted in
//! `portcullis_ratelimit_memory_evictions_total`: an evicted counter restarts at zero,
//! so a rising rate means the cap is too small for the traffic.
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use prometheus::IntCounter;

use super::{Check, Counting, Store, StoreError, StoreReply, admits};
use crate::algorithm::{self, Counts};
use crate::clock::Clock;

const SHARDS: usize = 64;
/// Default cap on counters (each costs roughly 150 bytes: about 75 MB when full).
pub const DEFAULT_MAX_KEYS: usize = 500_000;
/// Counters looked at to choose one to evict.
const EVICTION_SAMPLE: usize = 5;

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

    /// No longer influences any decision.
    fn expired(&self, now_ms: u64) -> bool {
        algorithm::bucket(now_ms, self.per_ms).0 > self.bucket + 1
    }
}

/// One shard: slots in a vector (so a random one can be sampled) indexed by key.
#[derive(Default)]
struct Shard {
    slots: Vec<(Arc<str>, Slot)>,
    index: HashMap<Arc<str>, usize>,
}

impl Shard {
    fn get(&self, key: &str) -> Option<&Slot> {
        self.index.get(key).map(|&i| &self.slots[i].1)
    }

    fn remove_at(&mut self, i: usize) {
        let (key, _) = self.slots.swap_remove(i);
        self.index.remove(&key);
        if let Some((moved, _)) = self.slots.get(i) {
            self.index.insert(moved.clone(), i);
        }
    }

    /// Sets `key`; evicts one sampled slot first when a new key finds the shard full.
    fn set(&mut self, key: &str, slot: Slot, cap: usize, now_ms: u64) -> bool {
        if let Some(&i) = self.index.get(key) {
            self.slots[i].1 = slot;
            return false;
        }
        let evicted = self.slots.len() >= cap && !self.slots.is_empty();
        if evicted {
            let victim = (0..EVICTION_SAMPLE)
                .map(|_| fastrand::usize(..self.slots.len()))
                .min_by_key(|&i| {
                    let s = &self.slots[i].1;
                    if s.expired(now_ms) {
                        (0, 0)
                    } else {
                        let c = s.counts_at(algorithm::bucket(now_ms, s.per_ms).0);
                        (1, c.prev + c.curr)
                    }
                })
                .unwrap_or(0);
            self.remove_at(victim);
        }
        let key: Arc<str> = Arc::from(key);
        self.index.insert(key.clone(), self.slots.len());
        self.slots.push((key, slot));
        evicted
    }
}

pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    hasher: std::collections::hash_map::RandomState,
    per_shard: usize,
    evictions: IntCounter,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_max_keys(
            DEFAULT_MAX_KEYS,
            IntCounter::new("evictions", "unregistered").expect("valid metric"),
        )
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `max_keys` counters (rounded up to a multiple of the shard count);
    /// evictions are counted in `evictions`.
    pub fn with_max_keys(max_keys: usize, evictions: IntCounter) -> Self {
        MemoryStore {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: Default::default(),
            per_shard: max_keys.div_ceil(SHARDS).max(1),
            evictions,
        }
    }

    fn shard_of(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) % self.shards.len()
    }

    /// Synchronous core of [`Store::check_and_count`].
    pub fn check_and_count_sync(
        &self,
        now_ms: u64,
        checks: &[Check],
        counting: Counting,
    ) -> StoreReply {
        if let [check] = checks {
            return self.check_one(now_ms, check, counting);
        }
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
        let mut over = Vec::with_capacity(checks.len());
        for (check, &pos) in checks.iter().zip(&positions) {
            let (bucket, _) = algorithm::bucket(now_ms, check.window.per_ms);
            let c = guards[pos]
                .get(&check.key)
                .map(|s| s.counts_at(bucket))
                .unwrap_or_default();
            over.push(!algorithm::fits(&check.window, c, now_ms, check.hits));
            counts.push(c);
        }
        let admitted = admits(checks, &over);
        let count = admitted || counting == Counting::All;
        if count {
            for ((check, &pos), c) in checks.iter().zip(&positions).zip(&counts) {
                let (bucket, _) = algorithm::bucket(now_ms, check.window.per_ms);
                let slot = Slot {
                    per_ms: check.window.per_ms,
                    bucket,
                    prev: c.prev,
                    curr: c.curr + check.hits as u64,
                };
                if guards[pos].set(&check.key, slot, self.per_shard, now_ms) {
                    self.evictions.inc();
                }
            }
        }
        StoreReply {
            counted: vec![count; checks.len()],
            counts,
        }
    }

    /// The common case, one window: one lock and none of the bookkeeping vectors that
    /// ordering several shard locks needs (same decision as the general path).
    fn check_one(&self, now_ms: u64, check: &Check, counting: Counting) -> StoreReply {
        let mut shard = self.shards[self.shard_of(&check.key)].lock();
        let (bucket, _) = algorithm::bucket(now_ms, check.window.per_ms);
        let c = shard
            .get(&check.key)
            .map(|s| s.counts_at(bucket))
            .unwrap_or_default();
        let over = !algorithm::fits(&check.window, c, now_ms, check.hits);
        let count = admits(std::slice::from_ref(check), &[over]) || counting == Counting::All;
        if count {
            let slot = Slot {
                per_ms: check.window.per_ms,
                bucket,
                prev: c.prev,
                curr: c.curr + check.hits as u64,
            };
            if shard.set(&check.key, slot, self.per_shard, now_ms) {
                self.evictions.inc();
            }
        }
        StoreReply {
            counted: vec![count],
            counts: vec![c],
        }
    }

    /// Drops counters that no longer influence any decision (two buckets old).
    pub fn sweep(&self, now_ms: u64) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let mut i = 0;
            while i < shard.slots.len() {
                if shard.slots[i].1.expired(now_ms) {
                    shard.remove_at(i);
                    removed += 1;
                } else {
                    i += 1;
                }
            }
        }
        removed
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().slots.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sweeps every `every` until the store is dropped; `on_sweep` gets the key count.
    pub fn spawn_sweeper(
        self: &Arc<Self>,
        clock: Arc<dyn Clock>,
        every: Duration,
        on_sweep: impl Fn(usize) + Send + 'static,
    ) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(store) = weak.upgrade() else { return };
                let removed = store.sweep(clock.now_ms());
                on_sweep(store.len());
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
        checks: &[Check],
        counting: Counting,
    ) -> Result<StoreReply, StoreError> {
        Ok(self.check_and_count_sync(now_ms, checks, counting))
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
