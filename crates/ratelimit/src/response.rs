//! Building the `RateLimitResponse`: per-descriptor statuses and the headers Envoy
//! adds to the client's response.
//!
//! Envoy's rate-limit filter copies `response_headers_to_add` onto the 429 it sends
//! for OVER_LIMIT and onto the upstream's response for OK, so the `RateLimit-*` set
//! reaches clients either way without `enable_x_ratelimit_headers` (leave that off, or
//! clients get both sets).
use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit, rate_limit::Unit,
};
use envoy_types::pb::google::protobuf::Duration as PbDuration;

use crate::algorithm::{Verdict, retry_after_secs};
use crate::limit::{Window, unit_ms};

/// Which headers answers carry: Portcullis sends `RateLimit-*` on every answer and
/// `Retry-After` on refusals; envoyproxy sends the `RateLimit-*` set (names
/// configurable) only with `LIMIT_RESPONSE_HEADERS_ENABLED`, and no `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderStyle {
    pub rate_limit: bool,
    pub limit_name: String,
    pub remaining_name: String,
    pub reset_name: String,
    pub retry_after: bool,
}

impl Default for HeaderStyle {
    fn default() -> Self {
        HeaderStyle {
            rate_limit: true,
            limit_name: "RateLimit-Limit".into(),
            remaining_name: "RateLimit-Remaining".into(),
            reset_name: "RateLimit-Reset".into(),
            retry_after: true,
        }
    }
}

/// The window a client is told about: over ones first (the longest wait), then the
/// one with the least room left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reported {
    pub window: Window,
    pub verdict: Verdict,
}

impl Reported {
    /// Whether `self` is more restrictive than `other`.
    pub fn tighter_than(&self, other: &Reported) -> bool {
        let (a, b) = (&self.verdict, &other.verdict);
        match (a.over, b.over) {
            (true, false) => true,
            (false, true) => false,
            (true, true) => a.retry_after_ms > b.retry_after_ms,
            (false, false) => {
                (a.remaining, std::cmp::Reverse(a.reset_ms))
                    < (b.remaining, std::cmp::Reverse(b.reset_ms))
            }
        }
    }
}

pub fn keep_tightest(slot: &mut Option<Reported>, candidate: Reported) {
    if slot.as_ref().is_none_or(|cur| candidate.tighter_than(cur)) {
        *slot = Some(candidate);
    }
}

/// The proto unit of a window length (`Unknown` for lengths that are none).
fn unit_of(per_ms: u64) -> Unit {
    match per_ms {
        unit_ms::SECOND => Unit::Second,
        unit_ms::MINUTE => Unit::Minute,
        unit_ms::HOUR => Unit::Hour,
        unit_ms::DAY => Unit::Day,
        unit_ms::WEEK => Unit::Week,
        unit_ms::MONTH => Unit::Month,
        unit_ms::YEAR => Unit::Year,
        _ => Unit::Unknown,
    }
}

pub fn pb_duration_ms(ms: u64) -> PbDuration {
    PbDuration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

/// The status of one descriptor.
pub fn descriptor_status(name: &str, reported: Option<&Reported>, over: bool) -> DescriptorStatus {
    let code = if over { Code::OverLimit } else { Code::Ok };
    let Some(r) = reported else {
        return DescriptorStatus {
            code: code as i32,
            ..Default::default()
        };
    };
    let unit = unit_of(r.window.per_ms);
    DescriptorStatus {
        code: code as i32,
        current_limit: Some(RateLimit {
            name: name.to_string(),
            requests_per_unit: r.window.requests,
            unit: unit as i32,
        }),
        limit_remaining: r.verdict.remaining,
        duration_until_reset: Some(pb_duration_ms(r.verdict.reset_ms)),
        ..Default::default()
    }
}

/// An unlimited descriptor: OK with `limit_remaining` = u32::MAX, as envoyproxy does.
pub fn unlimited_status() -> DescriptorStatus {
    DescriptorStatus {
        code: Code::Ok as i32,
        limit_remaining: u32::MAX,
        ..Default::default()
    }
}

fn header(key: &str, value: String) -> HeaderValue {
    HeaderValue {
        key: key.to_string(),
        value,
        ..Default::default()
    }
}

/// `RateLimit-Limit/Remaining/Reset` (IETF draft) for the tightest window, plus
/// `Retry-After` (whole seconds, at least 1) when the request is refused, as `style`
/// says.
pub fn headers(
    style: &HeaderStyle,
    tightest: Option<&Reported>,
    refused_retry_after_ms: Option<u64>,
) -> Vec<HeaderValue> {
    let mut out = Vec::with_capacity(4);
    if let (true, Some(r)) = (style.rate_limit, tightest) {
        out.push(header(&style.limit_name, r.window.requests.to_string()));
        out.push(header(
            &style.remaining_name,
            r.verdict.remaining.to_string(),
        ));
        out.push(header(
            &style.reset_name,
            r.verdict.reset_ms.div_ceil(1000).to_string(),
        ));
    }
    if let (true, Some(ms)) = (style.retry_after, refused_retry_after_ms) {
        out.push(header("Retry-After", retry_after_secs(ms).to_string()));
    }
    out
}
