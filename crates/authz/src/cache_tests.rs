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
        max_in_flight: 1000,
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

#[tokio::test(start_paused = true)]
async fn a_lookup_that_straddles_a_clear_neither_fills_the_cache_nor_is_joined() {
    let c = cache(Duration::ZERO);
    let d = Digest::of(b"revoked-during-lookup");
    let (release, gate) = tokio::sync::oneshot::channel::<()>();
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let old = tokio::spawn({
        let c = c.clone();
        async move {
            c.get(d, move || async move {
                s.fetch_add(1, Ordering::SeqCst);
                let _ = gate.await;
                // Read before the reload: the key was still listed.
                Ok(Some(ident("before-reload")))
            })
            .await
        }
    });
    while started.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    c.clear(); // the key file reload that revokes the key
    let calls = Arc::new(AtomicUsize::new(0));
    let (r, o) = c.get(d, counting(&calls, Ok(None), Duration::ZERO)).await;
    assert_eq!(
        o,
        Outcome::Miss,
        "a request after the reload starts its own lookup"
    );
    assert!(r.unwrap().is_none());
    release.send(()).unwrap();
    let (r, _) = old.await.unwrap();
    assert_eq!(
        r.unwrap().unwrap().user,
        "before-reload",
        "the request already waiting gets its answer"
    );
    let (r, o) = c.get(d, counting(&calls, Ok(None), Duration::ZERO)).await;
    assert_eq!(
        o,
        Outcome::NegativeHit,
        "the post-reload answer is what is cached"
    );
    assert!(
        r.unwrap().is_none(),
        "the revoked key came back from the old lookup"
    );
    assert_eq!(c.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn lookups_in_flight_are_bounded_and_the_excess_is_refused_at_once() {
    let c = IdentityCache::new(CacheConfig {
        max_in_flight: 10,
        ..CacheConfig::default()
    });
    let calls = Arc::new(AtomicUsize::new(0));
    let gets = (0..50).map(|i| {
        c.get(
            Digest::of(format!("random-{i}").as_bytes()),
            counting(&calls, Ok(None), Duration::from_secs(1)),
        )
    });
    let results = futures::future::join_all(gets).await;
    let count = |o: Outcome| results.iter().filter(|(_, x)| *x == o).count();
    assert_eq!((count(Outcome::Miss), count(Outcome::Shed)), (10, 40));
    assert!(
        results
            .iter()
            .filter(|(_, o)| *o == Outcome::Shed)
            .all(|(r, _)| r.is_err())
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        10,
        "shed requests never reach the store"
    );
    assert_eq!(c.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_random_keys_stays_within_max_entries_and_keeps_keys_in_use() {
    let c = cache(Duration::ZERO); // max_entries 100
    let good = Digest::of(b"in-use");
    let good_loads = Arc::new(AtomicUsize::new(0));
    let flood_loads = Arc::new(AtomicUsize::new(0));
    for i in 0..20_000u32 {
        if i % 50 == 0 {
            let (r, _) = c
                .get(good, counting(&good_loads, Ok(Some("u")), Duration::ZERO))
                .await;
            assert_eq!(r.unwrap().unwrap().user, "u");
        }
        let d = Digest::of(&i.to_be_bytes());
        let _ = c
            .get(d, counting(&flood_loads, Ok(None), Duration::ZERO))
            .await;
    }
    assert_eq!(flood_loads.load(Ordering::SeqCst), 20_000);
    let held = c.entries();
    assert!(held <= 100, "{held} entries held for max_entries 100");
    assert!(
        good_loads.load(Ordering::SeqCst) <= 2,
        "the key in use was evicted by the flood: {} loads",
        good_loads.load(Ordering::SeqCst)
    );
}
