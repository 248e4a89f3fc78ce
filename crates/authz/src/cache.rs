//! The identity cache in front of every key store: short TTL, bounded size, negative
//! entries with a shorter TTL (a flood of random keys costs one lookup per key per
//! `negative_ttl`, not one per request), single-flight coalescing (concurrent misses
//! for one credential make one backend call and all share its result, errors
//! included), and an optional stale grace: while the backend fails, an identity that
//! was valid less than `stale_for` past its TTL is still served.
//!
//! Entries are keyed by the credential's SHA-256; the raw credential is never stored.
//!
//! Bounded: at most `max_entries` answers (moka, TinyLFU admission, so a flood of
//! one-off keys does not push out keys in use) and at most `max_in_flight` distinct
//! lookups at once; past that a new lookup fails at once (503) rather than queueing.
//!
//! [`IdentityCache::clear`] (a key file reload) starts a new generation: a lookup that
//! began before it neither fills the cache when it ends nor is joined by later
//! requests, so a revoked key cannot come back through an answer read before the
//! reload.
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::identity::{Digest, Identity};
use crate::store::StoreError;

#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    pub ttl: Duration,
    pub negative_ttl: Duration,
    pub max_entries: u64,
    /// Zero: fail closed as soon as the backend fails and the entry is past its TTL.
    pub stale_for: Duration,
    /// Distinct lookups running at once (each waits on the key store).
    pub max_in_flight: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(5),
            max_entries: 100_000,
            stale_for: Duration::ZERO,
            max_in_flight: 10_000,
        }
    }
}

/// How an answer was obtained (the `portcullis_authz_cache_total` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    NegativeHit,
    /// This request made the backend call.
    Miss,
    /// This request waited on another request's backend call.
    Coalesced,
    /// The backend failed; an identity past its TTL but within the grace was served.
    Stale,
    /// Too many lookups in flight: refused without calling the backend.
    Shed,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::NegativeHit => "negative_hit",
            Outcome::Miss => "miss",
            Outcome::Coalesced => "coalesced",
            Outcome::Stale => "stale",
            Outcome::Shed => "shed",
        }
    }
}

pub type Answer = Option<Arc<Identity>>;
pub type SharedError = Arc<StoreError>;
type Flight = Shared<BoxFuture<'static, Result<Answer, SharedError>>>;

#[derive(Clone)]
struct Entry {
    answer: Answer,
    at: Instant,
}

/// Lookups in progress, by digest, and the generation they were started in.
#[derive(Default)]
struct Flights {
    generation: u64,
    running: HashMap<Digest, (u64, Flight)>,
}

struct Inner {
    config: CacheConfig,
    entries: moka::sync::Cache<Digest, Entry>,
    flights: Mutex<Flights>,
}

#[derive(Clone)]
pub struct IdentityCache {
    inner: Arc<Inner>,
}

impl IdentityCache {
    pub fn new(config: CacheConfig) -> IdentityCache {
        // moka only bounds memory: freshness is decided here, so that a stale entry is
        // still there to serve during the grace.
        let keep = config.ttl.max(config.negative_ttl) + config.stale_for;
        IdentityCache {
            inner: Arc::new(Inner {
                config,
                entries: moka::sync::Cache::builder()
                    .max_capacity(config.max_entries)
                    .time_to_live(keep)
                    .build(),
                flights: Mutex::new(Flights::default()),
            }),
        }
    }

    /// Entries held, after settling moka's pending bookkeeping.
    pub fn entries(&self) -> u64 {
        self.inner.entries.run_pending_tasks();
        self.inner.entries.entry_count()
    }

    /// The identity for `digest`: from the cache, or from `load` (called at most once
    /// across concurrent callers for the same digest).
    pub async fn get<F, Fut>(
        &self,
        digest: Digest,
        load: F,
    ) -> (Result<Answer, SharedError>, Outcome)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<Identity>, StoreError>> + Send + 'static,
    {
        let inner = &self.inner;
        let (flight, outcome) = {
            let mut flights = inner.flights.lock();
            // Checked under the lock: a flight finishing between a check outside it and
            // taking it would otherwise let this caller start a second lookup.
            if let Some(e) = inner.entries.get(&digest)
                && self.fresh(&e)
            {
                let o = if e.answer.is_some() {
                    Outcome::Hit
                } else {
                    Outcome::NegativeHit
                };
                return (Ok(e.answer), o);
            }
            match flights.running.get(&digest) {
                Some((_, f)) => (f.clone(), Outcome::Coalesced),
                None if flights.running.len() >= inner.config.max_in_flight => {
                    return (
                        Err(Arc::new(StoreError::backend(
                            "identity cache",
                            format!(
                                "{} lookups already in flight; refusing more",
                                flights.running.len()
                            ),
                        ))),
                        Outcome::Shed,
                    );
                }
                None => {
                    let generation = flights.generation;
                    let f = self.flight(digest, generation, load());
                    flights.running.insert(digest, (generation, f.clone()));
                    (f, Outcome::Miss)
                }
            }
        };
        match flight.await {
            Ok(answer) => (Ok(answer), outcome),
            Err(e) => match self.stale(&digest) {
                Some(id) => (Ok(Some(id)), Outcome::Stale),
                None => (Err(e), outcome),
            },
        }
    }

    fn flight<Fut>(&self, digest: Digest, generation: u64, load: Fut) -> Flight
    where
        Fut: Future<Output = Result<Option<Identity>, StoreError>> + Send + 'static,
    {
        let inner = self.inner.clone();
        // Spawned, so the lookup finishes and fills the cache even if every request
        // waiting on it is cancelled (Envoy's ext_authz timeout, say).
        let task = tokio::spawn(load);
        async move {
            let result = match task.await {
                Ok(r) => r.map(|a| a.map(Arc::new)).map_err(Arc::new),
                Err(e) => Err(Arc::new(StoreError::backend("lookup task", e))),
            };
            let mut flights = inner.flights.lock();
            // A clear() since this lookup started: its answer may predate a revocation.
            if flights.generation == generation {
                if let Ok(answer) = &result {
                    inner.entries.insert(
                        digest,
                        Entry {
                            answer: answer.clone(),
                            at: Instant::now(),
                        },
                    );
                }
                flights.running.remove(&digest);
            }
            result
        }
        .boxed()
        .shared()
    }

    fn fresh(&self, e: &Entry) -> bool {
        let c = &self.inner.config;
        match &e.answer {
            None => e.at.elapsed() < c.negative_ttl,
            Some(id) => e.at.elapsed() < c.ttl && not_expired(id),
        }
    }

    fn stale(&self, digest: &Digest) -> Option<Arc<Identity>> {
        let c = &self.inner.config;
        let e = self.inner.entries.get(digest)?;
        let id = e.answer?;
        (e.at.elapsed() < c.ttl + c.stale_for && not_expired(&id)).then_some(id)
    }

    /// Forgets everything (tests, and a key file reload that revokes keys), including
    /// lookups still running: their answers go to the requests already waiting on them
    /// and nowhere else.
    pub fn clear(&self) {
        let mut flights = self.inner.flights.lock();
        flights.generation += 1;
        flights.running.clear();
        self.inner.entries.invalidate_all();
    }

    /// Distinct lookups running now.
    pub fn in_flight(&self) -> usize {
        self.inner.flights.lock().running.len()
    }
}

fn not_expired(id: &Identity) -> bool {
    id.expires_at.is_none_or(|t| SystemTime::now() < t)
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
