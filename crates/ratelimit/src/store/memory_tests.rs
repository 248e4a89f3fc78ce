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
        hits: 1,
        enforce: true,
        quota_group: 0,
    }
}

fn counter() -> IntCounter {
    IntCounter::new("evictions", "test").unwrap()
}

#[test]
fn refused_requests_count_nowhere() {
    let s = MemoryStore::new();
    let small = check("a", 1, 1000);
    let big = check("b", 100, 1000);
    let both = [small.clone(), big.clone()];
    assert!(
        s.check_and_count_sync(0, &both, Counting::Admitted)
            .admitted()
    );
    let r = s.check_and_count_sync(1, &both, Counting::Admitted);
    assert!(!r.admitted());
    // "b" saw the second request but did not count it.
    let r = s.check_and_count_sync(2, &[big], Counting::Admitted);
    assert_eq!(r.counts[0].curr, 1);
}

#[test]
fn counting_all_adds_refused_requests_too_like_envoyproxy() {
    let s = MemoryStore::new();
    let small = check("a", 1, 1000);
    let big = check("b", 100, 1000);
    let both = [small.clone(), big.clone()];
    for t in 0..3 {
        s.check_and_count_sync(t, &both, Counting::All);
    }
    let r = s.check_and_count_sync(3, &[small, big], Counting::Admitted);
    assert_eq!((r.counts[0].curr, r.counts[1].curr), (3, 3));
}

#[test]
fn hits_are_per_check_and_zero_only_checks() {
    let s = MemoryStore::new();
    let mut a = check("a", 10, 1000);
    a.hits = 4;
    s.check_and_count_sync(0, std::slice::from_ref(&a), Counting::Admitted);
    a.hits = 0;
    let r = s.check_and_count_sync(1, std::slice::from_ref(&a), Counting::Admitted);
    assert_eq!(r.counts[0].curr, 4);
    let r = s.check_and_count_sync(2, &[a], Counting::Admitted);
    assert_eq!(r.counts[0].curr, 4, "hits 0 adds nothing");
}

#[test]
fn sweep_drops_old_buckets_only() {
    let s = MemoryStore::new();
    s.check_and_count_sync(0, &[check("a", 5, 1000)], Counting::Admitted);
    s.check_and_count_sync(0, &[check("b", 5, 60_000)], Counting::Admitted);
    assert_eq!(s.sweep(1500), 0, "a's bucket is still the previous bucket");
    assert_eq!(s.sweep(2000), 1);
    assert_eq!(s.len(), 1);
}

#[test]
fn a_flood_of_distinct_keys_stays_within_the_cap_and_is_counted() {
    let evictions = counter();
    let s = MemoryStore::with_max_keys(6400, evictions.clone());
    // A key close to its limit, then 100,000 one-off keys (an attacker cycling values).
    let victim = check("victim", 10, 3_600_000);
    for t in 0..9 {
        s.check_and_count_sync(t, std::slice::from_ref(&victim), Counting::Admitted);
    }
    for i in 0..100_000u64 {
        s.check_and_count_sync(
            10 + i,
            &[check(&format!("flood-{i}"), 10, 3_600_000)],
            Counting::Admitted,
        );
    }
    assert!(s.len() <= 6400, "{} keys", s.len());
    assert!(evictions.get() >= 100_000 - 6400, "{}", evictions.get());
    // Evictions prefer the least used of a sample: the busy victim survives a flood of
    // counters at 1: it goes only when all 5 samples of 100 per shard are it (1e-10).
    let r = s.check_and_count_sync(200_000, &[victim], Counting::Admitted);
    assert_eq!(r.counts[0].curr, 9, "the victim's counter was kept");
}

#[test]
fn eviction_prefers_expired_counters() {
    let evictions = counter();
    let s = MemoryStore::with_max_keys(64, evictions.clone());
    // Fill every shard with short-window counters, then let them expire.
    for i in 0..2000 {
        s.check_and_count_sync(
            0,
            &[check(&format!("old-{i}"), 5, 1000)],
            Counting::Admitted,
        );
    }
    assert!(s.len() <= 64);
    let live = check("live", 100, 3_600_000);
    for _ in 0..50 {
        s.check_and_count_sync(10_000, std::slice::from_ref(&live), Counting::Admitted);
    }
    let r = s.check_and_count_sync(10_001, &[live], Counting::Admitted);
    assert_eq!(r.counts[0].curr, 50);
}

#[test]
fn huge_keys_are_stored_and_decided_like_small_ones() {
    let s = MemoryStore::new();
    let big = check(&"k".repeat(1 << 20), 2, 1000);
    for _ in 0..2 {
        assert!(
            s.check_and_count_sync(0, std::slice::from_ref(&big), Counting::Admitted)
                .admitted()
        );
    }
    assert!(
        !s.check_and_count_sync(0, &[big], Counting::Admitted)
            .admitted()
    );
}
