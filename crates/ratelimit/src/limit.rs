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
    /// Metric label and, for the envoyproxy format, the target of `replaces`.
    pub name: String,
    /// Empty for an unlimited limit (never counted, always OK).
    pub windows: Vec<Window>,
    pub unlimited: bool,
    pub shadow: bool,
    pub on_store_failure: FailurePolicy,
}
