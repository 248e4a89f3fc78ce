//! Keeps what is serving when an edit breaks it: an object whose new version fails
//! (unparseable, invalid, or conflicting) keeps its last served version, and its report
//! still carries the new version's error. Pure; sources call it with what they read.
use std::collections::{BTreeMap, BTreeSet};

use portcullis_api::{
    Certificates, Document, ObjectKey,
    validate::{Issue, Memo, Outcome, Report, Rules, validate_objects},
};

/// The objects a source currently sees, by key.
pub type Objects = BTreeMap<ObjectKey, Document>;

/// Result of one reconcile.
pub struct Reconciled {
    pub outcome: Outcome,
    /// What is being served now; the `last_served` of the next call.
    pub served: Objects,
    /// Objects whose last served version was kept because the new one failed.
    pub kept: BTreeSet<ObjectKey>,
}

impl Reconciled {
    /// Whether the object `report` (one of `outcome.reports`) speaks of is served: its
    /// report says so, or its last served version was kept (its report then carries
    /// the new version's errors). The same as `served.contains_key(&report.key)`,
    /// without comparing keys: the board asks it of every object on every edit.
    pub fn serves(&self, report: &Report) -> bool {
        serves(report, &self.kept, &self.served)
    }
}

/// [`Reconciled::serves`] from a reconcile's `kept` (and `served`, which only debug
/// builds look at, to check that the answer is the one a lookup gives).
pub fn serves(report: &Report, kept: &BTreeSet<ObjectKey>, served: &Objects) -> bool {
    let serves = report.is_served() || kept.contains(&report.key);
    debug_assert_eq!(serves, served.contains_key(&report.key), "{}", report.key);
    serves
}

/// `current`: objects read now. `failed`: keys whose new document did not even parse.
/// `last_served`: the previous call's `served`. `certificates`: the Hosts'
/// certificates as loaded. `rules`: the deployment's rules.
pub fn reconcile(
    current: &Objects,
    failed: &BTreeSet<ObjectKey>,
    last_served: &Objects,
    certificates: &Certificates,
    rules: &Rules,
) -> Reconciled {
    reconcile_with(
        None,
        current.clone(),
        failed,
        last_served,
        certificates,
        rules,
    )
}

/// [`reconcile`], with `memo` carrying single-object reports from one call to the
/// next (both sources keep one: they hand an unchanged object over as the same `Arc`,
/// so an edit checks only the objects it changed). Takes
/// `current` by value: it becomes `served`, and a copy per edit showed at 10k Routes.
pub fn reconcile_with(
    mut memo: Option<&mut Memo>,
    current: Objects,
    failed: &BTreeSet<ObjectKey>,
    last_served: &Objects,
    certificates: &Certificates,
    rules: &Rules,
) -> Reconciled {
    let mut objects = current;
    let mut kept = BTreeSet::new();
    for key in failed {
        if !objects.contains_key(key)
            && let Some(old) = last_served.get(key)
        {
            objects.insert(key.clone(), old.clone());
            kept.insert(key.clone());
        }
    }
    let first = run(memo.as_deref_mut(), &objects, certificates, rules);
    let mut retry = false;
    for report in &first.reports {
        // Unresolved references count too: `old != new` below means this object's own
        // edit broke them (a deleted Service leaves its Routes' specs unchanged).
        let own_fault = !report.is_served();
        if own_fault
            && let (Some(old), Some(new)) = (last_served.get(&report.key), objects.get(&report.key))
            && old != new
        {
            objects.insert(report.key.clone(), old.clone());
            kept.insert(report.key.clone());
            retry = true;
        }
    }
    // Without a retry the first outcome is the answer: moved, not copied (at 10k
    // Routes a copy of the model and reports was a visible part of every edit).
    let (mut outcome, first) = if retry {
        (run(memo, &objects, certificates, rules), Some(first))
    } else {
        (first, None)
    };
    // Validation gives every object one report (the keys of a map are unique), so the
    // objects not served are those whose report says so: no walk pairing each object
    // with its report (a visible part of each edit at 10k Routes).
    debug_assert_eq!(outcome.reports.len(), objects.len());
    let not_served: Vec<ObjectKey> = outcome
        .reports
        .iter()
        .filter(|r| !r.is_served())
        .map(|r| r.key.clone())
        .collect();
    // Usually every object is served: the map is kept, not rebuilt (at 10k Routes
    // rebuilding it was a visible part of each edit).
    let mut served = objects;
    for key in &not_served {
        served.remove(key);
    }
    kept.retain(|k| served.contains_key(k));
    // Reports describe what the user wrote: the failing new version, plus a note.
    for report in &mut outcome.reports {
        if !kept.contains(&report.key) {
            continue;
        }
        if let Some(new) = first.as_ref().and_then(|f| f.report(&report.key)) {
            report.errors = new.errors.clone();
            report.unresolved = new.unresolved.clone();
            report.conflict = new.conflict.clone();
        }
        report.warnings.push(Issue {
            object: report.key.clone(),
            field: "metadata".into(),
            message: "the last accepted version of this object is still being served; fix the error to apply the change".into(),
        });
    }
    Reconciled {
        outcome,
        served,
        kept,
    }
}

fn run(
    memo: Option<&mut Memo>,
    objects: &Objects,
    certificates: &Certificates,
    rules: &Rules,
) -> Outcome {
    let objects = portcullis_api::Objects::from_documents(objects.values());
    match memo {
        Some(memo) => memo.validate(&objects, certificates, rules),
        None => validate_objects(&objects, certificates, rules),
    }
}

#[cfg(test)]
mod tests;
