//! From the limits that apply to a request to the store's checks: replaced limits
//! dropped, one check per window of every counted limit, each with its counter key,
//! the descriptor's hits and its quota group.
use std::collections::HashSet;
use std::ops::Range;

use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;

use crate::counter_key::CounterKeys;
use crate::matched::Hit;
use crate::store::Check;

/// A limit of the request and its checks (empty for unlimited limits).
#[derive(Debug)]
pub struct Planned {
    pub hit: Hit,
    pub checks: Range<usize>,
    pub hits: u32,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub limits: Vec<Planned>,
    pub checks: Vec<Check>,
}

/// What descriptor `i` adds: its own `hits_addend` when Envoy set one (0 only
/// checks), else the request's, where 0 means 1.
pub fn hits_of(req: &RateLimitRequest, i: usize) -> u32 {
    let n = match req.descriptors.get(i).and_then(|d| d.hits_addend.as_ref()) {
        Some(h) => h.value,
        None => u64::from(req.hits_addend.max(1)),
    };
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Drops every limit another limit of the request `replaces` (envoyproxy: a replaced
/// limit is neither evaluated nor counted). Unlimited limits replace too.
pub fn drop_replaced(hits: &mut Vec<Hit>) {
    let replaced: HashSet<String> = hits
        .iter()
        .flat_map(|h| h.replaces.iter().cloned())
        .collect();
    if !replaced.is_empty() {
        hits.retain(|h| {
            h.replaceable_as
                .as_deref()
                .is_none_or(|n| !replaced.contains(n))
        });
    }
}

/// `n` in decimal, written into `buf` (no allocation).
fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

pub fn plan(
    req: &RateLimitRequest,
    hits: Vec<Hit>,
    keys: &CounterKeys,
    global_quota: bool,
) -> Plan {
    let mut p = Plan::default();
    for (i, hit) in hits.into_iter().enumerate() {
        let n = hits_of(req, hit.descriptor);
        let start = p.checks.len();
        if !hit.limit.unlimited {
            let base = match &hit.counter {
                Some(c) => keys.base(&req.domain, c.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                None => keys.base(
                    &req.domain,
                    req.descriptors[hit.descriptor]
                        .entries
                        .iter()
                        .map(|e| (e.key.as_str(), e.value.as_str())),
                ),
            };
            let quota_group = if hit.limit.quota || global_quota {
                i as u32 + 1
            } else {
                0
            };
            let last = hit.limit.windows.len().saturating_sub(1);
            let mut base = Some(base);
            for (j, w) in hit.limit.windows.iter().enumerate() {
                // The last window takes the base itself: one String per window.
                let mut key = if j == last {
                    base.take().unwrap_or_default()
                } else {
                    base.clone().unwrap_or_default()
                };
                key.push(':');
                key.push_str(itoa(w.per_ms, &mut [0u8; 20]));
                p.checks.push(Check {
                    key,
                    window: *w,
                    hits: n,
                    enforce: !hit.limit.shadow,
                    quota_group,
                });
            }
        }
        p.limits.push(Planned {
            checks: start..p.checks.len(),
            hits: n,
            hit,
        });
    }
    p
}

#[cfg(test)]
mod tests {
    #[test]
    fn window_suffix_is_the_decimal_per_ms() {
        for n in [0, 7, 10, 1000, 3_600_000, u64::MAX] {
            assert_eq!(super::itoa(n, &mut [0u8; 20]), n.to_string());
        }
    }
}
