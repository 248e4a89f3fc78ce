//! One reconcile: index → reconcile (keeps last served versions) → serviceRef
//! expansion → publish; and one status round: reports + Envoy's ACKs → the conditions
//! every object should carry, offered to the status queue.
use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use parking_lot::RwLock;
use portcullis_api::{
    Condition, Document, ObjectKey,
    status::ObjectStatus,
    validate::{Memo, Report},
};
use portcullis_plane::{
    file_source::Board,
    publish::Publisher,
    reconcile::{Objects, reconcile_with},
    state::Created,
    walk::Walk,
};

use crate::{
    endpoints::{self, ServiceEndpoints},
    fleet::EnvoyGroup,
    index::SharedIndex,
    programmed::Programmed,
    status::{StatusQueue, desired},
};

pub struct Controller {
    pub index: Arc<SharedIndex>,
    pub publisher: Publisher,
    /// Shown at `/debug/objects`.
    pub board: Arc<RwLock<Board>>,
    /// The model last published, for `explain`.
    pub model: Arc<RwLock<Arc<portcullis_api::Model>>>,
    /// Set after the first publish (the readiness probe).
    pub ready: Arc<AtomicBool>,
    programmed: Programmed,
    last_served: Objects,
    /// Single-object reports by object: the index hands unchanged objects over as the
    /// same `Arc`, so an edit checks only what it changed.
    memo: Memo,
    reports: Vec<Report>,
    /// Beside each of `reports`: what the last status round wanted for the object.
    wanted: Vec<Option<Wanted>>,
    ref_problems: BTreeMap<ObjectKey, Vec<String>>,
}

/// An object's desired status and what it was made from besides the object's report
/// (which a reconcile compares before carrying this over). While those are unchanged and
/// the API server holds this status, a status round has nothing to compute or offer:
/// `desired` of a status it made is that status again. At 10k objects, computing every
/// object's conditions was most of each round, and a round follows every ACK.
struct Wanted {
    programmed: Option<Condition>,
    problems: Vec<String>,
    /// The index's shared copy of the API server's status (a repeated status keeps
    /// it), so most rounds compare a pointer, and no status is held twice.
    status: Arc<ObjectStatus>,
}

impl Wanted {
    /// Whether `current` (the API server's copy) is this status.
    fn holds(&mut self, current: &Arc<ObjectStatus>) -> bool {
        if Arc::ptr_eq(&self.status, current) {
            return true;
        }
        let same = *self.status == **current;
        if same {
            self.status = Arc::clone(current);
        }
        same
    }
}

impl Controller {
    pub fn new(index: Arc<SharedIndex>, publisher: Publisher) -> Self {
        Self {
            index,
            publisher,
            board: Arc::default(),
            model: Arc::default(),
            ready: Arc::default(),
            programmed: Programmed::default(),
            last_served: Objects::new(),
            memo: Memo::new(),
            reports: Vec::new(),
            wanted: Vec::new(),
            ref_problems: BTreeMap::new(),
        }
    }

    /// Reconciles what the index holds now and publishes it; returns the version.
    pub fn reconcile(&mut self) -> String {
        // Certificates are checked against the clock (expiry) on every reconcile.
        self.index
            .refresh_certificates(jiff::Timestamp::now().as_second());
        let (objects, failed, invalid, resolved, rules, certificates) = {
            let index = self.index.read();
            let (objects, failed) = index.objects();
            let resolved = endpoints::resolve(
                index.services.values().map(|s| &**s),
                &index.kube_services,
                &index.slices,
            );
            let invalid: Vec<String> = index
                .invalid
                .iter()
                .map(|(k, e)| format!("{k}: {e}"))
                .collect();
            (
                objects,
                failed,
                invalid,
                resolved,
                index.rules.clone(),
                index.certificates.clone(),
            )
        };
        let result = reconcile_with(
            Some(&mut self.memo),
            objects,
            &failed,
            &self.last_served,
            &certificates,
            &rules,
        );
        let model = endpoints::expand(&result.outcome.model, &resolved);
        // Kubernetes stamps creationTimestamp, so no first-seen times are needed.
        let published = self.publisher.publish(&model, &Created::default());
        *self.model.write() = Arc::new(model);
        let version = published.version;
        self.programmed
            .record(&result.outcome.model, &self.publisher.cache.snapshot());
        self.ref_problems = ref_problems(&result.served, &resolved);
        tls_problems(&result.served, &certificates, &mut self.ref_problems);
        for issue in result.outcome.problems() {
            tracing::debug!("{issue}");
        }
        {
            // Held while the next board is made from it, so no reader sees it half-made.
            let mut shown = self.board.write();
            let now = portcullis_plane::console::now_rfc3339();
            let objects = shown.next_objects(
                &self.reports,
                &result.outcome.reports,
                |r| result.serves(r),
                &published.failed,
                // Set by the status round, not by a reconcile: kept until it runs again.
                Some(portcullis_api::status::types::PROGRAMMED),
                &now,
            );
            let mut board = Board {
                version: version.clone(),
                file_errors: invalid,
                file_errors_since: Default::default(),
                objects,
            };
            board.carry_file_errors(&shown, &now);
            *shown = board;
        }
        let before = std::mem::replace(&mut self.reports, result.outcome.reports);
        self.last_served = result.served;
        for (key, panic) in &published.failed {
            self.last_served.remove(key);
            if let Some(r) = self.reports.iter_mut().find(|r| &r.key == key) {
                r.internal("translation", panic);
            }
        }
        self.wanted = carried(&before, std::mem::take(&mut self.wanted), &self.reports);
        self.ready.store(true, Ordering::Release);
        tracing::info!(version, objects = self.reports.len(), "published");
        version
    }

    /// Offers every object's desired status; the queue drops what is already written.
    /// `envoys`: those of every replica (this one's and its peers' reports).
    pub async fn status_round(&mut self, envoys: &[EnvoyGroup], queue: &StatusQueue) {
        let now = jiff::Timestamp::now().to_string();
        let none = Arc::new(ObjectStatus::default());
        // Most objects' status is already what it should be: only the others are
        // copied and offered (at 10k objects, copying every status was most of a round).
        let mut offers = Vec::new();
        let mut settled = Vec::with_capacity(self.reports.len());
        let mut programmed_conditions = Vec::new();
        {
            let index = self.index.read();
            // The reports and every map below are in key order (kinds sort Host <
            // Route < Service): each map is walked once beside the reports.
            let mut exists = Walk::new(
                (index.hosts.keys())
                    .chain(index.routes.keys())
                    .chain(index.services.keys())
                    .map(|k| (k, ())),
            );
            let mut statuses = Walk::new(index.statuses.iter());
            let mut served = Walk::new(self.last_served.iter());
            let mut ref_problems = Walk::new(self.ref_problems.iter());
            for (report, last) in self.reports.iter().zip(self.wanted.iter_mut()) {
                // Objects that vanished since the reconcile have nothing to write to.
                if exists.at(&report.key).is_none() {
                    continue;
                }
                let current = statuses.at(&report.key).unwrap_or(&none);
                let programmed = served
                    .at(&report.key)
                    .and_then(|_| self.programmed.condition(&report.key, envoys));
                let problems = ref_problems
                    .at(&report.key)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let same_inputs = last
                    .as_ref()
                    .is_some_and(|w| w.programmed == programmed && w.problems == problems);
                if same_inputs
                    && let Some(w) = last.as_mut()
                    && w.holds(current)
                {
                    settled.push(&report.key);
                    continue;
                }
                // The board keeps `Programmed` across reconciles: set only what changed.
                if !same_inputs && let Some(c) = &programmed {
                    programmed_conditions.push((report.key.to_string(), c.clone()));
                }
                let want = desired(report, programmed.clone(), problems, current, &now);
                // Remembered once the API server holds it: an offered status is not
                // kept (the queue holds it), and the next round computes it again.
                *last = if want == **current {
                    settled.push(&report.key);
                    Some(Wanted {
                        programmed,
                        problems: problems.to_vec(),
                        status: Arc::clone(current),
                    })
                } else {
                    offers.push((report.key.clone(), want, (**current).clone()));
                    None
                };
            }
            queue.settled(settled);
        }
        // The console's Problems list objects some Envoy does not run yet.
        if !programmed_conditions.is_empty() {
            let now = portcullis_plane::console::now_rfc3339();
            self.board
                .write()
                .set_conditions(programmed_conditions, &now);
        }
        for (key, want, current) in offers {
            queue.offer(key, want, &current).await;
        }
    }
}

/// `wanted` (beside `before`) carried over to `reports` for each object whose report
/// is unchanged; `None` for the others. Both lists are in key order.
fn carried(
    before: &[Report],
    wanted: Vec<Option<Wanted>>,
    reports: &[Report],
) -> Vec<Option<Wanted>> {
    let mut old = Walk::new(before.iter().zip(wanted).map(|(b, w)| (&b.key, (b, w))));
    reports
        .iter()
        .map(|r| {
            old.at(&r.key)
                .and_then(|(b, w)| if b == r { w } else { None })
        })
        .collect()
}

/// `serviceRef`s of served Services that resolve to nothing, per Service.
fn ref_problems(served: &Objects, resolved: &ServiceEndpoints) -> BTreeMap<ObjectKey, Vec<String>> {
    let mut out: BTreeMap<ObjectKey, Vec<String>> = BTreeMap::new();
    for (key, doc) in served {
        let Document::Service(svc) = doc else {
            continue;
        };
        for (i, d) in svc.spec.destinations.iter().enumerate() {
            let Some(r) = &d.service_ref else { continue };
            let problem = match resolved.get(&(key.namespace.to_string(), r.name.clone(), r.port)) {
                Some(Ok(a)) if !a.is_empty() => continue,
                Some(Ok(_)) => format!(
                    "Kubernetes Service {}/{} port {} has no ready endpoints",
                    key.namespace, r.name, r.port
                ),
                Some(Err(e)) => e.clone(),
                None => "not resolved yet".into(),
            };
            out.entry(key.clone())
                .or_default()
                .push(format!("spec.destinations[{i}].serviceRef: {problem}"));
        }
    }
    out
}

/// Served Hosts and Services whose current Secret is refused while the last good
/// material keeps serving: ResolvedRefs=False says so (the served object stays).
fn tls_problems(
    served: &Objects,
    certificates: &portcullis_api::Certificates,
    out: &mut BTreeMap<ObjectKey, Vec<String>>,
) {
    // Walks the few objects with TLS material, not every served object (a lookup per
    // served object was a visible part of each edit at 10k Routes).
    for (key, state) in certificates {
        let Some(problem) = &state.problem else {
            continue;
        };
        if !served.contains_key(key) {
            continue;
        }
        out.entry(key.clone()).or_default().push(format!(
            "spec.tls: {key}: {problem}; the previous certificate keeps serving"
        ));
    }
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
