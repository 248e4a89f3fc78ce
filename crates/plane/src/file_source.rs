//! File mode: a directory of manifests, read whole on every change, reconciled against
//! what is serving, and published.
use std::{
    collections::{BTreeSet, HashSet},
    path::{Path, PathBuf},
    sync::Arc,
};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use portcullis_api::{Document, ObjectKey};

use crate::{
    files,
    reconcile::{Objects, reconcile},
    state::Created,
};

pub use crate::board::{Board, ObjectView};

pub struct FileSource {
    dir: PathBuf,
    /// Served on top of the directory's objects, unless it defines the same object
    /// (`portcullis up`'s Host for its demo hostname, with certificates it made).
    pub extra: Vec<Document>,
    /// File mode's validation rules (`require_host_ownership` set by the flag).
    pub rules: portcullis_api::validate::Rules,
    last_served: Objects,
    /// Hosts' certificates from their PEM files.
    pub certificates: crate::certificates::FileCertificates,
    /// First-seen times: the creation time of objects that do not carry one.
    pub created: Created,
}

/// Result of one reload.
pub struct Reloaded {
    pub model: portcullis_api::Model,
    pub board: Board,
}

impl FileSource {
    pub fn new(dir: PathBuf, created: Created) -> Self {
        Self {
            dir,
            extra: Vec::new(),
            rules: portcullis_api::validate::Rules::file_mode(),
            last_served: Objects::new(),
            certificates: Default::default(),
            created,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the directory and reconciles it. Never fails: an unreadable directory is
    /// reported and everything last served stays served.
    pub fn reload(&mut self) -> Reloaded {
        let loaded = match files::load(&self.dir) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot read the config directory; keeping what is served");
                let mut l = files::Loaded::default();
                l.errors.push(files::FileError {
                    file: self.dir.clone(),
                    error: portcullis_api::ParseError {
                        index: 0,
                        key: None,
                        object: None,
                        message: e.to_string(),
                    },
                });
                // Unattributable failure: keep every object.
                let failed: BTreeSet<ObjectKey> = self.last_served.keys().cloned().collect();
                return self.finish(Objects::new(), failed, &l);
            }
        };
        let mut failed: BTreeSet<ObjectKey> = loaded.failed_keys().cloned().collect();
        // A broken YAML stream hides the objects after the break: keep those from that file.
        let broken: BTreeSet<&Path> = loaded.broken_files().collect();
        let mut current = Objects::new();
        let now = Timestamp::now();
        for (file, doc) in &loaded.documents {
            let mut doc = doc.clone();
            self.stamp(&mut doc, now);
            let key = doc.key();
            if current.contains_key(&key) {
                // Duplicate across files: validation reports it; first copy wins.
                tracing::warn!(object = %key, file = %file.display(), "object defined more than once; the first copy wins");
                continue;
            }
            current.insert(key, doc);
        }
        for mut doc in self.extra.clone() {
            // The directory's own Host for the same hostname takes the extra one's place.
            if let Document::Host(extra) = &doc
                && current.values().any(
                    |d| matches!(d, Document::Host(h) if h.spec.hostname == extra.spec.hostname),
                )
            {
                continue;
            }
            self.stamp(&mut doc, now);
            current.entry(doc.key()).or_insert(doc);
        }
        if !broken.is_empty() {
            failed.extend(
                self.last_served
                    .keys()
                    .filter(|k| !current.contains_key(*k))
                    .cloned(),
            );
        }
        self.finish(current, failed, &loaded)
    }

    fn finish(
        &mut self,
        current: Objects,
        failed: BTreeSet<ObjectKey>,
        loaded: &files::Loaded,
    ) -> Reloaded {
        // Relative certificate paths start at the manifest directory.
        let base = if self.dir.is_file() {
            self.dir.parent().unwrap_or(Path::new(".")).to_path_buf()
        } else {
            self.dir.clone()
        };
        // Hosts read now, and those kept from the last served set (their new version
        // failed to parse) with the files that version named.
        let kept = self
            .last_served
            .iter()
            .filter(|(k, _)| !current.contains_key(*k))
            .map(|(_, d)| d);
        let certificates = self.certificates.load(
            &base,
            current.values().chain(kept),
            Timestamp::now().as_second(),
        );
        let result = reconcile(
            &current,
            &failed,
            &self.last_served,
            &certificates,
            &self.rules,
        );
        for e in &loaded.errors {
            tracing::warn!("{e}");
        }
        for issue in result.outcome.problems() {
            tracing::warn!("{issue}");
        }
        let objects = result
            .outcome
            .reports
            .iter()
            .map(|r| ObjectView {
                object: r.key.to_string(),
                served: result.served.contains_key(&r.key),
                conditions: r.conditions(),
            })
            .collect();
        // First-seen times of objects neither in the files nor served any more go. One
        // set of names, not a scan of every object per entry: that was quadratic, ~5 s
        // per reload at 10k Routes (tens of millions of key strings built).
        let live: HashSet<String> = current
            .keys()
            .chain(result.served.keys())
            .map(ToString::to_string)
            .collect();
        self.created.retain(|k, _| live.contains(k));
        self.last_served = result.served;
        Reloaded {
            model: result.outcome.model,
            board: Board {
                version: String::new(),
                file_errors: loaded.errors.iter().map(ToString::to_string).collect(),
                objects,
                file_errors_since: Default::default(),
            },
        }
    }

    /// Objects from files carry no creation time; the first time the source saw them
    /// stands in, so "older wins" means "registered first", as in Kubernetes.
    fn stamp(&mut self, doc: &mut Document, now: Timestamp) {
        let key = doc.key().to_string();
        // Freshly parsed, so not shared: `make_mut` does not copy.
        let meta = match doc {
            Document::Route(r) => &mut Arc::make_mut(r).metadata,
            Document::Service(s) => &mut Arc::make_mut(s).metadata,
            Document::Host(h) => &mut Arc::make_mut(h).metadata,
        };
        if meta.creation_timestamp.is_some() {
            return;
        }
        let seen = self.created.entry(key).or_insert_with(|| now.to_string());
        let ts = seen.parse::<Timestamp>().unwrap_or(now);
        meta.creation_timestamp = Some(Time(ts));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(ns: &str, name: &str, hostname: &str) -> String {
        format!(
            "---\napiVersion: portcullis.dev/v1alpha1\nkind: Host\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{hostname: {hostname}}}\n"
        )
    }

    fn hosts(source: &mut FileSource) -> Vec<String> {
        source
            .reload()
            .model
            .hosts
            .keys()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn extra_objects_are_served_unless_the_directory_has_the_hostname_or_the_object() {
        let dir = tempfile::tempdir().unwrap();
        let extra = portcullis_api::parse_documents(&host("zz-up", "api", "api.localhost"))
            .remove(0)
            .unwrap();
        let mut source = FileSource::new(dir.path().to_path_buf(), Created::default());
        source.extra = vec![extra];
        std::fs::write(
            dir.path().join("a.yaml"),
            host("shop", "web", "web.localhost"),
        )
        .unwrap();
        assert_eq!(hosts(&mut source), ["Host shop/web", "Host zz-up/api"]);
        // The directory's Host for the same name replaces it (whatever its key).
        std::fs::write(
            dir.path().join("b.yaml"),
            host("team", "mine", "api.localhost"),
        )
        .unwrap();
        assert_eq!(hosts(&mut source), ["Host shop/web", "Host team/mine"]);
    }

    // First-seen times stand in for creation times ("older wins"): each object keeps
    // its own across reloads, and it goes once the object is neither in the files nor
    // served, so a re-created object counts as new.
    #[test]
    fn first_seen_times_stay_while_an_object_exists_and_go_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut source = FileSource::new(dir.path().to_path_buf(), Created::default());
        let both = host("shop", "web", "web.localhost") + &host("shop", "api", "api.localhost");
        std::fs::write(dir.path().join("a.yaml"), &both).unwrap();
        source.reload();
        let first = source.created.clone();
        let names: Vec<&str> = first.keys().map(String::as_str).collect();
        assert_eq!(names, ["Host shop/api", "Host shop/web"]);
        source.reload();
        assert_eq!(source.created, first, "kept across a reload");
        std::fs::write(
            dir.path().join("a.yaml"),
            host("shop", "web", "web.localhost"),
        )
        .unwrap();
        source.reload();
        let names: Vec<&str> = source.created.keys().map(String::as_str).collect();
        assert_eq!(names, ["Host shop/web"], "the deleted Host's time is gone");
        assert_eq!(source.created["Host shop/web"], first["Host shop/web"]);
    }
}
