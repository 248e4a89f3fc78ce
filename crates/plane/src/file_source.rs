//! File mode: a directory of manifests, read on every change (parsing only the files
//! that changed), reconciled against what is serving, and published.
use std::{
    collections::{BTreeSet, HashSet},
    path::{Path, PathBuf},
    sync::Arc,
};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use portcullis_api::{
    Document, ObjectKey,
    validate::{Memo, Report},
};

use crate::{
    files,
    reconcile::{Objects, reconcile_with},
    state::Created,
    walk::Walk,
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
    /// Objects whose last served version the last reload kept (`Reconciled::kept`).
    kept: BTreeSet<ObjectKey>,
    /// Hosts' certificates from their PEM files.
    pub certificates: crate::certificates::FileCertificates,
    /// First-seen times: the creation time of objects that do not carry one.
    pub created: Created,
    /// The files as last read: an unchanged file is not parsed again, and its objects
    /// are the same `Arc`s, so `memo` reuses their single-object reports.
    reader: crate::reader::Reader,
    /// The directory's objects as the reader's last load gave them, for the next.
    directory: crate::directory::Directory,
    memo: Memo,
    /// The last reload's reports and file errors, for the next board.
    reports: Vec<Report>,
    file_errors: Vec<String>,
    /// The reports the shown board's views were made from (`Board::next_objects`).
    shown: Vec<Report>,
    /// Whether a reload has checked every first-seen time (the first one does).
    pruned: bool,
}

/// Result of one reload.
pub struct Reloaded {
    pub model: portcullis_api::Model,
}

impl FileSource {
    pub fn new(dir: PathBuf, created: Created) -> Self {
        Self {
            dir,
            extra: Vec::new(),
            rules: portcullis_api::validate::Rules::file_mode(),
            last_served: Objects::new(),
            kept: BTreeSet::new(),
            certificates: Default::default(),
            created,
            reader: crate::reader::Reader::by_piece(),
            directory: Default::default(),
            memo: Memo::new(),
            reports: Vec::new(),
            file_errors: Vec::new(),
            shown: Vec::new(),
            pruned: false,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the directory and reconciles it. Never fails: an unreadable directory is
    /// reported and everything last served stays served. The board follows with
    /// [`FileSource::next_board`] once the model is published.
    pub fn reload(&mut self) -> Reloaded {
        let now = Timestamp::now();
        let created = &mut self.created;
        let loaded = match self.reader.load(&self.dir, |doc| stamp(created, doc, now)) {
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
                // Unattributable, as a broken file is: every object served keeps serving.
                self.directory.forget();
                return self.finish(Objects::new(), l);
            }
        };
        let mut current = self.directory.objects(&loaded);
        for mut doc in self.extra.clone() {
            // The directory's own Host for the same hostname takes the extra one's place.
            if let Document::Host(extra) = &doc
                && current.values().any(
                    |d| matches!(d, Document::Host(h) if h.spec.hostname == extra.spec.hostname),
                )
            {
                continue;
            }
            stamp(&mut self.created, &mut doc, now);
            let key = doc.key();
            // The one served before, when identical, so the memo knows it.
            if let Some(old) = self.last_served.get(&key)
                && old.identical(&doc)
            {
                doc = old.clone();
            }
            current.entry(key).or_insert(doc);
        }
        self.finish(current, loaded)
    }

    fn finish(&mut self, current: Objects, loaded: files::Loaded) -> Reloaded {
        // Relative certificate paths start at the manifest directory.
        let base = if self.dir.is_file() {
            self.dir.parent().unwrap_or(Path::new(".")).to_path_buf()
        } else {
            self.dir.clone()
        };
        // Objects served last time that are not in the files now (deleted, or their
        // new version failed to parse). Both in key order: a walk, not a lookup each.
        let left: Vec<(&ObjectKey, &Document)> = {
            let mut now = Walk::new(current.iter());
            let left = self
                .last_served
                .iter()
                .filter(|(k, _)| now.at(*k).is_none());
            left.collect()
        };
        // Objects whose new document failed to parse keep their last version. A broken
        // YAML stream hides the objects after the break, and an unreadable file or
        // directory hides them all: every object served and not read now keeps serving.
        let mut failed: BTreeSet<ObjectKey> = loaded.failed_keys().cloned().collect();
        if loaded.broken_files().next().is_some() {
            failed.extend(left.iter().map(|(k, _)| (*k).clone()));
        }
        // Hosts read now, and those kept from the last served set with the files that
        // version named.
        let certificates = self.certificates.load(
            &base,
            current.values().chain(left.iter().map(|(_, d)| *d)),
            Timestamp::now().as_second(),
        );
        // Objects that may have left both the files and what is served: the first-seen
        // times of those that did go below (a re-created object counts as new). Only
        // these are looked at, not every object: building a name per object for that
        // was a visible part of a reload at 10k Routes. The first reload looks at every
        // time, as a restored state file may hold some of objects long gone.
        let mut gone: Vec<ObjectKey> = left.iter().map(|(k, _)| (*k).clone()).collect();
        // Keys a changed file held (those still read are filtered out below).
        gone.extend(loaded.edits.iter().flat_map(|e| e.before.iter().cloned()));
        gone.extend(self.extra.iter().map(Document::key));
        gone.retain(|k| !current.contains_key(k));
        let every_name = (!self.pruned).then(|| {
            let names = current.keys().map(ToString::to_string);
            names.collect::<HashSet<String>>()
        });
        let result = reconcile_with(
            Some(&mut self.memo),
            current,
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
        match every_name {
            Some(mut live) => {
                live.extend(result.served.keys().map(ToString::to_string));
                self.created.retain(|k, _| live.contains(k));
                self.pruned = true;
            }
            None => {
                for key in gone.iter().filter(|k| !result.served.contains_key(*k)) {
                    self.created.remove(&key.to_string());
                }
            }
        }
        self.last_served = result.served;
        self.kept = result.kept;
        self.reports = result.outcome.reports;
        self.file_errors = loaded.errors.iter().map(ToString::to_string).collect();
        Reloaded {
            model: result.outcome.model,
        }
    }

    /// The board after the last reload, made from `shown` (the board made after the
    /// reload before it, which this leaves without objects): an object whose report
    /// and served state are unchanged keeps its view, so a one-object edit makes one
    /// view, not one per object. `failed`: what the translator left out.
    pub fn next_board(
        &mut self,
        shown: &mut Board,
        version: String,
        failed: &[(ObjectKey, String)],
        now: &str,
    ) -> Board {
        let objects = shown.next_objects(
            &self.shown,
            &self.reports,
            |r| crate::reconcile::serves(r, &self.kept, &self.last_served),
            failed,
            // File mode sets no condition after a reload.
            None,
            now,
        );
        self.shown = std::mem::take(&mut self.reports);
        let mut board = Board {
            version,
            file_errors: self.file_errors.clone(),
            objects,
            file_errors_since: Default::default(),
        };
        board.carry_file_errors(shown, now);
        board
    }
}

/// Objects from files carry no creation time; the first time the source saw them
/// stands in, so "older wins" means "registered first", as in Kubernetes. The same
/// object gets the same time while it exists, as the reader's reuse needs.
fn stamp(created: &mut Created, doc: &mut Document, now: Timestamp) {
    let meta = match doc {
        Document::Route(r) => &r.metadata,
        Document::Service(s) => &s.metadata,
        Document::Host(h) => &h.metadata,
    };
    if meta.creation_timestamp.is_some() {
        return;
    }
    let seen = created
        .entry(doc.key().to_string())
        .or_insert_with(|| now.to_string());
    let ts = seen.parse::<Timestamp>().unwrap_or(now);
    // Freshly parsed documents are not shared, so `make_mut` does not copy them.
    let meta = match doc {
        Document::Route(r) => &mut Arc::make_mut(r).metadata,
        Document::Service(s) => &mut Arc::make_mut(s).metadata,
        Document::Host(h) => &mut Arc::make_mut(h).metadata,
    };
    meta.creation_timestamp = Some(Time(ts));
}

#[cfg(test)]
#[path = "file_source_tests.rs"]
mod tests;
