//! Hashed API keys in a YAML file (the embedded default; a mounted Kubernetes Secret
//! has the same shape). Only SHA-256 digests are stored: the file leaks no key. The
//! file is re-read when it changes; a bad edit is logged and the previous keys stay.
//!
//! ```yaml
//! keys:
//!   - id: team-a-ci            # public: logs and the rate limiter's apiKey dimension
//!     sha256: 2bb80d53…         # `printf %s "$KEY" | sha256sum`
//!     user: ci-bot
//!     account: team-a
//!     scopes: [orders:read]
//! ```
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde::Deserialize;

use super::{KeyStore, Lookup};
use crate::identity::{Digest, Identity};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(default)]
    keys: Vec<KeyEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    id: String,
    sha256: String,
    user: String,
    #[serde(default)]
    account: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    claims: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FileStoreError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Digests indexed by their first 8 bytes; the full digest is compared in constant time.
type Index = HashMap<[u8; 8], Vec<(Digest, Arc<Identity>)>>;

pub struct FileStore {
    path: PathBuf,
    /// The text last loaded: a reloader compares against it, so an edit made between
    /// `load` and `spawn_reloader` is not missed.
    loaded: String,
    index: RwLock<Arc<Index>>,
}

impl FileStore {
    pub fn load(path: &Path) -> Result<FileStore, FileStoreError> {
        let text = read(path)?;
        Ok(FileStore {
            path: path.to_path_buf(),
            index: RwLock::new(Arc::new(parse(path, &text)?)),
            loaded: text,
        })
    }

    pub fn len(&self) -> usize {
        self.index.read().values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Re-reads the file when its contents change; calls `on_reload` with the outcome.
    pub fn spawn_reloader(
        self: &Arc<Self>,
        every: Duration,
        on_reload: impl Fn(Result<usize, &FileStoreError>) + Send + Sync + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let store = Arc::downgrade(self);
        let path = self.path.clone();
        let mut last = Some(self.loaded.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(store) = store.upgrade() else { return };
                let text = match read(&path) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!(error = %e, "key file unreadable; keeping the loaded keys");
                        continue;
                    }
                };
                if last.as_ref() == Some(&text) {
                    continue;
                }
                match parse(&path, &text) {
                    Ok(index) => {
                        *store.index.write() = Arc::new(index);
                        let n = store.len();
                        tracing::info!(path = %path.display(), keys = n, "key file reloaded");
                        on_reload(Ok(n));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "key file invalid; keeping the loaded keys");
                        on_reload(Err(&e));
                    }
                }
                last = Some(text);
            }
        })
    }
}

fn read(path: &Path) -> Result<String, FileStoreError> {
    std::fs::read_to_string(path).map_err(|source| FileStoreError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse(path: &Path, text: &str) -> Result<Index, FileStoreError> {
    let invalid = |message: String| FileStoreError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let file: KeyFile = serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
        .map_err(|e| invalid(format!("{}: {}", e.path(), e.inner())))?;
    let mut index: Index = HashMap::new();
    let mut ids = HashMap::new();
    for (i, k) in file.keys.into_iter().enumerate() {
        let digest = Digest::from_hex(&k.sha256).ok_or_else(|| {
            invalid(format!(
                "keys[{i}].sha256: not a SHA-256 hex digest; write the output of `printf %s \"$KEY\" | sha256sum` (64 hex digits), never the key itself"
            ))
        })?;
        if k.id.is_empty() || k.user.is_empty() {
            return Err(invalid(format!(
                "keys[{i}]: `id` and `user` must not be empty"
            )));
        }
        if let Some(prev) = ids.insert(k.id.clone(), i) {
            return Err(invalid(format!(
                "keys[{i}].id: `{}` is also keys[{prev}].id; ids must be unique",
                k.id
            )));
        }
        let bucket = index.entry(prefix(&digest)).or_default();
        if bucket.iter().any(|(d, _)| d == &digest) {
            return Err(invalid(format!(
                "keys[{i}].sha256: the same key is listed twice"
            )));
        }
        bucket.push((
            digest,
            Arc::new(Identity {
                user: k.user,
                account: k.account,
                scopes: k.scopes,
                key_id: k.id,
                claims: k.claims,
                ..Default::default()
            }),
        ));
    }
    Ok(index)
}

fn prefix(d: &Digest) -> [u8; 8] {
    let mut p = [0u8; 8];
    p.copy_from_slice(&d.0[..8]);
    p
}

impl KeyStore for FileStore {
    fn lookup<'a>(&'a self, _secret: &'a str, digest: Digest) -> Lookup<'a> {
        let index = self.index.read().clone();
        let found = index
            .get(&prefix(&digest))
            .and_then(|b| b.iter().find(|(d, _)| d.ct_eq(&digest)))
            .map(|(_, id)| Identity::clone(id));
        Box::pin(std::future::ready(Ok(found)))
    }

    fn kind(&self) -> &'static str {
        "file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[tokio::test]
    async fn finds_keys_by_digest_only() {
        let d = Digest::of(b"k1").hex();
        let f = file(&format!(
            "keys:\n- {{id: a, sha256: {d}, user: u1, account: acc, scopes: [x, y]}}\n"
        ));
        let s = FileStore::load(f.path()).unwrap();
        let id = s.lookup("k1", Digest::of(b"k1")).await.unwrap().unwrap();
        assert_eq!(
            (id.user.as_str(), id.account.as_str(), id.key_id.as_str()),
            ("u1", "acc", "a")
        );
        assert_eq!(id.scopes, vec!["x", "y"]);
        assert!(s.lookup("k2", Digest::of(b"k2")).await.unwrap().is_none());
    }

    #[test]
    fn bad_files_name_the_field_and_the_fix() {
        let cases = [
            (
                "keys:\n- {id: a, sha256: hunter2, user: u}\n",
                "keys[0].sha256: not a SHA-256",
            ),
            (
                "keys:\n- {id: a, sha256: '', user: u, colour: red}\n",
                "unknown field `colour`",
            ),
            (
                &format!(
                    "keys:\n- {{id: a, sha256: {0}, user: u}}\n- {{id: a, sha256: {1}, user: v}}\n",
                    Digest::of(b"1").hex(),
                    Digest::of(b"2").hex()
                ),
                "keys[1].id: `a` is also keys[0].id",
            ),
            (
                &format!(
                    "keys:\n- {{id: a, sha256: {0}, user: u}}\n- {{id: b, sha256: {0}, user: v}}\n",
                    Digest::of(b"1").hex()
                ),
                "listed twice",
            ),
        ];
        for (text, want) in cases {
            let f = file(text);
            let err = FileStore::load(f.path()).err().expect(text).to_string();
            assert!(err.contains(want), "{err} should contain {want}");
        }
    }

    #[tokio::test]
    async fn reload_swaps_keys_and_keeps_them_on_a_bad_edit() {
        let f = file(&format!(
            "keys:\n- {{id: a, sha256: {}, user: u}}\n",
            Digest::of(b"k1").hex()
        ));
        let s = Arc::new(FileStore::load(f.path()).unwrap());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        s.spawn_reloader(Duration::from_millis(20), move |r| {
            let _ = tx.send(r.map_err(|e| e.to_string()));
        });
        std::fs::write(
            f.path(),
            format!(
                "keys:\n- {{id: b, sha256: {}, user: v}}\n",
                Digest::of(b"k2").hex()
            ),
        )
        .unwrap();
        let wait = Duration::from_secs(10);
        let got = tokio::time::timeout(wait, rx.recv())
            .await
            .expect("reloaded");
        assert_eq!(got.unwrap(), Ok(1));
        assert!(
            s.lookup("", Digest::of(b"k1")).await.unwrap().is_none(),
            "revoked"
        );
        assert!(s.lookup("", Digest::of(b"k2")).await.unwrap().is_some());
        std::fs::write(f.path(), "keys: [oops").unwrap();
        let got = tokio::time::timeout(wait, rx.recv())
            .await
            .expect("reload attempted");
        assert!(got.unwrap().is_err());
        assert!(
            s.lookup("", Digest::of(b"k2")).await.unwrap().is_some(),
            "last good kept"
        );
    }
}
