use std::sync::atomic::{AtomicUsize, Ordering};

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor::Entry,
};

use super::*;
use crate::clock::ManualClock;
use crate::file_limits::{ConfigFile, FileLimits, LoadOptions};
use crate::limit::{Algorithm, Defaults};
use crate::pb;
use crate::portcullis_config::{DOMAIN, LIMIT_KEY};
use crate::store::{Check, StoreError, StoreReply};
use crate::table::{Limits, apply_rate_limit_configs};

pub(super) const T0: u64 = 1_699_999_980_000; // a whole minute: bucket edges line up with T0

pub(super) fn mk_config(
    name: &str,
    windows: &[(u32, u64)],
    algorithm: pb::Algorithm,
) -> pb::RateLimitConfig {
    pb::RateLimitConfig {
        name: name.into(),
        by: vec!["user".into()],
        windows: windows
            .iter()
            .map(|&(requests, ms)| pb::Window {
                requests,
                per: Some(prost_types::Duration {
                    seconds: (ms / 1000) as i64,
                    nanos: 0,
                }),
            })
            .collect(),
        algorithm: algorithm as i32,
        ..Default::default()
    }
}

pub(super) fn mk_limiter(
    configs: &[pb::RateLimitConfig],
    clock: Arc<ManualClock>,
    store: Arc<dyn Store>,
) -> Limiter {
    let table = Arc::new(LimitTable::default());
    apply_rate_limit_configs(&table, configs, "v1", Defaults::default()).unwrap();
    Limiter::builder(table).clock(clock).store(store).build()
}

pub(super) fn descriptor(entries: &[(&str, &str)]) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(k, v)| Entry {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect(),
        ..Default::default()
    }
}

pub(super) fn mk_req(domain: &str, descriptors: &[&[(&str, &str)]]) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.into(),
        descriptors: descriptors.iter().map(|d| descriptor(d)).collect(),
        hits_addend: 0,
    }
}

pub(super) fn user_req(limit: &str, user: &str) -> RateLimitRequest {
    mk_req(DOMAIN, &[&[(LIMIT_KEY, limit), ("user", user)]])
}

pub(super) fn ok(r: &RateLimitResponse) -> bool {
    r.overall_code == Code::Ok as i32
}

pub(super) fn header<'a>(r: &'a RateLimitResponse, name: &str) -> Option<&'a str> {
    r.response_headers_to_add
        .iter()
        .find(|h| h.key == name)
        .map(|h| h.value.as_str())
}

pub(super) async fn admitted(l: &Limiter, req: &RateLimitRequest, n: usize) -> usize {
    let mut ok_count = 0;
    for _ in 0..n {
        if ok(&l.should_rate_limit(req).await) {
            ok_count += 1;
        }
    }
    ok_count
}

pub(super) fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

#[tokio::test]
async fn sliding_window_refuses_a_double_burst_straddling_a_boundary() {
    let clock = Arc::new(ManualClock::new(T0 + 900));
    let l = mk_limiter(
        &[mk_config("a", &[(10, 1000)], pb::Algorithm::Sliding)],
        clock.clone(),
        memory(),
    );
    let req = user_req("a", "u");
    assert_eq!(
        admitted(&l, &req, 10).await,
        10,
        "the first burst, late in the window"
    );
    clock.set_ms(T0 + 1100);
    let second = admitted(&l, &req, 10).await;
    // 90% of the previous bucket still counts: 10·0.9 = 9 → room for 1.
    assert_eq!(second, 1, "only what slid out of the window is admitted");
}

#[tokio::test]
async fn fixed_window_admits_the_double_burst_for_compatibility() {
    let clock = Arc::new(ManualClock::new(T0 + 900));
    let l = mk_limiter(
        &[mk_config("a", &[(10, 1000)], pb::Algorithm::Fixed)],
        clock.clone(),
        memory(),
    );
    let req = user_req("a", "u");
    assert_eq!(admitted(&l, &req, 10).await, 10);
    clock.set_ms(T0 + 1100);
    // 20 requests within 200 ms: the documented weakness of fixed windows.
    assert_eq!(admitted(&l, &req, 10).await, 10);
}

#[tokio::test]
async fn burst_and_sustained_windows_are_both_enforced() {
    let clock = Arc::new(ManualClock::new(T0));
    let l = mk_limiter(
        &[mk_config(
            "a",
            &[(5, 1000), (20, 60_000)],
            pb::Algorithm::Sliding,
        )],
        clock.clone(),
        memory(),
    );
    let req = user_req("a", "u");
    let mut total = 0;
    for s in 0..10u64 {
        clock.set_ms(T0 + s * 1000 + 500);
        let n = admitted(&l, &req, 10).await;
        assert!(n <= 5, "second {s}: {n} admitted, burst limit is 5");
        total += n;
    }
    assert_eq!(total, 20, "the per-minute limit caps the sum");
    let r = l.should_rate_limit(&req).await;
    assert!(!ok(&r));
    assert_eq!(
        header(&r, "RateLimit-Limit"),
        Some("20"),
        "the minute window is the binding one"
    );
    let retry: u64 = header(&r, "Retry-After").unwrap().parse().unwrap();
    assert!(
        retry >= 50,
        "quota returns with the next minute, got {retry}s"
    );
}

#[tokio::test]
async fn over_limit_carries_retry_after_and_statuses() {
    let clock = Arc::new(ManualClock::new(T0 + 250));
    let l = mk_limiter(
        &[mk_config("ns/r/a", &[(2, 1000)], pb::Algorithm::Fixed)],
        clock.clone(),
        memory(),
    );
    let req = user_req("ns/r/a", "u");
    let r = l.should_rate_limit(&req).await;
    assert!(ok(&r));
    assert_eq!(header(&r, "RateLimit-Limit"), Some("2"));
    assert_eq!(header(&r, "RateLimit-Remaining"), Some("1"));
    assert_eq!(header(&r, "RateLimit-Reset"), Some("1"));
    assert_eq!(header(&r, "Retry-After"), None);
    l.should_rate_limit(&req).await;
    let r = l.should_rate_limit(&req).await;
    assert!(!ok(&r));
    assert_eq!(header(&r, "Retry-After"), Some("1"));
    assert_eq!(header(&r, "RateLimit-Remaining"), Some("0"));
    let s = &r.statuses[0];
    assert_eq!(s.code, Code::OverLimit as i32);
    assert_eq!(s.current_limit.as_ref().unwrap().requests_per_unit, 2);
    assert_eq!(s.limit_remaining, 0);
    assert_eq!(s.duration_until_reset.as_ref().unwrap().nanos, 750_000_000);
}

/// Counts the calls that reach the store.
struct CountingStore(MemoryStore, AtomicUsize);

#[tonic::async_trait]
impl Store for CountingStore {
    async fn check_and_count(
        &self,
        now: u64,
        checks: &[Check],
        counting: Counting,
    ) -> Result<StoreReply, StoreError> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.check_and_count(now, checks, counting).await
    }
    fn name(&self) -> &'static str {
        "counting"
    }
}

#[tokio::test]
async fn a_key_known_over_is_answered_locally_until_its_quota_returns() {
    let clock = Arc::new(ManualClock::new(T0));
    let store = Arc::new(CountingStore(MemoryStore::new(), AtomicUsize::new(0)));
    let l = mk_limiter(
        &[mk_config("a", &[(3, 1000)], pb::Algorithm::Fixed)],
        clock.clone(),
        store.clone(),
    );
    let req = user_req("a", "u");
    assert_eq!(admitted(&l, &req, 4).await, 3);
    assert_eq!(store.1.load(Ordering::SeqCst), 4);
    let r = l.should_rate_limit(&req).await;
    assert!(!ok(&r));
    assert_eq!(header(&r, "Retry-After"), Some("1"));
    assert_eq!(admitted(&l, &req, 100).await, 0);
    assert_eq!(
        store.1.load(Ordering::SeqCst),
        4,
        "the flood cost no store calls"
    );
    assert_eq!(
        l.metrics().local_cache_hits.with_label_values(&["a"]).get(),
        101
    );
    // Another key is unaffected, and goes to the store.
    assert!(ok(&l.should_rate_limit(&user_req("a", "v")).await));
    assert_eq!(store.1.load(Ordering::SeqCst), 5);
    clock.set_ms(T0 + 1000);
    assert!(
        ok(&l.should_rate_limit(&req).await),
        "quota is back at the reset"
    );
}

#[tokio::test]
async fn shadow_limits_count_and_report_but_never_block() {
    let clock = Arc::new(ManualClock::new(T0));
    let mut c = mk_config("a", &[(2, 1000)], pb::Algorithm::Sliding);
    c.shadow = true;
    let l = mk_limiter(&[c], clock, memory());
    let req = user_req("a", "u");
    assert_eq!(admitted(&l, &req, 10).await, 10);
    let r = l.should_rate_limit(&req).await;
    assert!(ok(&r));
    assert_eq!(r.statuses[0].code, Code::Ok as i32);
    assert_eq!(
        l.metrics()
            .decisions
            .with_label_values(&["a", "shadow_over_limit"])
            .get(),
        9
    );
}

#[tokio::test]
async fn a_denied_request_is_not_counted_against_the_other_limits() {
    // The office: a per-user limit denies one user's flood without using up the
    // shared per-IP quota.
    let clock = Arc::new(ManualClock::new(T0));
    let user = mk_config("user", &[(5, 60_000)], pb::Algorithm::Sliding);
    let mut ip = mk_config("ip", &[(20, 60_000)], pb::Algorithm::Sliding);
    ip.by = vec!["clientIP".into()];
    let l = mk_limiter(&[user, ip], clock, memory());
    let req = |u: &str| {
        mk_req(
            DOMAIN,
            &[
                &[(LIMIT_KEY, "user"), ("user", u)],
                &[(LIMIT_KEY, "ip"), ("clientIP", "10.0.0.1")],
            ],
        )
    };
    assert_eq!(admitted(&l, &req("flooder"), 100).await, 5);
    for u in 0..3 {
        assert_eq!(
            admitted(&l, &req(&format!("u{u}")), 5).await,
            5,
            "user u{u}"
        );
    }
}

struct Failing(Option<Duration>);

#[tonic::async_trait]
impl Store for Failing {
    async fn check_and_count(
        &self,
        _: u64,
        _: &[Check],
        _: Counting,
    ) -> Result<StoreReply, StoreError> {
        match self.0 {
            Some(d) => {
                tokio::time::sleep(d).await;
                Ok(StoreReply::default())
            }
            None => Err(StoreError::NotConnected),
        }
    }
    fn name(&self) -> &'static str {
        "failing"
    }
}

#[tokio::test]
async fn store_failures_follow_each_limits_policy_within_the_timeout() {
    for store in [Failing(None), Failing(Some(Duration::from_secs(5)))] {
        let clock = Arc::new(ManualClock::new(T0));
        let open = mk_config("open", &[(5, 1000)], pb::Algorithm::Sliding);
        let mut closed = mk_config("closed", &[(5, 1000)], pb::Algorithm::Sliding);
        closed.on_store_failure = pb::FailurePolicy::Deny as i32;
        let l = mk_limiter(&[open, closed], clock, Arc::new(store));
        let started = Instant::now();
        assert!(ok(&l.should_rate_limit(&user_req("open", "u")).await));
        let r = l.should_rate_limit(&user_req("closed", "u")).await;
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "bounded by the store timeout"
        );
        assert!(!ok(&r));
        assert_eq!(header(&r, "Retry-After"), Some("1"));
        assert_eq!(
            l.metrics()
                .decisions
                .with_label_values(&["closed", "store_failure_denied"])
                .get(),
            1
        );
        assert_eq!(
            l.metrics()
                .decisions
                .with_label_values(&["open", "store_failure_allowed"])
                .get(),
            1
        );
    }
}

/// An outage at full rate: every failure is counted, one line is logged (not one per
/// decision), and the next line, a second later, says how many went unlogged. On
/// paused time, so a slow machine cannot spread the calls over two seconds.
#[tokio::test(start_paused = true)]
async fn a_store_outage_is_counted_per_call_and_logged_once_a_second() {
    use std::sync::Mutex;
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let clock = Arc::new(ManualClock::new(T0));
    let open = mk_config("open", &[(5, 1000)], pb::Algorithm::Sliding);
    let l = mk_limiter(&[open], clock, Arc::new(Failing(None)));
    for _ in 0..1_000 {
        assert!(ok(&l.should_rate_limit(&user_req("open", "u")).await));
    }
    let errors = || {
        l.metrics()
            .store_errors
            .with_label_values(&["not_connected"])
            .get()
    };
    assert_eq!(errors(), 1_000);
    let logged = |lines: &Lines| {
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .filter(|l| l.contains("rate-limit store failed"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let first = logged(&lines);
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].contains("skipped=0"), "{}", first[0]);
    // The throttle reads tokio's clock, not the limiter's.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(ok(&l.should_rate_limit(&user_req("open", "u")).await));
    let both = logged(&lines);
    assert_eq!(both.len(), 2, "{both:?}");
    assert!(both[1].contains("skipped=999"), "{}", both[1]);
    assert_eq!(errors(), 1_001);
}

#[tokio::test]
async fn a_new_config_keeps_counters_of_unchanged_limits_and_forgets_cached_denials() {
    let clock = Arc::new(ManualClock::new(T0));
    let l = mk_limiter(
        &[mk_config("a", &[(2, 60_000)], pb::Algorithm::Fixed)],
        clock,
        memory(),
    );
    let req = user_req("a", "u");
    assert_eq!(admitted(&l, &req, 3).await, 2);
    apply_rate_limit_configs(
        l.table(),
        &[mk_config("a", &[(2, 60_000)], pb::Algorithm::Fixed)],
        "v2",
        Defaults::default(),
    )
    .unwrap();
    assert_eq!(admitted(&l, &req, 1).await, 0, "same limit, same counter");
    apply_rate_limit_configs(
        l.table(),
        &[mk_config("a", &[(4, 60_000)], pb::Algorithm::Fixed)],
        "v3",
        Defaults::default(),
    )
    .unwrap();
    assert_eq!(
        admitted(&l, &req, 5).await,
        2,
        "raised limit applies at once, counter kept"
    );
}

/// Limits from envoyproxy-format (or Limitador) YAML.
pub(super) fn file_limits(yaml: &str, defaults: Defaults) -> Limits {
    let files = [ConfigFile {
        name: "test.yaml".into(),
        text: yaml.into(),
    }];
    Limits::Files(
        FileLimits::load(
            &files,
            LoadOptions {
                defaults,
                merge_domains: false,
            },
        )
        .unwrap(),
    )
}

#[tokio::test]
async fn envoy_format_replaces_unlimited_and_unmatched() {
    let cfg = file_limits(
        r#"
domain: example7
descriptors:
  - key: key_1
    value: value_1
    descriptors:
      - key: user
        value: bkthomps
        rate_limit: {name: specific_limit, requests_per_unit: 5, unit: second}
  - key: key_2
    value: value_2
    descriptors:
      - key: user
        value: bkthomps
        rate_limit:
          replaces: [{name: specific_limit}]
          requests_per_unit: 10
          unit: second
  - key: ldap
    rate_limit: {unlimited: true}
"#,
        Defaults {
            algorithm: Algorithm::Fixed,
            ..Defaults::default()
        },
    );
    let table = Arc::new(LimitTable::new(cfg, "f"));
    let clock = Arc::new(ManualClock::new(T0));
    let l = Limiter::builder(table).clock(clock).build();
    let d1: &[(&str, &str)] = &[("key_1", "value_1"), ("user", "bkthomps")];
    let d2: &[(&str, &str)] = &[("key_2", "value_2"), ("user", "bkthomps")];
    // Both match: only the replacing 10/s applies and the 5/s is not touched.
    assert_eq!(admitted(&l, &mk_req("example7", &[d1, d2]), 12).await, 10);
    assert_eq!(admitted(&l, &mk_req("example7", &[d1]), 6).await, 5);
    let r = l
        .should_rate_limit(&mk_req("example7", &[&[("ldap", "x")], &[("nope", "x")]]))
        .await;
    assert!(ok(&r));
    assert_eq!(r.statuses[0].limit_remaining, u32::MAX);
    assert!(r.statuses[1].current_limit.is_none());
    assert!(r.response_headers_to_add.is_empty());
}
