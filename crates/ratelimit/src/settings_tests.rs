use std::collections::HashMap;

use clap::Parser;

use super::*;
use crate::envoy_env::EnvoyEnv;

fn settings(flags: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Settings> {
    let mut args = Args::try_parse_from(std::iter::once("ratelimit").chain(flags.iter().copied()))?;
    let map: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    args.envoy = EnvoyEnv::from_lookup(|k| map.get(k).cloned())?;
    Settings::resolve(&args)
}

#[test]
fn portcullis_defaults() {
    let s = settings(&[], &[]).unwrap();
    assert_eq!(s.load.defaults.algorithm, Algorithm::Sliding);
    assert_eq!(s.behaviour.counting, Counting::Admitted);
    assert!(s.behaviour.headers.rate_limit && s.behaviour.headers.retry_after);
    assert!(s.local_cache_entries > 0);
    assert_eq!(s.store.kind, StoreKind::Memory);
    assert_eq!(s.source, Source::None);
    assert_eq!(s.grpc_addr, "0.0.0.0:8081".parse().unwrap());
    assert_eq!(s.http_addr, "0.0.0.0:9091".parse().unwrap());
}

#[test]
fn compat_envoyproxy_restores_every_difference_in_the_table() {
    let s = settings(&["--compat", "envoyproxy"], &[]).unwrap();
    assert_eq!(s.load.defaults.algorithm, Algorithm::Fixed);
    assert_eq!(s.behaviour.counting, Counting::All);
    assert!(!s.behaviour.headers.rate_limit && !s.behaviour.headers.retry_after);
    assert_eq!(s.local_cache_entries, 0);
    // envoyproxy's own switches then work as there.
    let s = settings(
        &["--compat", "envoyproxy"],
        &[
            ("STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT", "true"),
            ("LIMIT_RESPONSE_HEADERS_ENABLED", "true"),
            ("LIMIT_RESET_HEADER", "X-Reset"),
            ("LOCAL_CACHE_SIZE_IN_BYTES", "12800"),
        ],
    )
    .unwrap();
    assert_eq!(s.behaviour.counting, Counting::Admitted);
    assert!(s.behaviour.headers.rate_limit && !s.behaviour.headers.retry_after);
    assert_eq!(s.behaviour.headers.reset_name, "X-Reset");
    assert_eq!(s.local_cache_entries, 100);
    // And each difference has its own flag.
    let s = settings(
        &[
            "--compat",
            "envoyproxy",
            "--algorithm",
            "sliding",
            "--count-refused",
            "false",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(
        (s.load.defaults.algorithm, s.behaviour.counting),
        (Algorithm::Sliding, Counting::Admitted)
    );
}

#[test]
fn flags_win_over_envoyproxy_variables() {
    let env = [
        ("GRPC_PORT", "7000"),
        ("PORT", "7001"),
        ("REDIS_URL", "r:6379"),
        ("SHADOW_MODE", "true"),
        ("RUNTIME_ROOT", "/srv/runtime_data/current"),
        ("RUNTIME_SUBDIRECTORY", "ratelimit"),
    ];
    let s = settings(&[], &env).unwrap();
    assert_eq!(s.grpc_addr.port(), 7000);
    assert_eq!(s.http_addr.port(), 7001);
    assert_eq!(
        (s.store.kind, s.store.redis_urls.as_slice()),
        (StoreKind::Redis, &["redis://r:6379".to_string()][..])
    );
    assert!(s.behaviour.global_shadow);
    assert!(s.keys_public, "Redis without a secret is warned about");
    let Source::Files(FileSource::Runtime(r)) = &s.source else {
        panic!("{:?}", s.source)
    };
    assert_eq!(
        r.app_path(),
        std::path::Path::new("/srv/runtime_data/current/ratelimit/config")
    );

    let s = settings(
        &[
            "--grpc-addr",
            "127.0.0.1:1",
            "--store",
            "memory",
            "--shadow-mode",
            "false",
            "--runtime-appdirectory",
            "limits",
            "--counter-key-secret",
            "0123456789abcdef0123",
        ],
        &env,
    )
    .unwrap();
    assert_eq!(s.grpc_addr, "127.0.0.1:1".parse().unwrap());
    assert_eq!(s.store.kind, StoreKind::Memory);
    assert!(!s.behaviour.global_shadow && !s.keys_public);
    let Source::Files(FileSource::Runtime(r)) = &s.source else {
        panic!()
    };
    assert_eq!(
        r.app_path(),
        std::path::Path::new("/srv/runtime_data/current/ratelimit/limits")
    );
}

#[test]
fn mistakes_are_refused_with_the_setting_named() {
    for (flags, env, needle) in [
        (
            &["--xds-addr", "http://x"][..],
            &[("RUNTIME_ROOT", "/r")][..],
            "not several",
        ),
        (
            &["--config-file", "f", "--runtime-root", "/r"],
            &[],
            "runtime-root",
        ),
        (&["--counter-key-secret", "short"], &[], "16 bytes"),
        (&["--key-prefix", "a{b"], &[], "hash tag"),
        (
            &["--store", "redis", "--redis-url", "redis://a,redis://b"],
            &[],
            "redis-cluster",
        ),
        (&["--redis-tls-cert", "c.pem"], &[], "redis-tls-key"),
    ] {
        let Err(e) = settings(flags, env) else {
            panic!("{needle}: accepted")
        };
        assert!(format!("{e:#}").contains(needle), "{needle}: {e:#}");
    }
}

#[test]
fn the_secret_file_is_read_and_replicas_agree() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("secret");
    std::fs::write(&f, "0123456789abcdef0123\n").unwrap();
    let a = settings(
        &[
            "--store",
            "redis",
            "--counter-key-secret-file",
            f.to_str().unwrap(),
        ],
        &[],
    )
    .unwrap();
    let b = settings(
        &[
            "--store",
            "redis",
            "--counter-key-secret",
            "0123456789abcdef0123",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(
        a.keys.base("d", [("k", "v")]),
        b.keys.base("d", [("k", "v")])
    );
    assert!(!a.keys_public);
}
