//! Sharing [`FleetReport`]s through ConfigMaps in the controller's namespace.
//!
//! Every replica applies `<lease>-xds-<pod>` (server-side apply, owned by its Pod so
//! it is garbage-collected with it) when its Envoys' state changes and on a
//! heartbeat. The lease holder lists them by label and keeps the fresh ones: a report
//! whose resourceVersion has not moved for [`STALE`] by the leader's own clock is from
//! a replica that stopped (or cannot reach the API server), and its Envoys have
//! reconnected elsewhere or will be counted again when it recovers.
use std::{
    collections::BTreeMap,
    future::Future,
    time::{Duration, Instant},
};

use jiff::Timestamp;
use k8s_openapi::{
    api::core::v1::ConfigMap,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::{
    Client,
    api::{Api, ListParams, Patch, PatchParams},
};
use portcullis_xds::Cache;
use tokio::sync::watch;

use crate::fleet::{EnvoyGroup, FleetReport, summarize};

/// Label on every report; its value is the Lease name, so two installations in one
/// namespace do not read each other's reports.
pub const LABEL: &str = "portcullis.dev/xds-report";
const DATA_KEY: &str = "report.json";
/// Reports are rewritten at least this often, changed or not.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// A report not rewritten for this long (leader's clock) is ignored.
pub const STALE: Duration = Duration::from_secs(30);
/// A report whose own timestamp is older than this is ignored even when first seen
/// (a leader that just started cannot know how long it has been unchanged). Generous,
/// because it compares two replicas' clocks.
const STALE_WALL: Duration = Duration::from_secs(120);
/// Bursts of ACKs (a push to many Envoys) become one write.
const DEBOUNCE: Duration = Duration::from_secs(1);
/// How often the leader lists the reports.
pub const READ_EVERY: Duration = Duration::from_secs(3);

#[derive(Clone, Debug)]
pub struct FleetConfig {
    pub namespace: String,
    /// The Lease name: prefix of report names and value of [`LABEL`].
    pub lease_name: String,
    /// This replica (the pod name).
    pub replica: String,
    /// The pod's UID, for the owner reference; empty outside a cluster.
    pub pod_uid: String,
}

impl FleetConfig {
    pub fn configmap_name(&self) -> String {
        format!("{}-xds-{}", self.lease_name, self.replica)
    }
}

pub fn to_configmap(config: &FleetConfig, report: &FleetReport) -> ConfigMap {
    let owner = (!config.pod_uid.is_empty()).then(|| {
        vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: config.replica.clone(),
            uid: config.pod_uid.clone(),
            ..Default::default()
        }]
    });
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(config.configmap_name()),
            namespace: Some(config.namespace.clone()),
            labels: Some([(LABEL.to_owned(), config.lease_name.clone())].into()),
            owner_references: owner,
            ..Default::default()
        },
        data: Some(
            [(
                DATA_KEY.to_owned(),
                serde_json::to_string(report).expect("a report serializes"),
            )]
            .into(),
        ),
        ..Default::default()
    }
}

pub fn from_configmap(cm: &ConfigMap) -> Result<FleetReport, String> {
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(DATA_KEY))
        .ok_or_else(|| format!("no data.{DATA_KEY}"))?;
    serde_json::from_str(text).map_err(|e| format!("data.{DATA_KEY}: {e}"))
}

/// Applies this replica's report.
pub async fn write(
    api: &Api<ConfigMap>,
    config: &FleetConfig,
    report: &FleetReport,
) -> kube::Result<()> {
    let cm = to_configmap(config, report);
    api.patch(
        &config.configmap_name(),
        &PatchParams::apply("portcullis").force(),
        &Patch::Apply(&cm),
    )
    .await
    .map(drop)
}

/// Publishes this replica's Envoys until `stop`: on change (debounced) and on every
/// heartbeat. A failed write is retried at the next change or heartbeat.
pub async fn publish_loop(
    client: Client,
    config: FleetConfig,
    cache: Cache,
    stop: impl Future<Output = ()>,
) {
    let api: Api<ConfigMap> = Api::namespaced(client, &config.namespace);
    let mut changes = cache.status_rx();
    let mut written: Option<(Vec<EnvoyGroup>, Instant)> = None;
    tokio::pin!(stop);
    loop {
        let envoys = summarize(&cache.nodes());
        let due = match &written {
            Some((last, at)) => *last != envoys || at.elapsed() >= HEARTBEAT,
            None => true,
        };
        if due {
            let report = FleetReport {
                replica: config.replica.clone(),
                updated_at: Timestamp::now().to_string(),
                envoys: envoys.clone(),
            };
            written = match write(&api, &config, &report).await {
                Ok(()) => Some((envoys, Instant::now())),
                Err(e) => {
                    tracing::warn!(error = %e, name = config.configmap_name(), "cannot publish the xDS report");
                    None
                }
            };
        }
        let wait = written
            .as_ref()
            .map_or(HEARTBEAT, |(_, at)| HEARTBEAT.saturating_sub(at.elapsed()));
        tokio::select! {
            _ = &mut stop => return,
            Ok(()) = changes.changed() => {
                tokio::time::sleep(DEBOUNCE).await;
                changes.borrow_and_update();
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The leader's view of its peers' reports.
#[derive(Default)]
pub struct Peers {
    /// ConfigMap name → (resourceVersion, when it last changed, report).
    seen: BTreeMap<String, (String, Instant, FleetReport)>,
}

impl Peers {
    /// Takes a fresh listing (noting which reports changed since the last one).
    pub fn ingest(&mut self, items: &[ConfigMap], now: Instant) {
        let mut seen = BTreeMap::new();
        for cm in items {
            let (Some(name), Some(rv)) = (&cm.metadata.name, &cm.metadata.resource_version) else {
                continue;
            };
            let changed_at = match self.seen.remove(name) {
                Some((old_rv, at, _)) if old_rv == *rv => at,
                _ => now,
            };
            match from_configmap(cm) {
                Ok(report) => {
                    seen.insert(name.clone(), (rv.clone(), changed_at, report));
                }
                Err(e) => tracing::warn!(name, error = e, "ignoring an unreadable xDS report"),
            }
        }
        self.seen = seen;
    }

    /// The Envoys of every peer whose report is fresh. `me` is this replica, whose
    /// Envoys the caller has first-hand.
    pub fn envoys(&self, me: &str, now: Instant, wall: Timestamp) -> Vec<EnvoyGroup> {
        let mut envoys = Vec::new();
        for (name, (_, changed_at, report)) in &self.seen {
            if report.replica == me {
                continue;
            }
            let written = report.updated_at.parse::<Timestamp>().ok();
            let wall_age = written.map(|t| wall.duration_since(t).unsigned_abs());
            let fresh =
                now.duration_since(*changed_at) < STALE && wall_age.is_some_and(|a| a < STALE_WALL);
            if fresh {
                envoys.extend(report.envoys.iter().cloned());
            } else {
                tracing::debug!(name, "ignoring a stale xDS report");
            }
        }
        envoys
    }
}

/// While this replica leads, lists the reports every [`READ_EVERY`] and sends its
/// peers' fresh Envoys on `out` (empty while following).
pub async fn read_loop(
    client: Client,
    config: FleetConfig,
    mut leader: watch::Receiver<bool>,
    out: watch::Sender<Vec<EnvoyGroup>>,
    stop: impl Future<Output = ()>,
) {
    let api: Api<ConfigMap> = Api::namespaced(client, &config.namespace);
    let params = ListParams::default().labels(&format!("{LABEL}={}", config.lease_name));
    let mut peers = Peers::default();
    tokio::pin!(stop);
    loop {
        if *leader.borrow_and_update() {
            match api.list(&params).await {
                Ok(list) => peers.ingest(&list.items, Instant::now()),
                // Keep what was read last; the staleness rule retires it in time.
                Err(e) => tracing::warn!(error = %e, "cannot list xDS reports"),
            }
            let envoys = peers.envoys(&config.replica, Instant::now(), Timestamp::now());
            out.send_if_modified(|old| {
                let changed = *old != envoys;
                *old = envoys;
                changed
            });
        } else {
            peers = Peers::default();
            out.send_if_modified(|old| !std::mem::take(old).is_empty());
        }
        tokio::select! {
            _ = &mut stop => return,
            Ok(()) = leader.changed() => {}
            _ = tokio::time::sleep(READ_EVERY) => {}
        }
    }
}

#[cfg(test)]
#[path = "fleet_sync_tests.rs"]
mod tests;
