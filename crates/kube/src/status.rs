//! Status conditions: what each Route, Service and Host should say, compared with what the
//! API server has, and the one writer that patches the difference.
//!
//! Only the lease holder computes and enqueues; updates go through a bounded queue to
//! a single writer task, so a burst of changes becomes back-pressure on the reconcile
//! loop rather than a burst of concurrent API requests.
use std::{collections::BTreeMap, sync::Arc};

use kube::{
    Client,
    api::{Api, ApiResource, DynamicObject, Patch, PatchParams},
};
use parking_lot::Mutex;
use portcullis_api::{
    Condition, Host, ObjectKey, ObjectStatus, Route, Service,
    status::types::{PROGRAMMED, RESOLVED_REFS},
    validate::Report,
};
use tokio::sync::{mpsc, watch};

use crate::metrics::KubeMetrics;

/// A status to write to one object.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusUpdate {
    pub key: ObjectKey,
    pub status: ObjectStatus,
}

/// Longest condition message written (metav1.Condition allows 32768 bytes).
const MAX_MESSAGE: usize = 32_000;

/// The conditions an object should carry.
///
/// `programmed`: `None` when the object is not served. `ref_problems`: `serviceRef`s
/// whose Kubernetes Service or port is missing (the Service is still served with its
/// other destinations, so this only flips ResolvedRefs). `previous`: the status on the
/// API server, whose transition times are kept for conditions that did not change.
pub fn desired(
    report: &Report,
    programmed: Option<Condition>,
    ref_problems: &[String],
    previous: &ObjectStatus,
    now: &str,
) -> ObjectStatus {
    let mut conditions = report.conditions();
    if !ref_problems.is_empty()
        && let Some(c) = conditions.iter_mut().find(|c| c.type_ == RESOLVED_REFS)
        && c.is_true()
    {
        // Secrets refused while the last good certificate serves, or serviceRefs
        // without endpoints.
        let reason = if ref_problems.iter().any(|p| p.starts_with("spec.tls")) {
            "InvalidCertificate"
        } else {
            "EndpointsNotFound"
        };
        *c = Condition::new(RESOLVED_REFS, false, reason, ref_problems.join("; "));
    }
    conditions.push(programmed.unwrap_or_else(|| {
        Condition::new(
            PROGRAMMED,
            false,
            "NotServed",
            "not part of the served configuration; see the other conditions",
        )
    }));
    conditions.push(Condition::ready(&conditions));
    for c in &mut conditions {
        // The CRD holds messages to metav1.Condition's 32 KiB; a Route with many
        // problems says the first ones.
        if c.message.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE - 3;
            while !c.message.is_char_boundary(end) {
                end -= 1;
            }
            c.message.truncate(end);
            c.message.push_str("...");
        }
        c.observed_generation = report.generation;
        let before = previous.conditions.iter().find(|p| p.type_ == c.type_);
        c.last_transition_time = match before {
            Some(p) if p.status == c.status => p.last_transition_time.clone(),
            _ => Some(now.to_owned()),
        };
    }
    ObjectStatus {
        observed_generation: report.generation,
        conditions,
    }
}

/// Producer side of the queue. Remembers what it enqueued so an update is not queued
/// again before the watch shows it written.
#[derive(Clone)]
pub struct StatusQueue {
    tx: mpsc::Sender<StatusUpdate>,
    pending: Pending,
}

pub struct StatusWriter {
    rx: mpsc::Receiver<StatusUpdate>,
    pending: Pending,
    metrics: KubeMetrics,
}

/// What is queued and not yet written, mirrored in `portcullis_status_queue_pending`.
#[derive(Clone)]
struct Pending {
    map: Arc<Mutex<BTreeMap<ObjectKey, ObjectStatus>>>,
    metrics: KubeMetrics,
}

impl Pending {
    fn with<R>(&self, f: impl FnOnce(&mut BTreeMap<ObjectKey, ObjectStatus>) -> R) -> R {
        let mut map = self.map.lock();
        let r = f(&mut map);
        self.metrics.status_pending.set(map.len() as i64);
        r
    }
}

pub fn queue(capacity: usize, metrics: KubeMetrics) -> (StatusQueue, StatusWriter) {
    let (tx, rx) = mpsc::channel(capacity);
    let pending = Pending {
        map: Arc::new(Mutex::new(BTreeMap::new())),
        metrics: metrics.clone(),
    };
    (
        StatusQueue {
            tx,
            pending: pending.clone(),
        },
        StatusWriter {
            rx,
            pending,
            metrics,
        },
    )
}

impl StatusQueue {
    /// Enqueues `status` unless the API server (`current`) or the queue already has it.
    /// Waits when the queue is full.
    pub async fn offer(&self, key: ObjectKey, status: ObjectStatus, current: &ObjectStatus) {
        if &status == current {
            self.settled([&key]);
            return;
        }
        let queued = self.pending.with(|pending| {
            if pending.get(&key) == Some(&status) {
                return false;
            }
            pending.insert(key.clone(), status.clone());
            true
        });
        if !queued {
            return;
        }
        // The writer lives as long as the controller; a closed queue means shutdown.
        let _ = self.tx.send(StatusUpdate { key, status }).await;
    }

    /// These objects' status is already what it should be: anything queued for them
    /// is dropped (it would overwrite a newer write).
    pub fn settled<'a>(&self, keys: impl IntoIterator<Item = &'a ObjectKey>) {
        self.pending.with(|pending| {
            for key in keys {
                pending.remove(key);
            }
        });
    }

    /// Forget everything queued (on losing the lease: the next holder recomputes).
    pub fn clear(&self) {
        self.pending.with(|p| p.clear());
    }
}

impl StatusWriter {
    /// Takes one queued update without writing it (tests and the benchmark, which have
    /// no API server, read the queue this way).
    pub fn try_recv(&mut self) -> Result<StatusUpdate, mpsc::error::TryRecvError> {
        self.rx.try_recv()
    }

    /// Writes updates while `leader` is true; drops them otherwise. Ends when every
    /// producer is gone.
    pub async fn run_owned(
        self,
        client: Client,
        leader: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        self.run(client, leader).await;
        Ok(())
    }

    pub async fn run(mut self, client: Client, leader: watch::Receiver<bool>) {
        while let Some(update) = self.rx.recv().await {
            let kind = update.key.kind;
            if !*leader.borrow() {
                self.pending.with(|p| p.remove(&update.key));
                self.count(kind, "dropped");
                continue;
            }
            let timer = self.metrics.status_write_seconds.start_timer();
            let written = write(&client, &update).await;
            timer.observe_duration();
            match written {
                Ok(Written::Patched) => self.count(kind, "ok"),
                Ok(Written::Gone) => {
                    // No watch event will show it written: forget it here.
                    self.pending.with(|p| p.remove(&update.key));
                    self.count(kind, "not_found");
                }
                Err(e) => {
                    // Not retried here: the next status round sees the old status and
                    // enqueues it again.
                    tracing::warn!(object = %update.key, error = %e, "status write failed");
                    self.pending.with(|p| p.remove(&update.key));
                    self.count(kind, "error");
                }
            }
        }
    }

    fn count(&self, kind: &str, result: &str) {
        let kind = match kind {
            "Route" => "Route",
            "Host" => "Host",
            _ => "Service",
        };
        self.metrics
            .status_writes
            .with_label_values(&[kind, result])
            .inc();
    }
}

/// What a status write found.
#[derive(Debug, PartialEq)]
pub enum Written {
    Patched,
    /// The object was deleted since: nothing to report on.
    Gone,
}

/// Merge patch of `.status` through the status subresource. A merge patch replaces
/// the whole `conditions` list, which is what we want: we own every condition.
pub async fn write(client: &Client, update: &StatusUpdate) -> Result<Written, kube::Error> {
    let resource = match update.key.kind {
        "Route" => ApiResource::erase::<Route>(&()),
        "Host" => ApiResource::erase::<Host>(&()),
        _ => ApiResource::erase::<Service>(&()),
    };
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &update.key.namespace, &resource);
    let body = serde_json::json!({ "status": update.status });
    match api
        .patch_status(
            &update.key.name,
            &PatchParams::default(),
            &Patch::Merge(&body),
        )
        .await
    {
        Ok(_) => Ok(Written::Patched),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(Written::Gone),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
