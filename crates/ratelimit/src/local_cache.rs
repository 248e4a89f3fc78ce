//! Local over-limit cache: a counter key known to be over its limit is answered here
//! until quota returns, so a flood from one client costs no store round trips.
//!
//! Exact, not a heuristic: a denied request is counted nowhere (see `store`), and
//! other instances can only add usage, so the key cannot have room before the
//! remembered time. Entries are tied to a table generation: a config change (say, a
//! raised limit) makes them stale at once.
use std::collections::HashMap;
use std::hash::BuildHasher;

use parking_lot::Mutex;

use crate::algorithm::Verdict;
use crate::limit::Window;

const SHARDS: usize = 16;
/// Default bound on remembered keys; past it, new entries are skipped (those keys
/// just go to the store). About 100 bytes each.
pub const DEFAULT_MAX_ENTRIES: usize = SHARDS * 16_384;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    pub window: Window,
    /// Unix ms when `hits` fit again.
    pub until_ms: u64,
    /// Unix ms when the window's current bucket closes (for `RateLimit-Reset`).
    pub reset_at_ms: u64,
    generation: u64,
}

/// What a remembered entry says about its window at `now_ms`.
pub fn cached_verdict(e: &OverLimit, now_ms: u64) -> Verdict {
    let retry_after_ms = e.until_ms.saturating_sub(now_ms);
    Verdict {
        over: true,
        remaining: 0,
        reset_ms: e.reset_at_ms.saturating_sub(now_ms).max(retry_after_ms),
        retry_after_ms,
    }
}

pub struct LocalCache {
    shards: Box<[Mutex<HashMap<String, OverLimit>>]>,
    hasher: std::collections::hash_map::RandomState,
    per_shard: usize,
}

impl Default for LocalCache {
    fn default() -> Self {
        Self::with_max_entries(DEFAULT_MAX_ENTRIES)
    }
}

impl LocalCache {
    pub fn with_max_entries(max: usize) -> Self {
        LocalCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
            per_shard: max.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<String, OverLimit>> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    /// The entry for `key` if it is still over at `now_ms` under `generation`.
    pub fn get(&self, key: &str, now_ms: u64, generation: u64) -> Option<OverLimit> {
        let mut shard = self.shard(key).lock();
        match shard.get(key) {
            Some(e) if e.until_ms > now_ms && e.generation == generation => Some(*e),
            Some(_) => {
                shard.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(
        &self,
        key: &str,
        window: Window,
        until_ms: u64,
        reset_at_ms: u64,
        now_ms: u64,
        generation: u64,
    ) {
        let mut shard = self.shard(key).lock();
        if shard.len() >= self.per_shard && !shard.contains_key(key) {
            shard.retain(|_, e| e.until_ms > now_ms && e.generation == generation);
            if shard.len() >= self.per_shard {
                return;
            }
        }
        shard.insert(
            key.to_string(),
            OverLimit {
                window,
                until_ms,
                reset_at_ms,
                generation,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::Algorithm;

    const W: Window = Window {
        requests: 1,
        per_ms: 1000,
        algorithm: Algorithm::Fixed,
    };

    #[test]
    fn answers_until_the_remembered_time_and_generation() {
        let c = LocalCache::default();
        c.insert("k", W, 1000, 1000, 10, 1);
        assert!(c.get("k", 999, 1).is_some());
        assert!(
            c.get("k", 999, 2).is_none(),
            "a new config generation forgets it"
        );
        c.insert("k", W, 1000, 1000, 10, 1);
        assert!(c.get("k", 1000, 1).is_none(), "quota is back at until_ms");
        assert!(c.is_empty());
    }
}
