//! The identity cache in front of every key store: short TTL, bounded size, negative
//! entries with a shorter TTL (a flood of random keys costs one lookup per key per
//! `negative_ttl`, not one per request), single-flight coalescing (concurrent misses
//! for one credential make one backend call and all share its result, errors
//! included), and an optional stale grace: while the backend fails, an identity that
//! was valid less than `stale_for` past its TTL is still served.
//!
//! Entries are keyed by the credential's SHA-256; the raw credential is never stored.
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
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(5),
            max_entries: 100_000,
            stale_for: Duration::ZERO,
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
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::NegativeHit => "negative_hit",
            Outcome::Miss => "miss",
            Outcome::Coalesced => "coalesced",
            Outcome::Stale => "stale",
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

struct Inner {
    config: CacheConfig,
    entries: moka::sync::Cache<Digest, Entry>,
    flights: Mutex<HashMap<Digest, Flight>>,
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
                flights: Mutex::new(HashMap::new()),
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
            match flights.get(&digest) {
                Some(f) => (f.clone(), Outcome::Coalesced),
                None => {
                    let f = self.flight(digest, load());
                    flights.insert(digest, f.clone());
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

    fn flight<Fut>(&self, digest: Digest, load: Fut) -> Flight
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
            if let Ok(answer) = &result {
                inner.entries.insert(
                    digest,
                    Entry {
                        answer: answer.clone(),
                        at: Instant::now(),
                    },
                );
            }
            flights.remove(&digest);
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

    /// Forgets everything (tests, and a key file reload that revokes keys).
    pub fn clear(&self) {
        self.inner.entries.invalidate_all();
    }
}

fn not_expired(id: &Identity) -> bool {
    id.expires_at.is_none_or(|t| SystemTime::now() < t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn ident(user: &str) -> Identity {
        Identity {
            user: user.into(),
            ..Default::default()
        }
    }

    fn cache(stale_for: Duration) -> IdentityCache {
        IdentityCache::new(CacheConfig {
            ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(5),
            max_entries: 100,
            stale_for,
        })
    }

    fn counting(
        calls: &Arc<AtomicUsize>,
        answer: Result<Option<&str>, ()>,
        delay: Duration,
    ) -> impl FnOnce() -> BoxFuture<'static, Result<Option<Identity>, StoreError>> {
        let calls = calls.clone();
        let answer = answer.map(|o| o.map(ident));
        move || {
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                answer.map_err(|_| StoreError::backend("test", "down"))
            }
            .boxed()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_misses_make_one_call_and_share_the_answer() {
        let c = cache(Duration::ZERO);
        let calls = Arc::new(AtomicUsize::new(0));
        let d = Digest::of(b"k");
        let waits = (0..100).map(|_| {
            c.get(
                d,
                counting(&calls, Ok(Some("u")), Duration::from_millis(100)),
            )
        });
        let results = futures::future::join_all(waits).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let misses = results.iter().filter(|(_, o)| *o == Outcome::Miss).count();
        let coalesced = results
            .iter()
            .filter(|(_, o)| *o == Outcome::Coalesced)
            .count();
        assert_eq!((misses, coalesced), (1, 99));
        assert!(
            results
                .iter()
                .all(|(r, _)| r.as_ref().unwrap().as_ref().unwrap().user == "u")
        );
        let (_, o) = c.get(d, counting(&calls, Ok(None), Duration::ZERO)).await;
        assert_eq!(o, Outcome::Hit);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn errors_are_shared_but_not_cached() {
        let c = cache(Duration::ZERO);
        let calls = Arc::new(AtomicUsize::new(0));
        let d = Digest::of(b"k");
        let results = futures::future::join_all(
            (0..10).map(|_| c.get(d, counting(&calls, Err(()), Duration::from_millis(10)))),
        )
        .await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(results.iter().all(|(r, _)| r.is_err()));
        let (r, o) = c
            .get(d, counting(&calls, Ok(Some("u")), Duration::ZERO))
            .await;
        assert_eq!((r.unwrap().unwrap().user.as_str(), o), ("u", Outcome::Miss));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn positive_and_negative_ttls_expire() {
        let c = cache(Duration::ZERO);
        let calls = Arc::new(AtomicUsize::new(0));
        let (good, bad) = (Digest::of(b"good"), Digest::of(b"bad"));
        let _ = c
            .get(good, counting(&calls, Ok(Some("u")), Duration::ZERO))
            .await;
        let _ = c.get(bad, counting(&calls, Ok(None), Duration::ZERO)).await;
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(
            c.get(bad, counting(&calls, Ok(None), Duration::ZERO))
                .await
                .1,
            Outcome::NegativeHit
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            c.get(bad, counting(&calls, Ok(None), Duration::ZERO))
                .await
                .1,
            Outcome::Miss
        );
        assert_eq!(
            c.get(good, counting(&calls, Ok(None), Duration::ZERO))
                .await
                .1,
            Outcome::Hit
        );
        tokio::time::advance(Duration::from_secs(25)).await;
        let (r, o) = c
            .get(good, counting(&calls, Ok(None), Duration::ZERO))
            .await;
        assert_eq!(
            o,
            Outcome::Miss,
            "positive TTL over: the revoked key is looked up"
        );
        assert!(r.unwrap().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn stale_grace_serves_past_ttl_only_while_the_backend_fails() {
        let calls = Arc::new(AtomicUsize::new(0));
        let d = Digest::of(b"k");
        let strict = cache(Duration::ZERO);
        let graceful = cache(Duration::from_secs(60));
        for c in [&strict, &graceful] {
            let _ = c
                .get(d, counting(&calls, Ok(Some("u")), Duration::ZERO))
                .await;
        }
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(
            strict
                .get(d, counting(&calls, Err(()), Duration::ZERO))
                .await
                .0
                .is_err(),
            "fail closed"
        );
        let (r, o) = graceful
            .get(d, counting(&calls, Err(()), Duration::ZERO))
            .await;
        assert_eq!(
            (r.unwrap().unwrap().user.as_str(), o),
            ("u", Outcome::Stale)
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(
            graceful
                .get(d, counting(&calls, Err(()), Duration::ZERO))
                .await
                .0
                .is_err(),
            "grace over"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_credential_is_never_served_from_cache() {
        let c = cache(Duration::ZERO);
        let d = Digest::of(b"jwt");
        let gone = Identity {
            user: "u".into(),
            expires_at: Some(SystemTime::now() - Duration::from_secs(1)),
            ..Default::default()
        };
        let calls = Arc::new(AtomicUsize::new(0));
        let calls2 = calls.clone();
        let load = move || {
            calls2.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(Some(gone)))
        };
        let _ = c.get(d, load.clone()).await;
        assert_eq!(c.get(d, load).await.1, Outcome::Miss);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
