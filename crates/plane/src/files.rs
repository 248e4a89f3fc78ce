//! The directory source: every `*.yaml`/`*.yml` file under a directory (recursively,
//! skipping dot-files, so Kubernetes ConfigMap mounts with their `..data` links work),
//! parsed document by document.
//!
//! Watching is by polling a cheap fingerprint (paths, sizes, mtimes) rather than inotify:
//! it works the same on every filesystem, including ConfigMap volumes whose atomic
//! symlink swaps inotify watchers tend to miss, and costs one stat per file per tick.
use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use portcullis_api::{Document, ObjectKey, ParseError};

/// One document that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileError {
    pub file: PathBuf,
    pub error: ParseError,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.error)
    }
}

/// A directory read once.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Documents in file-name order, then document order, with their file and key.
    pub documents: Vec<(Arc<Path>, ObjectKey, Document)>,
    pub errors: Vec<FileError>,
    /// Each file read now whose text differs from the last load's (every file, on a
    /// reader's first load), and each file gone or unreadable since: the keys it held
    /// then, and where its documents are in `documents` now. The keys that left the
    /// files are among the `before` keys.
    pub edits: Vec<FileEdit>,
}

/// One file's change between two loads of a `Reader`.
#[derive(Debug, Default)]
pub struct FileEdit {
    /// The keys of the objects it held at the last load (none when it is new).
    pub before: Vec<ObjectKey>,
    /// Its documents in [`Loaded::documents`] now (empty when it is gone).
    pub after: std::ops::Range<usize>,
}

impl Loaded {
    /// Objects that failed to parse (when their key could be read), and files that
    /// failed as a whole: their previously good objects keep serving.
    pub fn failed_keys(&self) -> impl Iterator<Item = &ObjectKey> {
        self.errors.iter().filter_map(|e| e.error.key.as_ref())
    }

    /// Files in which a document could not be attributed to an object (broken YAML).
    pub fn broken_files(&self) -> impl Iterator<Item = &Path> {
        self.errors
            .iter()
            .filter(|e| e.error.key.is_none())
            .map(|e| e.file.as_path())
    }
}

/// Largest manifest file read: Kubernetes caps an object near 1.5 MiB, so a larger
/// file is a mistake (or a YAML bomb), not a config.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

pub(crate) fn read_bounded(file: &Path) -> std::io::Result<String> {
    let size = std::fs::metadata(file)?.len();
    if size > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "{size} bytes, over the {MAX_FILE_BYTES}-byte limit for one manifest file; split it"
        )));
    }
    std::fs::read_to_string(file)
}

/// Manifest files, sorted, so the load order (and first-copy-wins) is deterministic.
pub fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    if dir.is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            let hidden = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What a directory looks like from the outside; changes when any manifest changes.
pub fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    files_fingerprint(manifest_files(dir).unwrap_or_default())
}

/// Size and modification time of each of `files` (missing files count too).
pub fn files_fingerprint(files: Vec<PathBuf>) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    files
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (p, len, modified)
        })
        .collect()
}

/// Polls `fingerprint` every `interval` and calls `on_change` once it has changed and
/// then held still for `settle` (editors write files in several steps).
pub async fn watch<F: PartialEq>(
    fingerprint: impl Fn() -> F,
    interval: Duration,
    settle: Duration,
    mut on_change: impl FnMut(),
) {
    let mut seen = fingerprint();
    loop {
        tokio::time::sleep(interval).await;
        let mut now = fingerprint();
        if now == seen {
            continue;
        }
        // Debounce: wait until two reads `settle` apart agree.
        loop {
            tokio::time::sleep(settle).await;
            let again = fingerprint();
            if again == now {
                break;
            }
            now = again;
        }
        seen = now;
        on_change();
    }
}
