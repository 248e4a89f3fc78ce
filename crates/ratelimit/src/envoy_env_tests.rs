use std::collections::HashMap;

use super::*;

fn env(pairs: &[(&str, &str)]) -> anyhow::Result<EnvoyEnv> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    EnvoyEnv::from_lookup(|k| map.get(k).cloned())
}

#[test]
fn nothing_set_changes_nothing() {
    assert_eq!(env(&[]).unwrap(), EnvoyEnv::default());
}

#[test]
fn a_typical_deployment_maps_over() {
    let e = env(&[
        ("USE_STATSD", "false"),
        ("LOG_LEVEL", "debug"),
        ("REDIS_SOCKET_TYPE", "tcp"),
        ("REDIS_URL", "redis.default.svc:6379"),
        ("REDIS_AUTH", "user:p@ss word"),
        ("REDIS_TLS", "true"),
        ("RUNTIME_ROOT", "/data"),
        ("RUNTIME_SUBDIRECTORY", "ratelimit"),
        ("RUNTIME_WATCH_ROOT", "false"),
        ("GRPC_PORT", "8081"),
        ("PORT", "8080"),
        ("SHADOW_MODE", "True"),
        ("LOCAL_CACHE_SIZE_IN_BYTES", "1048576"),
        ("LIMIT_RESPONSE_HEADERS_ENABLED", "1"),
        ("LIMIT_REMAINING_HEADER", "X-Remaining"),
    ])
    .unwrap();
    assert_eq!(
        e.redis_urls.as_deref(),
        Some(&["rediss://user:p%40ss%20word@redis.default.svc:6379".to_string()][..])
    );
    assert_eq!(
        e.runtime_root.as_deref(),
        Some(std::path::Path::new("/data"))
    );
    assert_eq!(e.runtime_watch_root, Some(false));
    assert_eq!(e.grpc_addr, Some("0.0.0.0:8081".parse().unwrap()));
    assert_eq!(e.http_addr, Some("0.0.0.0:8080".parse().unwrap()));
    assert_eq!(e.shadow_mode, Some(true));
    assert_eq!(e.local_cache_size_in_bytes, Some(1 << 20));
    assert_eq!(e.limit_response_headers_enabled, Some(true));
    assert_eq!(e.limit_remaining_header.as_deref(), Some("X-Remaining"));
    assert_eq!(
        e.ignored.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        ["USE_STATSD"]
    );
    assert_eq!(
        EnvoyEnv::log_settings(|k| (k == "LOG_LEVEL").then(|| "WARNING".to_string())),
        (Some("warn".to_string()), false)
    );
}

#[test]
fn redis_urls_in_every_form() {
    let one = |pairs: &[(&str, &str)]| env(pairs).unwrap().redis_urls.unwrap();
    assert_eq!(
        one(&[("REDIS_URL", "10.0.0.1:6379")]),
        ["redis://10.0.0.1:6379"]
    );
    assert_eq!(
        one(&[("REDIS_URL", "/var/run/redis.sock")]),
        ["redis+unix:///var/run/redis.sock"]
    );
    assert_eq!(
        one(&[("REDIS_URL", "redis://:pw@h:1"), ("REDIS_AUTH", "ignored")]),
        ["redis://:pw@h:1"],
        "a full URL is taken as it is"
    );
    assert_eq!(
        one(&[("REDIS_URL", "h:1"), ("REDIS_AUTH", "secret")]),
        ["redis://:secret@h:1"]
    );
    let e = env(&[("REDIS_URL", "a:1,b:2,c:3"), ("REDIS_TYPE", "CLUSTER")]).unwrap();
    assert_eq!(e.redis_cluster, Some(true));
    assert_eq!(e.redis_urls.unwrap().len(), 3);
}

#[test]
fn what_would_behave_differently_is_refused_with_the_reason() {
    for (pairs, needle) in [
        (
            &[("REDIS_TYPE", "sentinel"), ("REDIS_URL", "m,a:1")][..],
            "REDIS_TYPE=sentinel",
        ),
        (&[("BACKEND_TYPE", "memcache")], "BACKEND_TYPE"),
        (&[("CONFIG_TYPE", "GRPC_XDS_SOTW")], "CONFIG_TYPE"),
        (&[("GRPC_UDS", "/tmp/rl.sock")], "GRPC_UDS"),
        (&[("GRPC_SERVER_USE_TLS", "true")], "GRPC_SERVER_USE_TLS"),
        (&[("REDIS_PERSECOND", "true")], "REDIS_PERSECOND"),
        (
            &[("REDIS_TLS_SKIP_HOSTNAME_VERIFICATION", "true")],
            "REDIS_TLS_SKIP_HOSTNAME_VERIFICATION",
        ),
        (&[("REDIS_URL", "a:1,b:2")], "REDIS_TYPE=cluster"),
        (&[("GRPC_PORT", "eighty")], "GRPC_PORT"),
        (&[("SHADOW_MODE", "maybe")], "SHADOW_MODE"),
        (&[("NEAR_LIMIT_RATIO", "1.5")], "NEAR_LIMIT_RATIO"),
        (
            &[("REDIS_URL", "/s.sock"), ("REDIS_TLS", "true")],
            "REDIS_TLS",
        ),
    ] {
        let e = env(pairs).expect_err(needle).to_string();
        assert!(e.contains(needle), "{needle}: {e}");
    }
    // Flags set to false change nothing, so they are fine.
    assert!(
        env(&[
            ("REDIS_PERSECOND", "false"),
            ("GRPC_SERVER_USE_TLS", "false")
        ])
        .is_ok()
    );
}

#[test]
fn prometheus_listens_where_told_when_enabled() {
    assert_eq!(
        env(&[("PROMETHEUS_ADDR", ":9999")])
            .unwrap()
            .prometheus_addr,
        None
    );
    assert_eq!(
        env(&[("USE_PROMETHEUS", "true")]).unwrap().prometheus_addr,
        Some("0.0.0.0:9090".parse().unwrap())
    );
    assert_eq!(
        env(&[
            ("USE_PROMETHEUS", "true"),
            ("PROMETHEUS_ADDR", "127.0.0.1:9999")
        ])
        .unwrap()
        .prometheus_addr,
        Some("127.0.0.1:9999".parse().unwrap())
    );
}

#[test]
fn secrets_do_not_print() {
    assert_eq!(format!("{:?}", Secret("hunter2".into())), "***");
}
