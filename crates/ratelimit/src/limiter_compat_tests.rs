//! envoyproxy/ratelimit behaviours: quota mode, global shadow mode, counting refused
//! requests, its header style, Envoy's per-descriptor overrides and hits, and its
//! statistics. The expectations are the ones its README and its service code describe.
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::RateLimitOverride;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::google::protobuf::UInt64Value;
use prometheus::Registry;

use super::tests::*;
use super::*;
use crate::clock::ManualClock;
use crate::limit::{Algorithm, Defaults};
use crate::response::HeaderStyle;

const FIXED: Defaults = Defaults {
    algorithm: Algorithm::Fixed,
    on_store_failure: crate::limit::FailurePolicy::Allow,
};

fn limiter_with(
    yaml: &str,
    behaviour: Behaviour,
    registry: &Registry,
) -> (Limiter, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let table = Arc::new(LimitTable::new(file_limits(yaml, FIXED), "f"));
    let l = Limiter::builder(table)
        .clock(clock.clone())
        .behaviour(behaviour)
        .metrics(Metrics::new(registry).unwrap())
        .build();
    (l, clock)
}

/// The value of counter `name` with labels `labels` (0 when absent).
fn counter(registry: &Registry, name: &str, labels: &[(&str, &str)]) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .find(|m| {
            labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            })
        })
        .map_or(0, |m| m.get_counter().get_value() as u64)
}

const QUOTA: &str = r#"
domain: q
descriptors:
  - key: plan
    value: basic
    quota_mode: true
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: plan
    value: burst
    quota_mode: true
    rate_limit: {unit: minute, requests_per_unit: 3}
  - key: ip
    rate_limit: {unit: minute, requests_per_unit: 100}
"#;

#[tokio::test]
async fn quota_mode_refuses_only_when_every_quota_is_over() {
    let (l, _) = limiter_with(QUOTA, Behaviour::default(), &Registry::new());
    let req = mk_req(
        "q",
        &[&[("plan", "basic")], &[("plan", "burst")], &[("ip", "1")]],
    );
    // basic (1) runs out first; burst (3) still has room, so requests pass.
    assert_eq!(admitted(&l, &req, 5).await, 3);
    let r = l.should_rate_limit(&req).await;
    assert!(!ok(&r), "both quotas over: refused");
    assert_eq!(r.statuses[0].code, Code::OverLimit as i32);
    // Alone, an over quota refuses (it is all the request's quotas).
    assert!(!ok(&l
        .should_rate_limit(&mk_req("q", &[&[("plan", "basic")]]))
        .await));
    // The global QUOTA_MODE makes every limit a quota.
    let (l, _) = limiter_with(
        "domain: g\ndescriptors:\n  - {key: a, rate_limit: {unit: minute, requests_per_unit: 1}}\n  - {key: b, rate_limit: {unit: minute, requests_per_unit: 5}}\n",
        Behaviour {
            global_quota: true,
            ..Behaviour::default()
        },
        &Registry::new(),
    );
    let req = mk_req("g", &[&[("a", "x")], &[("b", "x")]]);
    assert_eq!(admitted(&l, &req, 10).await, 5);
}

#[tokio::test]
async fn global_shadow_mode_never_refuses_counts_and_reports() {
    let registry = Registry::new();
    let yaml =
        "domain: s\ndescriptors:\n  - {key: k, rate_limit: {unit: minute, requests_per_unit: 2}}\n";
    let (l, _) = limiter_with(
        yaml,
        Behaviour {
            global_shadow: true,
            ..Behaviour::default()
        },
        &registry,
    );
    let req = mk_req("s", &[&[("k", "v")]]);
    assert_eq!(admitted(&l, &req, 5).await, 5);
    let r = l.should_rate_limit(&req).await;
    assert!(ok(&r));
    assert_eq!(
        r.statuses[0].code,
        Code::OverLimit as i32,
        "the descriptor still says over"
    );
    assert_eq!(header(&r, "Retry-After"), None);
    assert_eq!(
        counter(&registry, "ratelimit_service_global_shadow_mode", &[]),
        4
    );
    let total = counter(
        &registry,
        "ratelimit_service_rate_limit_total_hits",
        &[("domain", "s"), ("key1", "k")],
    );
    assert_eq!(total, 6);
}

#[tokio::test]
async fn counting_refused_requests_is_envoyproxy_and_off_by_default() {
    // The office: one user's flood behind a shared IP.
    let yaml = r#"
domain: office
descriptors:
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 5}
  - key: ip
    rate_limit: {unit: minute, requests_per_unit: 20}
"#;
    let req = |u: &str| mk_req("office", &[&[("user", u)], &[("ip", "10.0.0.1")]]);
    for (counting, colleagues_admitted) in [(Counting::Admitted, 15), (Counting::All, 0)] {
        let behaviour = Behaviour {
            counting,
            ..Behaviour::default()
        };
        let (l, _) = limiter_with(yaml, behaviour, &Registry::new());
        assert_eq!(admitted(&l, &req("flooder"), 100).await, 5);
        let mut n = 0;
        for u in 0..3 {
            n += admitted(&l, &req(&format!("u{u}")), 5).await;
        }
        assert_eq!(n, colleagues_admitted, "{counting:?}");
    }
}

#[tokio::test]
async fn envoyproxy_header_style() {
    let yaml =
        "domain: h\ndescriptors:\n  - {key: k, rate_limit: {unit: minute, requests_per_unit: 1}}\n";
    let req = mk_req("h", &[&[("k", "v")]]);
    let off = Behaviour {
        headers: HeaderStyle {
            rate_limit: false,
            retry_after: false,
            ..HeaderStyle::default()
        },
        ..Behaviour::default()
    };
    let (l, _) = limiter_with(yaml, off, &Registry::new());
    l.should_rate_limit(&req).await;
    assert!(
        l.should_rate_limit(&req)
            .await
            .response_headers_to_add
            .is_empty()
    );
    let renamed = Behaviour {
        headers: HeaderStyle {
            remaining_name: "X-Left".into(),
            retry_after: false,
            ..HeaderStyle::default()
        },
        ..Behaviour::default()
    };
    let (l, _) = limiter_with(yaml, renamed, &Registry::new());
    assert_eq!(
        header(&l.should_rate_limit(&req).await, "X-Left"),
        Some("0")
    );
    let r = l.should_rate_limit(&req).await;
    assert!(!ok(&r));
    assert_eq!(header(&r, "RateLimit-Limit"), Some("1"));
    assert_eq!(header(&r, "Retry-After"), None);
}

#[tokio::test]
async fn per_descriptor_hits_addend_and_limit_overrides_from_envoy() {
    let yaml = "domain: d\ndescriptors:\n  - {key: k, rate_limit: {unit: minute, requests_per_unit: 10}}\n";
    let (l, _) = limiter_with(yaml, Behaviour::default(), &Registry::new());
    let mut req = mk_req("d", &[&[("k", "v")]]);
    req.hits_addend = 3;
    req.descriptors[0].hits_addend = Some(UInt64Value { value: 4 });
    let r = l.should_rate_limit(&req).await;
    assert_eq!(
        header(&r, "RateLimit-Remaining"),
        Some("6"),
        "the descriptor's 4, not the request's 3"
    );
    req.descriptors[0].hits_addend = Some(UInt64Value { value: 0 });
    let r = l.should_rate_limit(&req).await;
    assert_eq!(
        header(&r, "RateLimit-Remaining"),
        Some("6"),
        "0 only checks"
    );
    req.descriptors[0].hits_addend = None;
    assert_eq!(
        header(&l.should_rate_limit(&req).await, "RateLimit-Remaining"),
        Some("3")
    );

    // Envoy's limit override takes the rule's place, on the same counter.
    let mut o = mk_req("d", &[&[("k", "v")]]);
    o.descriptors[0].limit = Some(RateLimitOverride {
        requests_per_unit: 8,
        unit: Unit::Minute as i32,
    });
    let r = l.should_rate_limit(&o).await;
    assert_eq!(header(&r, "RateLimit-Limit"), Some("8"));
    assert_eq!(
        header(&r, "RateLimit-Remaining"),
        Some("0"),
        "7 counted before + 1"
    );
    assert!(!ok(&l.should_rate_limit(&o).await));
    // Huge hits never fit and never overflow.
    let mut huge = mk_req("d", &[&[("k", "w")]]);
    huge.descriptors[0].hits_addend = Some(UInt64Value { value: u64::MAX });
    assert!(!ok(&l.should_rate_limit(&huge).await));
    assert!(ok(&l
        .should_rate_limit(&mk_req("d", &[&[("k", "w")]]))
        .await));
}

#[tokio::test]
async fn statistics_follow_envoyproxy_names_and_meaning() {
    let registry = Registry::new();
    let yaml = r#"
domain: mongo_cps
descriptors:
  - key: database
    value: users
    rate_limit: {unit: second, requests_per_unit: 5}
  - key: database
    value: shadowed
    shadow_mode: true
    rate_limit: {unit: second, requests_per_unit: 1}
"#;
    let (l, _) = limiter_with(yaml, Behaviour::default(), &registry);
    admitted(&l, &mk_req("mongo_cps", &[&[("database", "users")]]), 7).await;
    admitted(&l, &mk_req("mongo_cps", &[&[("database", "shadowed")]]), 3).await;
    let users = [("domain", "mongo_cps"), ("key1", "database_users")];
    let stat = |name: &str, labels: &[(&str, &str)]| {
        counter(
            &registry,
            &format!("ratelimit_service_rate_limit_{name}"),
            labels,
        )
    };
    assert_eq!(stat("total_hits", &users), 7);
    assert_eq!(stat("within_limit", &users), 5);
    // near: floor(5 · 0.8) = 4, so the 5th hit; over: the 6th and 7th (the 7th from
    // the local over-limit cache).
    assert_eq!(stat("near_limit", &users), 1);
    assert_eq!(stat("over_limit", &users), 2);
    assert_eq!(stat("over_limit_with_local_cache", &users), 1);
    let shadowed = [("domain", "mongo_cps"), ("key1", "database_shadowed")];
    assert_eq!(stat("shadow_mode", &shadowed), 2);
    assert_eq!(stat("over_limit", &shadowed), 2);
}

#[tokio::test]
async fn request_values_in_stat_keys_are_bounded() {
    let registry = Registry::new();
    let clock = Arc::new(ManualClock::new(T0));
    let yaml = "domain: d\ndescriptors:\n  - {key: user, detailed_metric: true, rate_limit: {unit: minute, requests_per_unit: 10}}\n";
    let l = Limiter::builder(Arc::new(LimitTable::new(file_limits(yaml, FIXED), "f")))
        .clock(clock)
        .metrics(Metrics::with_max_keys(&registry, 100).unwrap())
        .build();
    for i in 0..1000 {
        l.should_rate_limit(&mk_req("d", &[&[("user", &format!("u{i}"))]]))
            .await;
    }
    let series = |name: &str| {
        registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .map(|f| f.get_metric().len())
            .sum::<usize>()
    };
    assert!(series("ratelimit_service_rate_limit_total_hits") <= 101);
    assert!(series("portcullis_ratelimit_decisions_total") <= 101);
    assert_eq!(
        counter(
            &registry,
            "ratelimit_service_rate_limit_total_hits",
            &[("key1", "_other")]
        ),
        900
    );
    assert_eq!(
        counter(
            &registry,
            "portcullis_ratelimit_stats_keys_dropped_total",
            &[]
        ),
        900
    );
}

#[tokio::test]
async fn huge_values_and_many_descriptors_are_decided_with_bounded_keys() {
    let yaml =
        "domain: d\ndescriptors:\n  - {key: v, rate_limit: {unit: minute, requests_per_unit: 2}}\n";
    let (l, _) = limiter_with(yaml, Behaviour::default(), &Registry::new());
    let big = "x".repeat(1 << 20);
    let req = mk_req("d", &[&[("v", &big)]]);
    assert_eq!(admitted(&l, &req, 3).await, 2);
    // Differing only in the last byte: another counter.
    let other = format!("{}y", &big[..big.len() - 1]);
    assert!(ok(&l
        .should_rate_limit(&mk_req("d", &[&[("v", &other)]]))
        .await));
    // 1,000 descriptors in one request: every one is matched and counted.
    let values: Vec<String> = (0..1000).map(|i| format!("{i}")).collect();
    let many: Vec<Vec<(&str, &str)>> = values.iter().map(|v| vec![("v", v.as_str())]).collect();
    let many: Vec<&[(&str, &str)]> = many.iter().map(Vec::as_slice).collect();
    let r = l.should_rate_limit(&mk_req("d", &many)).await;
    assert!(ok(&r));
    assert_eq!(r.statuses.len(), 1000);
    assert!(r.statuses.iter().all(|s| s.limit_remaining == 1));
}

#[tokio::test]
async fn share_threshold_and_wildcard_decisions_follow_the_readme() {
    // README example 11: five files/a.pdf and five files/b.csv spend the shared 10;
    // files_no_share values each have their own 10.
    let yaml = r#"
domain: example11
descriptors:
  - key: files
    value: files/*
    share_threshold: true
    rate_limit: {unit: hour, requests_per_unit: 10}
  - key: files_no_share
    value: files_no_share/*
    rate_limit: {unit: hour, requests_per_unit: 10}
  - key: path
    value: /api/*/action
    rate_limit: {unit: hour, requests_per_unit: 1}
"#;
    let (l, _) = limiter_with(yaml, Behaviour::default(), &Registry::new());
    let req = |k: &str, v: &str| mk_req("example11", &[&[(k, v)]]);
    assert_eq!(admitted(&l, &req("files", "files/a.pdf"), 5).await, 5);
    assert_eq!(admitted(&l, &req("files", "files/b.csv"), 5).await, 5);
    assert!(!ok(&l
        .should_rate_limit(&req("files", "files/c.txt"))
        .await));
    assert_eq!(
        admitted(&l, &req("files_no_share", "files_no_share/a.pdf"), 11).await,
        10
    );
    assert_eq!(
        admitted(&l, &req("files_no_share", "files_no_share/b.csv"), 10).await,
        10
    );
    // A middle wildcard: each matching value its own counter, others unlimited.
    assert_eq!(admitted(&l, &req("path", "/api/1/action"), 2).await, 1);
    assert_eq!(admitted(&l, &req("path", "/api/2/action"), 2).await, 1);
    assert_eq!(admitted(&l, &req("path", "/api/1/other"), 3).await, 3);
}
