//! Counter stores. A store receives every window a request touches in one call and
//! decides atomically: either every enforcing window has room and all of them are
//! counted, or nothing is counted. Not counting denied requests is what keeps one
//! flooding user from using up the quota of the office IP they share (seed 000), and
//! it makes the local over-limit cache exact (a denied request changes nothing).
mod memory;
mod redis;

pub use self::memory::MemoryStore;
pub use self::redis::{RedisStore, RedisTarget};

use crate::algorithm::Counts;
use crate::limit::Window;

/// One window of one matched descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Counter key without the bucket suffix: `prl:{<identity hash>}:<per_ms>`. The
    /// `{…}` hash tag keeps all windows of one descriptor in one Redis Cluster slot.
    pub key: String,
    pub window: Window,
    /// False for shadow limits: they are counted but never deny.
    pub enforce: bool,
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

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store not connected yet")]
    NotConnected,
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
            StoreError::Redis(_) => "redis",
            StoreError::BadReply(_) => "bad_reply",
        }
    }
}

#[tonic::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Decide and count `hits` for every check, atomically (see module docs).
    async fn check_and_count(
        &self,
        now_ms: u64,
        hits: u32,
        checks: &[Check],
    ) -> Result<StoreReply, StoreError>;

    /// Short name for logs and metrics.
    fn name(&self) -> &'static str;
}
