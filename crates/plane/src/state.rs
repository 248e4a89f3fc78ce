//! The state file: the last published snapshot plus when each object was first seen,
//! written atomically after every publish and served at once on start, before the
//! source is read, so a restarted control plane hands reconnecting Envoys the routing
//! table they already have instead of an empty one (docs/decisions.md).
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use base64::Engine;
use portcullis_xds::Snapshot;
use serde::{Deserialize, Serialize};

/// First-seen time per object (`Kind namespace/name` → RFC 3339): in file mode this is
/// the "creation time" that decides conflicts, so it must survive restarts.
pub type Created = BTreeMap<String, String>;

#[derive(Serialize, Deserialize)]
struct Stored {
    snapshot: String,
    #[serde(default)]
    created: Created,
}

pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `Ok(None)` when there is no state yet.
    pub fn load(&self) -> anyhow::Result<Option<(Snapshot, Created)>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let stored: Stored = serde_json::from_str(&text)?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(stored.snapshot)?;
        Ok(Some((Snapshot::decode(&bytes)?, stored.created)))
    }

    /// Saves `snapshot` without its SDS secrets: private keys are never written to disk
    /// by Portcullis (Envoy keeps its certificates while the control plane restarts,
    /// and the source provides them again at once).
    pub fn save(&self, snapshot: &Snapshot, created: &Created) -> anyhow::Result<()> {
        use portcullis_xds::type_url::SECRET;
        let kept: Vec<portcullis_xds::Resource> = snapshot
            .type_urls()
            .filter(|t| *t != SECRET)
            .flat_map(|t| snapshot.resources(t).cloned())
            .collect();
        let stored = Stored {
            snapshot: base64::engine::general_purpose::STANDARD
                .encode(Snapshot::new(kept).encode_to_vec()),
            created: created.clone(),
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Write, fsync, rename, fsync the directory: a crash or power loss at any point
        // leaves either the old state file or the new one, never a torn or empty one.
        use std::io::Write;
        let tmp = self.path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec(&stored)?)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateFile::new(dir.path().join("sub/state.json"));
        assert!(state.load().unwrap().is_none());
        let snap = Snapshot::new([portcullis_xds::Resource::new(
            "c",
            envoy_types::util::pack_any(envoy_types::pb::envoy::config::cluster::v3::Cluster {
                name: "c".into(),
                ..Default::default()
            }),
        )]);
        let created: Created =
            [("Route a/b".to_string(), "2026-01-01T00:00:00Z".to_string())].into();
        state.save(&snap, &created).unwrap();
        let (loaded, c) = state.load().unwrap().unwrap();
        assert_eq!(loaded.version(), snap.version());
        assert_eq!(c, created);
        std::fs::write(state.path(), "{").unwrap();
        assert!(state.load().is_err());
    }
}
