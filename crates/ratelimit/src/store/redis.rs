//! Redis and Redis Cluster stores: a Lua script (`redis_script`) decides and counts
//! every window of a request in one round trip, over one multiplexed connection per
//! process (no pool, no connection churn). With a single Redis, the requests waiting
//! at the same moment leave together as one script call (see `batch`): one write,
//! one read and one script run for many decisions, which is what lets one connection
//! (and one Redis core) keep up with tens of thousands of decisions per second. In a
//! cluster each request runs the script once per slot it touches.
//!
//! Keys: `<prefix>prl:{<counter hash>}:<per_ms>:<bucket>`. All windows of one counter
//! share the hash tag, so they live in one cluster slot. A request with counters in
//! different slots runs one script per slot, concurrently; each slot decides for its
//! own windows. The only divergence from a single atomic decision: a request refused
//! by one slot may already have been counted in another. That errs toward refusing (a
//! counter can run ahead of the admitted requests, never behind), so no limit ever
//! admits more than it allows. (With `quota_mode`, the "every quota group is over"
//! rule is applied per slot.)
//!
//! Passwords come in the URL (`redis://user:pass@host`); TLS is `rediss://`, verified
//! against the system roots or a given CA. URLs are logged with the password removed.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use parking_lot::RwLock;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{ClientTlsConfig, IntoConnectionInfo, Script, TlsCertificates};

use super::batch::{Batcher, Bounds};
use super::redis_script::{Call, SCRIPT, script_args, send_batch, split};
use super::{Check, Counting, Store, StoreError, StoreReply};
use crate::algorithm::Counts;

/// Where the counters live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One Redis (or a proxy in front of several).
    Single(String),
    /// Seed nodes of a Redis Cluster.
    Cluster(Vec<String>),
}

/// Files for `rediss://` connections; without them the system roots verify the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// CA certificate (PEM) that signed the server's certificate.
    pub ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for servers that require them.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl RedisTls {
    fn load(&self) -> anyhow::Result<Option<TlsCertificates>> {
        let read = |p: &PathBuf, what: &str| {
            std::fs::read(p)
                .with_context(|| format!("reading the Redis TLS {what} {}", p.display()))
        };
        let client_tls = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Some(ClientTlsConfig {
                client_cert: read(c, "client certificate")?,
                client_key: read(k, "client key")?,
            }),
            (None, None) => None,
            _ => anyhow::bail!(
                "Redis TLS: a client certificate needs its key and the key its certificate (REDIS_TLS_CLIENT_CERT and REDIS_TLS_CLIENT_KEY)"
            ),
        };
        let root_cert = self.ca.as_ref().map(|p| read(p, "CA")).transpose()?;
        Ok(
            (client_tls.is_some() || root_cert.is_some()).then_some(TlsCertificates {
                client_tls,
                root_cert,
            }),
        )
    }
}

#[derive(Clone)]
enum Conn {
    /// The connection lives in the batch writer's task.
    Single(Batcher<Call, Vec<i64>>),
    Cluster(ClusterConnection),
}

/// The batch queue: calls beyond `queue` waiting are refused at once (their limits'
/// failure policy answers). At 20k decisions/s a 20 ms store timeout leaves ~400 calls
/// waiting at most, so 2048 only bites in a flood; it caps the queue's memory at a few
/// hundred KiB (one request's keys and arguments each). A batch of `max_batch` keeps
/// Redis busy for about 2 ms (one script runs alone), which other users of the same
/// Redis wait out.
const BATCH: Bounds = Bounds {
    queue: 2048,
    max_batch: 256,
    in_flight: 4,
};

// One per store, moved once into its connect task: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Client {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

pub struct RedisStore {
    conn: Arc<RwLock<Option<Conn>>>,
    /// The cluster's invocations use it; the batch writer shares it.
    script: Arc<Script>,
    cluster: bool,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bounded by the service's store timeout anyway; this only keeps stuck commands from
/// piling up forever.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

impl RedisStore {
    /// [`RedisStore::connect_with`] without TLS files; panics on a malformed URL (tests).
    pub fn connect(target: RedisTarget) -> Arc<Self> {
        Self::connect_with(target, &RedisTls::default()).expect("a valid Redis URL")
    }

    /// Checks the URLs and TLS files, then returns at once and connects in the
    /// background, retrying with backoff and jitter: until connected every call fails
    /// fast with `NotConnected`, so limits follow their failure policy and the service
    /// starts even while Redis is down.
    pub fn connect_with(target: RedisTarget, tls: &RedisTls) -> anyhow::Result<Arc<Self>> {
        // rediss:// builds a rustls client with the process default provider; set it
        // when nothing has (an error means another part of the process already did).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs = tls.load()?;
        let shown = redacted(&target);
        let client = build_client(&target, certs).with_context(|| format!("Redis URL {shown}"))?;
        let store = Arc::new(RedisStore {
            conn: Arc::new(RwLock::new(None)),
            script: Arc::new(Script::new(SCRIPT)),
            cluster: matches!(target, RedisTarget::Cluster(_)),
        });
        let slot = store.conn.clone();
        let script = store.script.clone();
        tokio::spawn(async move {
            let mut backoff =
                crate::backoff::Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
            loop {
                match open(&client, &script).await {
                    Ok(conn) => {
                        tracing::info!(target = %shown, "connected to redis");
                        *slot.write() = Some(conn);
                        return;
                    }
                    Err(e) => {
                        let wait = backoff.next_delay();
                        tracing::warn!(target = %shown, error = %e, ?wait, "connecting to redis");
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        });
        Ok(store)
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
        checks: &[&Check],
        counting: Counting,
    ) -> Result<Vec<i64>, StoreError> {
        // Either way `split` checked the reply: 1 + 2 × windows values.
        let call = Call::new(now_ms, checks, counting);
        match conn {
            Conn::Single(batch) => batch.call(call).await,
            Conn::Cluster(c) => {
                let mut inv = self.script.prepare_invoke();
                let calls = [call];
                script_args(&mut inv, &calls);
                let out: Vec<i64> = inv.invoke_async(c).await?;
                let [answer] = <[_; 1]>::try_from(split(out, &calls)?)
                    .map_err(|_| StoreError::BadReply("one answer expected".into()))?;
                answer
            }
        }
    }
}

/// The TCP options of every connection to Redis. `TCP_NODELAY`, which the redis crate
/// leaves off: with Nagle's algorithm, a short segment waits while earlier bytes are
/// unacknowledged. A batch of a few hundred requests (after a hiccup) is bigger than
/// one segment, so its short tail waited for Redis to acknowledge its head, and
/// Redis, holding half a command with nothing to answer yet, delays that ACK (up to
/// 40 ms on Linux): a stall past the store timeout while Redis itself was never slow.
pub(super) fn tcp_settings() -> redis::io::tcp::TcpSettings {
    redis::io::tcp::TcpSettings::default().set_nodelay(true)
}

fn connection_info(url: &str) -> redis::RedisResult<redis::ConnectionInfo> {
    Ok(url.into_connection_info()?.set_tcp_settings(tcp_settings()))
}

fn build_client(
    target: &RedisTarget,
    certs: Option<TlsCertificates>,
) -> redis::RedisResult<Client> {
    Ok(match target {
        RedisTarget::Single(url) => Client::Single(match certs {
            Some(c) => redis::Client::build_with_tls(connection_info(url)?, c)?,
            None => redis::Client::open(connection_info(url)?)?,
        }),
        RedisTarget::Cluster(urls) => {
            let mut b = redis::cluster::ClusterClientBuilder::new(urls.clone())
                .tcp_settings(tcp_settings())
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT);
            if let Some(c) = certs {
                b = b.certs(c);
            }
            Client::Cluster(b.build()?)
        }
    })
}

async fn open(client: &Client, script: &Arc<Script>) -> Result<Conn, redis::RedisError> {
    match client {
        Client::Single(client) => {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT));
            let conn = ConnectionManager::new_with_config(client.clone(), config).await?;
            let script = script.clone();
            Ok(Conn::Single(Batcher::spawn(BATCH, move |calls| {
                send_batch(conn.clone(), script.clone(), calls)
            })))
        }
        Client::Cluster(client) => Ok(Conn::Cluster(client.get_async_connection().await?)),
    }
}

/// A Redis URL with its password (the whole userinfo) removed, for logs.
pub fn redacted_url(u: &str) -> String {
    match (u.find("://"), u.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &u[..s], &u[at + 1..]),
        _ => u.to_string(),
    }
}

fn redacted(target: &RedisTarget) -> String {
    match target {
        RedisTarget::Single(u) => redacted_url(u),
        RedisTarget::Cluster(us) => us
            .iter()
            .map(|u| redacted_url(u))
            .collect::<Vec<_>>()
            .join(","),
    }
}

#[tonic::async_trait]
impl Store for RedisStore {
    async fn check_and_count(
        &self,
        now_ms: u64,
        checks: &[Check],
        counting: Counting,
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
            vec![self.run_script(&mut conn, now_ms, &all, counting).await]
        } else {
            let calls = groups.values().map(|idx| {
                let mut conn = conn.clone();
                let group: Vec<&Check> = idx.iter().map(|&i| &checks[i]).collect();
                async move { self.run_script(&mut conn, now_ms, &group, counting).await }
            });
            futures::future::join_all(calls).await
        };
        for (idx, out) in groups.values().zip(results) {
            let out = out?;
            let counted = out[0] == 1;
            for (j, &i) in idx.iter().enumerate() {
                reply.counts[i] = Counts {
                    prev: out[1 + 2 * j].max(0) as u64,
                    curr: out[2 + 2 * j].max(0) as u64,
                };
                reply.counted[i] = counted;
            }
        }
        Ok(reply)
    }

    fn shared(&self) -> bool {
        true
    }

    fn name(&self) -> &'static str {
        if self.cluster {
            "redis-cluster"
        } else {
            "redis"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redacted_url("redis://user:s3cret@10.0.0.1:6379/0"),
            "redis://***@10.0.0.1:6379/0"
        );
        assert_eq!(
            redacted_url("rediss://:p%40ss@h:6380"),
            "rediss://***@h:6380"
        );
        assert_eq!(redacted_url("redis://h:6379"), "redis://h:6379");
        let t = RedisTarget::Cluster(vec!["redis://:a@h1".into(), "redis://:b@h2".into()]);
        let shown = redacted(&t);
        assert!(!shown.contains(":a@") && !shown.contains(":b@"), "{shown}");
    }

    /// Nagle's algorithm off on the connection the batches share (see `tcp_settings`),
    /// and the URL read as before: host, port, database and password.
    #[test]
    fn every_connection_to_redis_has_nagle_off_and_keeps_its_url() {
        assert!(tcp_settings().nodelay());
        let info = connection_info("redis://user:s3cret@10.0.0.1:6380/2").unwrap();
        assert!(info.tcp_settings().nodelay());
        assert_eq!(info.addr().to_string(), "10.0.0.1:6380");
        let redis = info.redis_settings();
        assert_eq!(redis.db(), 2);
        assert_eq!(redis.username(), Some("user"));
        assert_eq!(redis.password(), Some("s3cret"));
        assert!(connection_info("redis://:pw@").is_err());
    }

    #[test]
    fn a_malformed_url_or_half_a_client_certificate_is_an_error_at_start() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let e = RedisStore::connect_with(
            RedisTarget::Single("redis://:pw@".into()),
            &RedisTls::default(),
        )
        .err()
        .expect("refused");
        assert!(!format!("{e:#}").contains("pw"), "{e:#}");
        let half = RedisTls {
            cert: Some("/nonexistent".into()),
            ..Default::default()
        };
        let e = RedisStore::connect_with(RedisTarget::Single("rediss://h".into()), &half)
            .err()
            .expect("refused");
        assert!(format!("{e:#}").contains("REDIS_TLS_CLIENT_KEY"), "{e:#}");
    }
}
