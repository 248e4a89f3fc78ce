//! Where file-based limits come from and how changes are noticed: one file
//! (`--config-file`), or envoyproxy/ratelimit's runtime directory,
//! `RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/RUNTIME_APPDIRECTORY/**`.
//!
//! Changes are found by polling a cheap fingerprint (the resolved directory and each
//! file's size, modification time and inode), so every way of updating works the same:
//! swapping the `RUNTIME_ROOT` symlink (envoyproxy's default, `RUNTIME_WATCH_ROOT`),
//! editing files in place, and Kubernetes ConfigMap volumes, whose `..data` symlink is
//! swapped atomically. Files are read from the resolved target of those symlinks, so
//! one load never mixes files from before and after a swap.
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::file_limits::ConfigFile;

/// Bounds on what one load reads.
const MAX_FILES: usize = 1000;
const MAX_FILE_BYTES: u64 = 4 << 20;
const MAX_TOTAL_BYTES: u64 = 32 << 20;
const MAX_DEPTH: usize = 16;

/// envoyproxy's runtime directory settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeDir {
    pub root: PathBuf,
    pub subdirectory: PathBuf,
    pub app_directory: PathBuf,
    /// `RUNTIME_IGNOREDOTFILES`: skip files and directories named `.*`. Names starting
    /// with `..` (Kubernetes' volume internals) are always skipped.
    pub ignore_dotfiles: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSource {
    File(PathBuf),
    Runtime(RuntimeDir),
}

/// What changes when any file of the source changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(Vec<(PathBuf, u64, i64, i64, u64)>);

impl FileSource {
    pub fn describe(&self) -> String {
        match self {
            FileSource::File(p) => p.display().to_string(),
            FileSource::Runtime(r) => r.app_path().display().to_string(),
        }
    }

    /// The files as of now, read consistently.
    pub fn read(&self) -> anyhow::Result<Vec<ConfigFile>> {
        match self {
            FileSource::File(p) => {
                check_size(p)?;
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                Ok(vec![ConfigFile {
                    name: p.display().to_string(),
                    text,
                }])
            }
            FileSource::Runtime(r) => r.read(),
        }
    }

    pub fn fingerprint(&self) -> anyhow::Result<Fingerprint> {
        match self {
            FileSource::File(p) => {
                let resolved = std::fs::canonicalize(p)
                    .with_context(|| format!("{} does not exist", p.display()))?;
                Ok(Fingerprint(vec![stamp(&resolved)?]))
            }
            FileSource::Runtime(r) => {
                let dir = r.resolved()?;
                let mut stamps = vec![(dir.clone(), 0, 0, 0, 0)];
                for (_, path) in r.list(&dir)? {
                    stamps.push(stamp(&path)?);
                }
                Ok(Fingerprint(stamps))
            }
        }
    }
}

fn stamp(path: &Path) -> anyhow::Result<(PathBuf, u64, i64, i64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    Ok((
        path.to_path_buf(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ino(),
    ))
}

fn check_size(path: &Path) -> anyhow::Result<u64> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("{} does not exist", path.display()))?
        .len();
    if len > MAX_FILE_BYTES {
        bail!(
            "{} is {len} bytes, more than the {MAX_FILE_BYTES} a configuration file may have",
            path.display()
        );
    }
    Ok(len)
}

impl RuntimeDir {
    /// `root/subdirectory/app_directory`, as configured.
    pub fn app_path(&self) -> PathBuf {
        self.root.join(&self.subdirectory).join(&self.app_directory)
    }

    /// The directory to read now: symlinks resolved, and a Kubernetes `..data`
    /// symlink followed, so a swap in progress cannot mix two versions.
    fn resolved(&self) -> anyhow::Result<PathBuf> {
        let app = self.app_path();
        let dir = std::fs::canonicalize(&app).with_context(|| {
            format!(
                "the runtime directory {} does not exist (RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/RUNTIME_APPDIRECTORY)",
                app.display()
            )
        })?;
        let data = dir.join("..data");
        if std::fs::symlink_metadata(&data).is_ok() {
            return std::fs::canonicalize(&data)
                .with_context(|| format!("following {}", data.display()));
        }
        Ok(dir)
    }

    /// Files under `dir` as (name shown in messages, path), sorted by name.
    fn list(&self, dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
        let mut out = Vec::new();
        let prefix = self.app_directory.display().to_string();
        self.walk(dir, &prefix, 0, &mut out)?;
        out.sort();
        Ok(out)
    }

    fn walk(
        &self,
        dir: &Path,
        name: &str,
        depth: usize,
        out: &mut Vec<(String, PathBuf)>,
    ) -> anyhow::Result<()> {
        if depth > MAX_DEPTH {
            bail!(
                "{} is nested more than {MAX_DEPTH} directories deep",
                dir.display()
            );
        }
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name.starts_with("..") || (self.ignore_dotfiles && file_name.starts_with('.')) {
                continue;
            }
            let path = entry.path();
            let shown = format!("{name}/{file_name}");
            let kind = entry.file_type()?;
            if kind.is_dir() {
                self.walk(&path, &shown, depth + 1, out)?;
            } else if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                // Symlinks to files are followed (ConfigMap keys are such links);
                // symlinks to directories are not, so a link loop cannot trap us.
                out.push((shown, path));
                if out.len() > MAX_FILES {
                    bail!(
                        "{} holds more than {MAX_FILES} files",
                        self.app_path().display()
                    );
                }
            }
        }
        Ok(())
    }

    fn read(&self) -> anyhow::Result<Vec<ConfigFile>> {
        // A swap between resolving and reading is noticed by resolving again.
        for _ in 0..3 {
            let dir = self.resolved()?;
            let mut files = Vec::new();
            let mut total = 0;
            for (name, path) in self.list(&dir)? {
                total += check_size(&path)?;
                if total > MAX_TOTAL_BYTES {
                    bail!(
                        "the files of {} hold more than {MAX_TOTAL_BYTES} bytes",
                        self.app_path().display()
                    );
                }
                let text =
                    std::fs::read_to_string(&path).with_context(|| format!("reading {name}"))?;
                files.push(ConfigFile { name, text });
            }
            if self.resolved()? == dir {
                return Ok(files);
            }
        }
        bail!(
            "{} kept changing while being read",
            self.app_path().display()
        )
    }
}

#[cfg(test)]
#[path = "config_source_tests.rs"]
mod tests;
