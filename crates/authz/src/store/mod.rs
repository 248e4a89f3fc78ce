//! Key stores: where an API key or opaque token is turned into an [`Identity`]. All
//! behind one trait so the cache, coalescing and failure policy sit in front of any
//! of them.
mod file;
mod introspection;
mod postgres;
mod postgres_tls;

use std::future::Future;
use std::pin::Pin;

pub use file::{FileStore, FileStoreError};
pub use introspection::{IntrospectionConfig, IntrospectionStore};
pub use postgres::{PostgresConfig, PostgresStore};

use crate::identity::{Digest, Identity};

pub type Lookup<'a> =
    Pin<Box<dyn Future<Output = Result<Option<Identity>, StoreError>> + Send + 'a>>;

/// `Ok(None)`: the store answered and the credential is unknown, revoked or inactive
/// (a cacheable "no"). `Err`: the store could not answer.
pub trait KeyStore: Send + Sync {
    /// `secret` is the credential as presented (introspection needs it); `digest` its
    /// SHA-256 (what hashed stores compare).
    fn lookup<'a>(&'a self, secret: &'a str, digest: Digest) -> Lookup<'a>;
    /// For metrics and logs: `file`, `introspection`, `postgres`.
    fn kind(&self) -> &'static str;
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{endpoint}: timed out after {after:?}")]
    Timeout {
        endpoint: String,
        after: std::time::Duration,
    },
    #[error("{endpoint}: circuit breaker open")]
    BreakerOpen { endpoint: String },
    #[error("{endpoint}: {message}")]
    Backend { endpoint: String, message: String },
}

impl StoreError {
    pub fn backend(endpoint: &str, message: impl std::fmt::Display) -> StoreError {
        StoreError::Backend {
            endpoint: endpoint.to_string(),
            message: message.to_string(),
        }
    }
}
