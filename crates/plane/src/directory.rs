//! The directory's objects by key, kept from one reload to the next and patched with
//! the files that changed. Building the map from every document (a sort of 12k keys,
//! then the map) was a fifth of a file-mode reload at 10k Routes; a patch touches the
//! keys of the changed files only. The cost: a second copy of the map's nodes (the
//! documents themselves are shared `Arc`s), as the reload hands its copy to reconcile.
use portcullis_api::ObjectKey;

use crate::{files::Loaded, reconcile::Objects};

/// The map the last load gave, when it can be patched.
#[derive(Default)]
pub struct Directory {
    last: Option<Objects>,
}

impl Directory {
    /// The objects of `loaded` by key; of two documents with one key, the first (in
    /// file-name order, then document order) wins and the other is logged.
    /// `loaded` must come from the same `Reader` as the last call's, or follow
    /// [`Directory::forget`].
    pub fn objects(&mut self, loaded: &Loaded) -> Objects {
        if let Some(patched) = self.last.take().and_then(|last| patch(last, loaded)) {
            self.last = Some(patched.clone());
            return patched;
        }
        let (objects, duplicates) = build(loaded);
        // With a key defined twice, which copy a patch would remove is unknown: the
        // next load builds the map again, until the duplicate is gone.
        if !duplicates {
            self.last = Some(objects.clone());
        }
        objects
    }

    /// The next load builds the map whole (the last one could not be read).
    pub fn forget(&mut self) {
        self.last = None;
    }
}

/// Every document's object by key, and whether a key was defined more than once.
pub fn build(loaded: &Loaded) -> (Objects, bool) {
    // Sorted by key, then built in one pass: inserting document by document was a
    // sixth of a reload at 10k Routes. Files hand over runs already in key order,
    // which the stable sort merges; equal keys stay in file order.
    let docs = &loaded.documents;
    let mut order: Vec<usize> = (0..docs.len()).collect();
    order.sort_by(|&a, &b| docs[a].1.cmp(&docs[b].1));
    let mut last: Option<&ObjectKey> = None;
    let mut duplicates = false;
    let objects = order
        .into_iter()
        .filter_map(|i| {
            let (file, key, doc) = &docs[i];
            if last == Some(key) {
                // Only logged: validation sees the first copy alone.
                tracing::warn!(object = %key, file = %file.display(), "object defined more than once; the first copy wins");
                duplicates = true;
                return None;
            }
            last = Some(key);
            Some((key.clone(), doc.clone()))
        })
        .collect();
    (objects, duplicates)
}

/// `last` (the last load's map, built without duplicates) with `loaded`'s edits:
/// every key a changed file held leaves, then what it holds now comes in. `None` when
/// a key comes in twice (a duplicate, or an object moving into a file from one
/// that did not change): [`build`] decides which copy wins.
fn patch(mut last: Objects, loaded: &Loaded) -> Option<Objects> {
    // Without duplicates, each key was in one file only: the file whose `before`
    // names it. All leave first, so an object moving between two changed files is
    // no duplicate.
    for edit in &loaded.edits {
        for key in &edit.before {
            last.remove(key);
        }
    }
    for edit in &loaded.edits {
        for (_, key, doc) in &loaded.documents[edit.after.clone()] {
            // Already there: from a file that did not change, or twice from these.
            if last.insert(key.clone(), doc.clone()).is_some() {
                return None;
            }
        }
    }
    Some(last)
}

#[cfg(test)]
#[path = "directory_tests.rs"]
mod tests;
