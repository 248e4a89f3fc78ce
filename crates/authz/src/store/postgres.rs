//! API keys in a PostgreSQL table, looked up by SHA-256 digest (the table never holds a
//! key). One multiplexed connection (tokio-postgres pipelines concurrent queries on
//! it), reconnected when it drops, every query bounded by `timeout` and behind a
//! circuit breaker.
//!
//! ```sql
//! CREATE TABLE portcullis_api_keys (
//!   key_hash text PRIMARY KEY,           -- lower-case hex SHA-256 of the key
//!   key_id   text NOT NULL,              -- public id (logs, rate-limit dimension)
//!   user_id  text NOT NULL,
//!   account  text NOT NULL DEFAULT '',
//!   scopes   text[] NOT NULL DEFAULT '{}'
//! );
//! ```
//! Deleting a row revokes the key (within the cache TTL). TLS: `sslmode=verify-full`
//! (or `verify-ca`) with `sslrootcert` in the URL; see postgres_tls.rs.
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, RwLock};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, NoTls, Socket, Statement};

use super::postgres_tls::{self, MakeRustls};
use super::{KeyStore, Lookup, StoreError};
use crate::breaker::{Breaker, BreakerConfig};
use crate::identity::{Digest, Identity};
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// libpq-style URL or key=value string, e.g. `postgres://authz@db/keys`.
    pub url: String,
    /// `table` or `schema.table`.
    pub table: String,
    pub timeout: Duration,
    pub breaker: BreakerConfig,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: String::new(),
            table: "portcullis_api_keys".into(),
            timeout: Duration::from_millis(200),
            breaker: BreakerConfig::default(),
        }
    }
}

struct Conn {
    client: Client,
    query: Statement,
}

pub struct PostgresStore {
    config: PostgresConfig,
    /// The URL parsed, `sslmode`/`sslrootcert` turned into `tls`.
    pg: tokio_postgres::Config,
    tls: Option<MakeRustls>,
    /// What metrics and errors call this store (the URL without its password).
    name: String,
    conn: RwLock<Option<Arc<Conn>>>,
    /// One reconnect at a time, however many lookups notice the broken connection.
    connecting: Mutex<()>,
    breaker: Breaker,
    metrics: Metrics,
}

/// Table names go into SQL text, so only plain identifiers are accepted.
fn valid_table(t: &str) -> bool {
    let parts: Vec<&str> = t.split('.').collect();
    parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !p.starts_with(|c: char| c.is_ascii_digit())
        })
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => "postgres".into(),
    }
}

impl PostgresStore {
    /// Does not connect: the first lookup does, so the service starts while the
    /// database is still coming up.
    pub fn new(config: PostgresConfig, metrics: Metrics) -> anyhow::Result<Self> {
        anyhow::ensure!(
            valid_table(&config.table),
            "keyStore.postgres.table: `{}` is not a plain identifier; use `name` or `schema.name` (letters, digits, _)",
            config.table
        );
        let conn = postgres_tls::parse(&config.url)
            .map_err(|e| anyhow::anyhow!("keyStore.postgres.url: {e}"))?;
        let name = redact(&config.url);
        metrics.breaker_state(&name, crate::breaker::BreakerState::Closed);
        Ok(PostgresStore {
            pg: conn.config,
            tls: conn.tls,
            breaker: Breaker::new(config.breaker),
            config,
            name,
            conn: RwLock::new(None),
            connecting: Mutex::new(()),
            metrics,
        })
    }

    /// The connection, if there is one still open.
    async fn open(&self) -> Option<Arc<Conn>> {
        let conn = self.conn.read().await;
        conn.as_ref().filter(|c| !c.client.is_closed()).cloned()
    }

    async fn conn(&self) -> Result<Arc<Conn>, StoreError> {
        if let Some(c) = self.open().await {
            return Ok(c);
        }
        let _one = self.connecting.lock().await;
        if let Some(c) = self.open().await {
            return Ok(c);
        }
        let client = match &self.tls {
            Some(tls) => self.connect(tls.clone()).await?,
            None => self.connect(NoTls).await?,
        };
        let query = client
            .prepare(&format!(
                "SELECT key_id, user_id, account, scopes FROM {} WHERE key_hash = $1",
                self.config.table
            ))
            .await
            .map_err(|e| StoreError::backend(&self.name, e))?;
        let conn = Arc::new(Conn { client, query });
        *self.conn.write().await = Some(conn.clone());
        Ok(conn)
    }

    /// A new client, its connection driven by a task of its own.
    async fn connect<T>(&self, tls: T) -> Result<Client, StoreError>
    where
        T: MakeTlsConnect<Socket>,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let (client, connection) = self
            .pg
            .connect(tls)
            .await
            .map_err(|e| StoreError::backend(&self.name, e))?;
        let name = self.name.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(store = %name, error = %e, "PostgreSQL connection closed");
            }
        });
        Ok(client)
    }

    async fn query(&self, digest: Digest) -> Result<Option<Identity>, StoreError> {
        let conn = self.conn().await?;
        let row = conn
            .client
            .query_opt(&conn.query, &[&digest.hex()])
            .await
            .map_err(|e| StoreError::backend(&self.name, e))?;
        let Some(row) = row else { return Ok(None) };
        let get = |i: usize| -> Result<String, StoreError> {
            row.try_get::<_, String>(i)
                .map_err(|e| StoreError::backend(&self.name, e))
        };
        Ok(Some(Identity {
            key_id: get(0)?,
            user: get(1)?,
            account: get(2)?,
            scopes: row
                .try_get::<_, Vec<String>>(3)
                .map_err(|e| StoreError::backend(&self.name, e))?,
            ..Default::default()
        }))
    }
}

impl KeyStore for PostgresStore {
    fn lookup<'a>(&'a self, _secret: &'a str, digest: Digest) -> Lookup<'a> {
        Box::pin(async move {
            if !self.breaker.try_acquire() {
                return Err(StoreError::BreakerOpen {
                    endpoint: self.name.clone(),
                });
            }
            let started = tokio::time::Instant::now();
            let result = tokio::time::timeout(self.config.timeout, self.query(digest))
                .await
                .unwrap_or_else(|_| {
                    Err(StoreError::Timeout {
                        endpoint: self.name.clone(),
                        after: self.config.timeout,
                    })
                });
            match &result {
                Ok(_) => self.breaker.on_success(),
                Err(e) => {
                    tracing::warn!(error = %e, "PostgreSQL lookup failed");
                    // A closed connection is replaced by the next lookup (`conn`).
                    self.breaker.on_failure();
                }
            }
            let outcome = if result.is_ok() { "ok" } else { "error" };
            self.metrics
                .backend_seconds(&self.name, outcome, started.elapsed());
            self.metrics.breaker_state(&self.name, self.breaker.state());
            result
        })
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_and_urls_are_checked() {
        assert!(valid_table("portcullis_api_keys") && valid_table("auth.keys"));
        for bad in ["", "a;drop table x", "a.b.c", "1x", "a b"] {
            assert!(!valid_table(bad), "{bad}");
        }
        assert_eq!(
            redact("postgres://u:pw@db:5432/k"),
            "postgres://…@db:5432/k"
        );
        let m = Metrics::new(&prometheus::Registry::new()).unwrap();
        let err = PostgresStore::new(
            PostgresConfig {
                url: "postgres://x/y".into(),
                table: "x;y".into(),
                ..Default::default()
            },
            m,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("keyStore.postgres.table"), "{err}");
    }
}
