//! What the control plane shows of each object: `GET /debug/objects` and the
//! console's lists. Rebuilt after every reconcile, from the validation reports.
use std::collections::{BTreeMap, HashMap};

use portcullis_api::{Condition, ObjectKey, validate::Report};
use serde::Serialize;

use crate::walk::Walk;

/// What the last reload found, for logs and `GET /debug/objects`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Board {
    /// Snapshot version published by the last reload.
    pub version: String,
    /// Documents that could not be read: `file: document N (Kind name): field: message`.
    pub file_errors: Vec<String>,
    /// Every object with its conditions.
    pub objects: Vec<ObjectView>,
    /// When each of `file_errors` was first reported (RFC 3339), for the console's
    /// newest-first order.
    #[serde(skip)]
    pub file_errors_since: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ObjectView {
    pub object: String,
    pub served: bool,
    pub conditions: Vec<Condition>,
}

impl ObjectView {
    /// A new view of `report`'s conditions.
    fn new(report: &Report, served: bool) -> ObjectView {
        ObjectView {
            object: report.key.to_string(),
            served,
            conditions: report.conditions(),
        }
    }

    /// Sets the condition of `c`'s type, keeping its transition time when status and
    /// reason are unchanged.
    fn set_condition(&mut self, mut c: Condition, now: &str) {
        match self.conditions.iter_mut().find(|o| o.type_ == c.type_) {
            Some(old) => {
                c.last_transition_time = if old.status == c.status && old.reason == c.reason {
                    old.last_transition_time.clone()
                } else {
                    Some(now.to_string())
                };
                *old = c;
            }
            None => {
                c.last_transition_time = Some(now.to_string());
                self.conditions.push(c);
            }
        }
    }

    /// Stamps `lastTransitionTime` on every condition: kept from `old` when it had the
    /// same condition with the same status and reason (as Kubernetes does), else `now`.
    fn carry_times(&mut self, old: Option<&ObjectView>, now: &str) {
        for c in &mut self.conditions {
            let kept = old.and_then(|o| {
                o.conditions
                    .iter()
                    .find(|p| p.type_ == c.type_ && p.status == c.status && p.reason == c.reason)
                    .and_then(|p| p.last_transition_time.clone())
            });
            c.last_transition_time = Some(kept.unwrap_or_else(|| now.to_string()));
        }
    }

    /// Keeps `old`'s condition of `type_` when this view has none (conditions set after
    /// a reload, like `Programmed`, rather than by it).
    fn keep(&mut self, old: Option<&ObjectView>, type_: Option<&str>) {
        let Some(type_) = type_ else { return };
        if self.conditions.iter().any(|c| c.type_ == type_) {
            return;
        }
        if let Some(c) = old.and_then(|o| o.conditions.iter().find(|c| c.type_ == type_)) {
            self.conditions.push(c.clone());
        }
    }

    /// Not served: the translator panicked on it (`Accepted=False`, `InternalError`).
    fn fail(&mut self, panic: &str) {
        self.served = false;
        let message = portcullis_api::isolate::internal_message("translation", panic);
        for c in &mut self.conditions {
            if c.type_ == portcullis_api::status::types::ACCEPTED {
                *c = Condition {
                    observed_generation: c.observed_generation,
                    ..Condition::new(
                        portcullis_api::status::types::ACCEPTED,
                        false,
                        "InternalError",
                        message.clone(),
                    )
                };
            }
        }
    }
}

/// The views of a board by object name.
fn by_name(objects: &[ObjectView]) -> HashMap<&str, &ObjectView> {
    objects.iter().map(|o| (o.object.as_str(), o)).collect()
}

impl Board {
    /// Stamps `lastTransitionTime` on every condition: kept from `previous` when the
    /// object had the same condition with the same status and reason (as Kubernetes
    /// does), else `now`. File errors keep their first-seen time the same way.
    pub fn carry_over(&mut self, previous: &Board, now: &str) {
        let before = by_name(&previous.objects);
        for view in &mut self.objects {
            view.carry_times(before.get(view.object.as_str()).copied(), now);
        }
        self.carry_file_errors(previous, now);
    }

    /// File errors keep their first-seen time from `previous`, else `now`.
    pub fn carry_file_errors(&mut self, previous: &Board, now: &str) {
        self.file_errors_since = self
            .file_errors
            .iter()
            .map(|e| {
                let since = previous.file_errors_since.get(e).cloned();
                (e.clone(), since.unwrap_or_else(|| now.to_string()))
            })
            .collect();
    }

    /// The views of `reports` (in key order) after a reconcile, made from this board's,
    /// which were made from `before` (the last reconcile's reports, in the same order):
    /// - an object whose report and served state are as last time keeps its view as it
    ///   is, with its transition times and the conditions set since (`set_conditions`);
    /// - any other object gets a new view, `Accepted=False` `InternalError` when `failed`
    ///   names it (the translator panicked on it), its conditions stamped as by
    ///   [`Board::carry_over`], and its old condition of type `keep` kept (one set
    ///   after a reload, like `Programmed`, rather than by it).
    ///
    /// `served` says whether a report's object is served (`Reconciled::serves`); it is
    /// asked once per report, in `reports`' order.
    ///
    /// Leaves this board without objects. At 10k objects a one-object edit so builds
    /// one view instead of all of them, which was most of the controller's reconcile.
    pub fn next_objects(
        &mut self,
        before: &[Report],
        reports: &[Report],
        mut served: impl FnMut(&Report) -> bool,
        failed: &[(ObjectKey, String)],
        keep: Option<&str>,
        now: &str,
    ) -> Vec<ObjectView> {
        let old = std::mem::take(&mut self.objects);
        let failed: HashMap<&ObjectKey, &str> =
            failed.iter().map(|(k, p)| (k, p.as_str())).collect();
        let fresh = |r: &Report, served: bool, old: Option<&ObjectView>| {
            let mut view = ObjectView::new(r, served);
            if let Some(panic) = failed.get(&r.key) {
                view.fail(panic);
            }
            view.carry_times(old, now);
            view.keep(old, keep);
            view
        };
        let mut served = |r: &Report| served(r) && !failed.contains_key(&r.key);
        if old.len() != before.len() {
            // Not made from `before`: nothing to reuse, views paired by name.
            let names = by_name(&old);
            return reports
                .iter()
                .map(|r| fresh(r, served(r), names.get(r.key.to_string().as_str()).copied()))
                .collect();
        }
        let mut old = Walk::new(before.iter().zip(old).map(|(b, v)| (&b.key, (b, v))));
        reports
            .iter()
            .map(|r| {
                let now_served = served(r);
                match old.at(&r.key) {
                    Some((b, view)) if b == r && view.served == now_served => view,
                    Some((_, view)) => fresh(r, now_served, Some(&view)),
                    None => fresh(r, now_served, None),
                }
            })
            .collect()
    }

    /// Sets each object's condition of its type (e.g. `Programmed`, which only the
    /// controller knows), keeping the transition time when status and reason are
    /// unchanged. Objects not on the board are skipped. One pass over the board, as the
    /// lease holder sets a condition on every object after each status round.
    pub fn set_conditions(
        &mut self,
        conditions: impl IntoIterator<Item = (String, Condition)>,
        now: &str,
    ) {
        let found: Vec<(usize, Condition)> = {
            let at: HashMap<&str, usize> = self
                .objects
                .iter()
                .enumerate()
                .map(|(i, o)| (o.object.as_str(), i))
                .collect();
            conditions
                .into_iter()
                .filter_map(|(object, c)| at.get(object.as_str()).map(|&i| (i, c)))
                .collect()
        };
        for (i, c) in found {
            self.objects[i].set_condition(c, now);
        }
    }
}

#[cfg(test)]
#[path = "board_tests.rs"]
mod tests;
