//! Leader election over a `coordination.k8s.io/v1` Lease: every replica serves xDS,
//! only the holder writes status. One small loop: read the Lease; create it if
//! missing; renew it if ours; take it over if its holder stopped renewing. Every
//! write carries the resourceVersion that was read, so two replicas racing for the
//! same Lease cannot both win: the loser gets 409 Conflict and stays a follower.
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{
    Client,
    api::{Api, PostParams},
};
use tokio::sync::watch;

use crate::metrics::KubeMetrics;

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// A holder that has not renewed for this long has lost the Lease.
    pub duration: Duration,
    /// How often the holder renews (and followers retry): well under `duration`.
    pub renew_every: Duration,
}

pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    leader: watch::Sender<bool>,
    metrics: KubeMetrics,
}

impl Elector {
    pub fn new(client: Client, config: LeaseConfig, metrics: KubeMetrics) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            leader: watch::Sender::new(false),
            metrics,
        }
    }

    /// True while this replica holds the Lease.
    pub fn leader_rx(&self) -> watch::Receiver<bool> {
        self.leader.subscribe()
    }

    /// One round. Returns whether this replica holds the Lease afterwards; API errors
    /// count as "not holding" (a holder that cannot renew must stop writing before
    /// its Lease expires and someone else starts).
    pub async fn try_acquire_or_renew(&self, now: Timestamp) -> bool {
        let held = match self.round(now).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, lease = %self.config.name, "lease round failed");
                self.metrics.lease_errors.inc();
                false
            }
        };
        self.set_leader(held);
        held
    }

    fn set_leader(&self, held: bool) {
        self.leader.send_if_modified(|l| {
            let changed = *l != held;
            if changed {
                tracing::info!(leader = held, identity = %self.config.identity, "status-writer lease changed hands");
                let role = if held { "leader" } else { "follower" };
                self.metrics
                    .lease_transitions
                    .with_label_values(&[role])
                    .inc();
            }
            *l = held;
            changed
        });
        self.metrics.leader.set(i64::from(held));
    }

    async fn round(&self, now: Timestamp) -> Result<bool, kube::Error> {
        let existing = self.api.get_opt(&self.config.name).await?;
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now, now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().unwrap_or("");
        let ours = holder == self.config.identity;
        let expired = holder.is_empty() || is_expired(&spec, now);
        if !ours && !expired {
            return Ok(false);
        }
        let (acquired, transitions) = if ours {
            (
                spec.acquire_time.map(|t| t.0).unwrap_or(now),
                spec.lease_transitions.unwrap_or(0),
            )
        } else {
            (now, spec.lease_transitions.unwrap_or(0) + 1)
        };
        // `lease` still has the resourceVersion we read: the PUT fails with 409 if
        // anyone wrote the Lease in between.
        lease.spec = Some(self.spec(acquired, now, transitions));
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (on shutdown), so a peer takes over at once rather than
    /// after it expires. Only if we still hold it, with the resourceVersion check.
    pub async fn release(&self) -> Result<(), kube::Error> {
        self.set_leader(false);
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
        lease.spec = Some(spec);
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Runs rounds until `shutdown` resolves, then releases.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            self.try_acquire_or_renew(Timestamp::now()).await;
            tokio::select! {
                _ = tokio::time::sleep(self.config.renew_every) => {}
                _ = &mut shutdown => break,
            }
        }
        if let Err(e) = self.release().await {
            tracing::warn!(error = %e, "could not release the lease; a peer takes over when it expires");
        }
    }

    fn spec(&self, acquired: Timestamp, now: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.config.duration.as_secs()).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }
}

fn is_expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().map(|t| t.0) else {
        return true;
    };
    let ttl = jiff::SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    renewed
        .checked_add(ttl)
        .map(|deadline| deadline <= now)
        .unwrap_or(true)
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
