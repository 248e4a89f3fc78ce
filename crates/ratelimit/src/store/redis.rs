//! Redis and Redis Cluster stores: one Lua script per request (per slot in a cluster)
//! decides and counts every window in one round trip, over one multiplexed
//! connection per process (no connection churn; seed 000).
//!
//! Keys: `prl:{<descriptor hash>}:<per_ms>:<bucket>`. All windows of one descriptor
//! share the hash tag, so they live in one cluster slot. A request with descriptors in
//! different slots runs one script per slot, concurrently; each slot decides for its
//! own windows. The only divergence from a single atomic decision: a request denied by
//! one slot may already have been counted in another. That errs toward denying (a
//! counter can run ahead of the admitted requests, never behind), so no limit ever
//! admits more than it allows.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;

use super::{Check, Store, StoreError, StoreReply};
use crate::algorithm::{self, Counts};
use crate::limit::Algorithm;

/// Mirrors `algorithm::fits` (integral arithmetic scaled by the window length).
/// KEYS: per check, the current bucket then the previous bucket.
/// ARGV: hits, then per check: limit, per_ms, elapsed_ms, sliding (0|1), enforce (0|1).
/// Returns {admitted, prev_1, curr_1, prev_2, curr_2, ...} (counts before counting).
const SCRIPT: &str = r#"
local hits = tonumber(ARGV[1])
local n = #KEYS / 2
local prev, curr = {}, {}
local admitted = 1
for i = 1, n do
  local a = 2 + (i - 1) * 5
  local limit, per, elapsed = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local sliding, enforce = ARGV[a + 3] == '1', ARGV[a + 4] == '1'
  local c = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  local p = 0
  if sliding then p = tonumber(redis.call('GET', KEYS[2 * i]) or '0') end
  prev[i], curr[i] = p, c
  local used = (c + hits) * per + p * (per - elapsed)
  if enforce and used > limit * per then admitted = 0 end
end
local out = {admitted}
for i = 1, n do
  if admitted == 1 then
    local a = 2 + (i - 1) * 5
    local per, elapsed = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
    -- A sliding bucket is still read as the previous bucket during the next window.
    local ttl = per - elapsed + 1000
    if ARGV[a + 3] == '1' then ttl = ttl + per end
    redis.call('INCRBY', KEYS[2 * i - 1], hits)
    redis.call('PEXPIRE', KEYS[2 * i - 1], ttl)
  end
  out[#out + 1] = prev[i]
  out[#out + 1] = curr[i]
end
return out
"#;

/// Where the counters live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One Redis (or a proxy in front of several).
    Single(String),
    /// Seed nodes of a Redis Cluster.
    Cluster(Vec<String>),
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

pub struct RedisStore {
    conn: Arc<RwLock<Option<Conn>>>,
    script: Script,
    cluster: bool,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

impl RedisStore {
    /// Returns at once and connects in the background, retrying with backoff and
    /// jitter: until connected every call fails fast with `NotConnected`, so limits
    /// follow their failure policy and the service starts even while Redis is down.
    pub fn connect(target: RedisTarget) -> Arc<Self> {
        let store = Arc::new(RedisStore {
            conn: Arc::new(RwLock::new(None)),
            script: Script::new(SCRIPT),
            cluster: matches!(target, RedisTarget::Cluster(_)),
        });
        let slot = store.conn.clone();
        tokio::spawn(async move {
            let mut backoff =
                crate::backoff::Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
            loop {
                match open(&target).await {
                    Ok(conn) => {
                        tracing::info!(target = %redacted(&target), "connected to redis");
                        *slot.write() = Some(conn);
                        return;
                    }
                    Err(e) => {
                        let wait = backoff.next_delay();
                        tracing::warn!(target = %redacted(&target), error = %e, ?wait, "connecting to redis");
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        });
        store
    }

    /// Whether the first connection has been made (later outages are handled by the
    /// connection itself, which reconnects on its own).
    pub fn is_connected(&self) -> bool {
        self.conn.read().is_some()
    }

    async fn run_script(
        &self,
        conn: &mut Conn,
        now_ms: u64,
        hits: u32,
        checks: &[&Check],
    ) -> Result<Vec<i64>, StoreError> {
        let mut inv = self.script.prepare_invoke();
        inv.arg(hits);
        for c in checks {
            let (bucket, elapsed) = algorithm::bucket(now_ms, c.window.per_ms);
            inv.key(format!("{}:{}", c.key, bucket));
            inv.key(format!("{}:{}", c.key, bucket.wrapping_sub(1)));
            inv.arg(c.window.requests)
                .arg(c.window.per_ms)
                .arg(elapsed)
                .arg(u8::from(c.window.algorithm == Algorithm::Sliding))
                .arg(u8::from(c.enforce));
        }
        let out: Vec<i64> = match conn {
            Conn::Single(c) => inv.invoke_async(c).await?,
            Conn::Cluster(c) => inv.invoke_async(c).await?,
        };
        if out.len() != 1 + 2 * checks.len() {
            return Err(StoreError::BadReply(format!(
                "{} values for {} windows",
                out.len(),
                checks.len()
            )));
        }
        Ok(out)
    }
}

async fn open(target: &RedisTarget) -> Result<Conn, redis::RedisError> {
    match target {
        RedisTarget::Single(url) => {
            let client = redis::Client::open(url.as_str())?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                // Bounded by the service's store timeout anyway; this only keeps
                // stuck commands from piling up forever.
                .set_response_timeout(Some(Duration::from_secs(1)));
            Ok(Conn::Single(
                ConnectionManager::new_with_config(client, config).await?,
            ))
        }
        RedisTarget::Cluster(urls) => {
            let client = redis::cluster::ClusterClientBuilder::new(urls.clone())
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(Duration::from_secs(1))
                .build()?;
            Ok(Conn::Cluster(client.get_async_connection().await?))
        }
    }
}

/// The target with any password removed, for logs.
fn redacted(target: &RedisTarget) -> String {
    let one = |u: &str| match (u.find("://"), u.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &u[..s], &u[at + 1..]),
        _ => u.to_string(),
    };
    match target {
        RedisTarget::Single(u) => one(u),
        RedisTarget::Cluster(us) => us.iter().map(|u| one(u)).collect::<Vec<_>>().join(","),
    }
}

#[tonic::async_trait]
impl Store for RedisStore {
    async fn check_and_count(
        &self,
        now_ms: u64,
        hits: u32,
        checks: &[Check],
    ) -> Result<StoreReply, StoreError> {
        let mut conn = self.conn.read().clone().ok_or(StoreError::NotConnected)?;
        if checks.is_empty() {
            return Ok(StoreReply::default());
        }
        // One group for a single Redis; one per hash tag (hence per slot) in a cluster.
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, c) in checks.iter().enumerate() {
            let tag = if self.cluster { c.hash_tag() } else { "" };
            groups.entry(tag).or_default().push(i);
        }
        let mut reply = StoreReply {
            counts: vec![Counts::default(); checks.len()],
            counted: vec![false; checks.len()],
        };
        let results = if groups.len() == 1 {
            let all: Vec<&Check> = checks.iter().collect();
            vec![self.run_script(&mut conn, now_ms, hits, &all).await]
        } else {
            let calls = groups.values().map(|idx| {
                let mut conn = conn.clone();
                let group: Vec<&Check> = idx.iter().map(|&i| &checks[i]).collect();
                async move { self.run_script(&mut conn, now_ms, hits, &group).await }
            });
            futures::future::join_all(calls).await
        };
        for (idx, out) in groups.values().zip(results) {
            let out = out?;
            let admitted = out[0] == 1;
            for (j, &i) in idx.iter().enumerate() {
                reply.counts[i] = Counts {
                    prev: out[1 + 2 * j].max(0) as u64,
                    curr: out[2 + 2 * j].max(0) as u64,
                };
                reply.counted[i] = admitted;
            }
        }
        Ok(reply)
    }

    fn name(&self) -> &'static str {
        if self.cluster {
            "redis-cluster"
        } else {
            "redis"
        }
    }
}
