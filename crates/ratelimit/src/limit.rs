//! The limiter's own vocabulary, independent of where limits come from (xDS or an
//! envoyproxy/ratelimit YAML file): a [`Limit`] is a name, one or more windows that
//! must all admit a request, and what to do when the counter store fails.
use std::fmt;
use std::str::FromStr;

/// How a window counts requests. See README "Accuracy" for the guarantees of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// Two-bucket weighted sliding window (the default).
    #[default]
    Sliding,
    /// Fixed window aligned to multiples of its length, like envoyproxy/ratelimit.
    Fixed,
}

impl FromStr for Algorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sliding" => Ok(Algorithm::Sliding),
            "fixed" => Ok(Algorithm::Fixed),
            other => Err(format!("unknown algorithm {other:?}; use sliding or fixed")),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algorithm::Sliding => "sliding",
            Algorithm::Fixed => "fixed",
        })
    }
}

/// What a limit does when the store cannot answer within the store timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FailurePolicy {
    /// Fail open: admit (the default; an outage of the limiter is not an outage of the API).
    #[default]
    Allow,
    /// Fail closed: answer OVER_LIMIT.
    Deny,
}

impl FromStr for FailurePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "allow" => Ok(FailurePolicy::Allow),
            "deny" => Ok(FailurePolicy::Deny),
            other => Err(format!(
                "unknown failure policy {other:?}; use allow or deny"
            )),
        }
    }
}

impl fmt::Display for FailurePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailurePolicy::Allow => "allow",
            FailurePolicy::Deny => "deny",
        })
    }
}

/// What a config's unset fields mean.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Defaults {
    pub algorithm: Algorithm,
    pub on_store_failure: FailurePolicy,
}

/// At most `requests` in any `per_ms` milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    pub requests: u32,
    pub per_ms: u64,
    pub algorithm: Algorithm,
}

/// One configured limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// The name in descriptor statuses (`current_limit.name`); may be empty (an
    /// envoyproxy rule without `rate_limit.name`).
    pub name: String,
    /// Empty for an unlimited limit (never counted, always OK).
    pub windows: Vec<Window>,
    pub unlimited: bool,
    /// Counts and reports, never refuses.
    pub shadow: bool,
    /// envoyproxy `quota_mode`: over this limit refuses only when every quota limit of
    /// the request is over.
    pub quota: bool,
    pub on_store_failure: FailurePolicy,
}

/// Window lengths of the envoyproxy units (its `UnitToDivider`: a month is 30 days, a
/// year 365).
pub mod unit_ms {
    pub const SECOND: u64 = 1000;
    pub const MINUTE: u64 = 60 * SECOND;
    pub const HOUR: u64 = 60 * MINUTE;
    pub const DAY: u64 = 24 * HOUR;
    pub const WEEK: u64 = 7 * DAY;
    pub const MONTH: u64 = 30 * DAY;
    pub const YEAR: u64 = 365 * DAY;
}

/// The window length of a `RateLimitResponse.RateLimit.Unit` (`None` for `UNKNOWN`
/// and values this proto version does not define).
pub fn proto_unit_ms(unit: i32) -> Option<u64> {
    use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
    Some(match Unit::try_from(unit).ok()? {
        Unit::Second => unit_ms::SECOND,
        Unit::Minute => unit_ms::MINUTE,
        Unit::Hour => unit_ms::HOUR,
        Unit::Day => unit_ms::DAY,
        Unit::Week => unit_ms::WEEK,
        Unit::Month => unit_ms::MONTH,
        Unit::Year => unit_ms::YEAR,
        Unit::Unknown => return None,
    })
}
