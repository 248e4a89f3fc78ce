//! Counter stores. A store receives every window a request touches in one call and
//! decides atomically with [`admits`]: by default, either the request is admitted and
//! every window counts it, or nothing is counted. Not counting refused requests keeps
//! one flooding user from using up the quota of the office IP they share, and it makes
//! the local over-limit cache exact (a refused request changes nothing).
//! [`Counting::All`] counts every window whatever the decision (envoyproxy/ratelimit's
//! behaviour, and the global shadow mode).
mod batch;
mod memory;
mod redis;
mod redis_script;

pub use self::memory::{DEFAULT_MAX_KEYS, MemoryStore};
pub use self::redis::{RedisStore, RedisTarget, RedisTls, redacted_url};

use crate::algorithm::Counts;
use crate::limit::Window;

/// One window of one matched limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Counter key without the bucket suffix: `<prefix>prl:{<hash>}:<per_ms>`. The
    /// `{…}` hash tag keeps all windows of one counter in one Redis Cluster slot.
    pub key: String,
    pub window: Window,
    /// What this request adds (per-descriptor `hits_addend`; 0 only checks).
    pub hits: u32,
    /// False for shadow limits: counted, never refusing.
    pub enforce: bool,
    /// 0, or the quota group (envoyproxy `quota_mode`) the window belongs to.
    pub quota_group: u32,
}

impl Check {
    /// The Redis Cluster hash tag (the text between the first `{` and `}`).
    pub fn hash_tag(&self) -> &str {
        let start = self.key.find('{').map_or(0, |i| i + 1);
        let end = self.key[start..]
            .find('}')
            .map_or(self.key.len(), |i| start + i);
        &self.key[start..end]
    }
}

/// Which windows a store adds a request's hits to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Counting {
    /// Only when the request is admitted, then all of them (Portcullis).
    #[default]
    Admitted,
    /// All of them, always (envoyproxy/ratelimit).
    All,
}

/// Whether a request whose windows are `over` (by index of `checks`) is admitted:
/// no enforcing non-quota window is over, and if there are quota groups, at least one
/// of them has no enforcing window over (envoyproxy: refused "iff at least one rate
/// limit descriptor is over the limit or all quota descriptors are over the limit").
pub fn admits(checks: &[Check], over: &[bool]) -> bool {
    let mut groups: Vec<(u32, bool)> = Vec::new();
    for (c, &o) in checks.iter().zip(over) {
        let over = c.enforce && o;
        if c.quota_group == 0 {
            if over {
                return false;
            }
            continue;
        }
        match groups.iter_mut().find(|(g, _)| *g == c.quota_group) {
            Some((_, any)) => *any |= over,
            None => groups.push((c.quota_group, over)),
        }
    }
    groups.is_empty() || groups.iter().any(|(_, over)| !over)
}

/// The counts each window had before the request, and whether the request was
/// counted in it. With one atomic unit per request `counted` is all true or all
/// false; Redis Cluster decides per slot (see [`RedisStore`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreReply {
    pub counts: Vec<Counts>,
    pub counted: Vec<bool>,
}

impl StoreReply {
    pub fn admitted(&self) -> bool {
        self.counted.iter().all(|c| *c)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store not connected yet")]
    NotConnected,
    /// The queue of calls waiting for the store is full (see `batch`).
    #[error("store overloaded: too many calls waiting")]
    Overloaded,
    #[error("store: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("store returned an unexpected reply: {0}")]
    BadReply(String),
}

impl StoreError {
    /// Metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::NotConnected => "not_connected",
            StoreError::Overloaded => "overloaded",
            StoreError::Redis(_) => "redis",
            StoreError::BadReply(_) => "bad_reply",
        }
    }
}

#[tonic::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Decide and count every check atomically (see module docs).
    async fn check_and_count(
        &self,
        now_ms: u64,
        checks: &[Check],
        counting: Counting,
    ) -> Result<StoreReply, StoreError>;

    /// Short name for logs and metrics.
    fn name(&self) -> &'static str;

    /// Whether other processes read the same counters (so counter keys must be
    /// derived the same way everywhere).
    fn shared(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::Algorithm;

    fn c(enforce: bool, quota_group: u32) -> Check {
        Check {
            key: String::new(),
            window: Window {
                requests: 1,
                per_ms: 1000,
                algorithm: Algorithm::Fixed,
            },
            hits: 1,
            enforce,
            quota_group,
        }
    }

    #[test]
    fn admission_follows_envoyproxy_quota_rules() {
        assert!(admits(&[c(true, 0), c(true, 0)], &[false, false]));
        assert!(!admits(&[c(true, 0), c(true, 0)], &[false, true]));
        assert!(admits(&[c(false, 0)], &[true]), "shadow never refuses");
        // Quota: refused only when every quota group is over.
        assert!(admits(&[c(true, 1), c(true, 2)], &[true, false]));
        assert!(!admits(&[c(true, 1), c(true, 2)], &[true, true]));
        assert!(!admits(&[c(true, 1)], &[true]));
        // A group is over when any of its windows is.
        assert!(!admits(&[c(true, 1), c(true, 1)], &[false, true]));
        // A shadow quota group never counts as over.
        assert!(admits(&[c(true, 1), c(false, 2)], &[true, true]));
        // A plain limit over refuses whatever the quotas.
        assert!(!admits(&[c(true, 1), c(true, 0)], &[false, true]));
    }
}
