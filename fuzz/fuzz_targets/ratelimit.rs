//! Limits (control-plane `RateLimitConfig`s, or an envoyproxy/ratelimit YAML file) and
//! then a sequence of `ShouldRateLimit` calls and clock moves against the memory store,
//! through the same `Limiter` the gRPC service calls.
//!
//! Input: first byte even → envoyproxy YAML: the text up to the first NUL, then the
//! steps. Odd → configs and steps all from the bytes. Descriptor keys and values are
//! often taken from the config (YAML words, limit names), so requests actually match.
//! Beyond not panicking: one status per descriptor, and an over-limit answer only
//! with a descriptor over its limit.
#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::{Arbitrary, Result, Unstructured};
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{
    RateLimitDescriptor, rate_limit_descriptor::Entry,
};
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use libfuzzer_sys::fuzz_target;
use portcullis_contract::ratelimit::{DIMENSIONS, DOMAIN, HEADER_PREFIX, LIMIT_KEY};
use portcullis_ratelimit::{
    ConfigFile, Defaults, FileLimits, LimitTable, Limiter, Limits, LoadOptions, ManualClock,
    apply_rate_limit_configs, pb,
};

/// 2026-01-01T00:00:00Z: a realistic wall clock to start from.
const START_MS: u64 = 1_767_225_600_000;
const MAX_STEPS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});

fn run(data: &[u8]) -> Result<()> {
    let (&mode, rest) = data.split_first().unwrap_or((&0, &[]));
    let table = Arc::new(LimitTable::default());
    let (words, steps) = if mode % 2 == 0 {
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        let Ok(text) = std::str::from_utf8(&rest[..end]) else {
            return Ok(());
        };
        let file = ConfigFile {
            name: "fuzz.yaml".into(),
            text: text.into(),
        };
        let Ok(limits) = FileLimits::load(&[file], LoadOptions::default()) else {
            return Ok(());
        };
        table.swap(Limits::Files(limits), "fuzz");
        let words: Vec<String> = text
            .split(|c: char| c.is_whitespace() || c == ':' || c == '"' || c == '\'')
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect();
        (words, rest.get(end + 1..).unwrap_or_default())
    } else {
        let mut u = Unstructured::new(rest);
        let configs = configs(&mut u)?;
        let names = configs.iter().map(|c| c.name.clone()).collect();
        if apply_rate_limit_configs(&table, &configs, "fuzz", Defaults::default()).is_err() {
            return Ok(());
        }
        let taken = rest.len() - u.len();
        (names, &rest[taken..])
    };
    let mut u = Unstructured::new(steps);
    let clock = Arc::new(ManualClock::new(START_MS));
    let limiter = Limiter::builder(table)
        .clock(clock.clone())
        .local_cache(bool::arbitrary(&mut u)?)
        .build();
    for _ in 0..MAX_STEPS {
        if u.is_empty() {
            break;
        }
        if u.ratio(1, 4)? {
            clock.advance_ms(u64::from(u32::arbitrary(&mut u)?));
            continue;
        }
        let req = request(&mut u, &words, mode % 2 == 1)?;
        let resp = runtime().block_on(limiter.should_rate_limit(&req));
        assert_eq!(resp.statuses.len(), req.descriptors.len(), "{req:?}");
        if resp.overall_code == Code::OverLimit as i32 {
            assert!(
                resp.statuses
                    .iter()
                    .any(|s| s.code == Code::OverLimit as i32),
                "{req:?} -> {resp:?}"
            );
        } else {
            assert_eq!(resp.overall_code, Code::Ok as i32, "{resp:?}");
        }
    }
    Ok(())
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    })
}

fn configs(u: &mut Unstructured<'_>) -> Result<Vec<pb::RateLimitConfig>> {
    let n = u.int_in_range(0..=4)?;
    (0..n)
        .map(|_| {
            let windows = (0..u.int_in_range(0..=3)?)
                .map(|_| {
                    Ok(pb::Window {
                        requests: u.arbitrary()?,
                        per: Some(prost_types::Duration {
                            seconds: if u.ratio(1, 4)? {
                                u.arbitrary()?
                            } else {
                                u.int_in_range(0..=86_400)?
                            },
                            nanos: u.arbitrary()?,
                        }),
                    })
                })
                .collect::<Result<_>>()?;
            let by = (0..u.int_in_range(0..=3)?)
                .map(|_| {
                    Ok(match u.int_in_range(0..=2)? {
                        0 => u.choose(DIMENSIONS)?.to_string(),
                        1 => format!("{HEADER_PREFIX}{}", String::arbitrary(u)?),
                        _ => String::arbitrary(u)?,
                    })
                })
                .collect::<Result<_>>()?;
            Ok(pb::RateLimitConfig {
                name: String::arbitrary(u)?,
                by,
                windows,
                shadow: u.arbitrary()?,
                on_store_failure: u.int_in_range(0..=3)?,
                algorithm: u.int_in_range(0..=3)?,
            })
        })
        .collect()
}

/// A word from the config most of the time, else anything.
fn word(u: &mut Unstructured<'_>, words: &[String]) -> Result<String> {
    if !words.is_empty() && u.ratio(3, 4)? {
        return Ok(u.choose(words)?.clone());
    }
    String::arbitrary(u)
}

fn request(u: &mut Unstructured<'_>, words: &[String], portcullis: bool) -> Result<RateLimitRequest> {
    let domain = match (portcullis, u.ratio(7, 8)?) {
        (true, true) => DOMAIN.to_string(),
        (false, true) => word(u, words)?,
        _ => String::arbitrary(u)?,
    };
    let descriptors = (0..u.int_in_range(0..=4)?)
        .map(|_| {
            let mut entries = Vec::new();
            if portcullis && u.ratio(7, 8)? {
                entries.push(Entry {
                    key: LIMIT_KEY.into(),
                    value: word(u, words)?,
                });
            }
            for _ in 0..u.int_in_range(0..=3)? {
                let key = if portcullis {
                    u.choose(DIMENSIONS)?.to_string()
                } else {
                    word(u, words)?
                };
                entries.push(Entry {
                    key,
                    value: word(u, words)?,
                });
            }
            Ok(RateLimitDescriptor {
                entries,
                ..Default::default()
            })
        })
        .collect::<Result<_>>()?;
    Ok(RateLimitRequest {
        domain,
        descriptors,
        hits_addend: if u.ratio(1, 8)? { u.arbitrary()? } else { 1 },
    })
}
