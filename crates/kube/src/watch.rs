//! kube-rs watchers → index. Portcullis kinds are read through `DeserializeGuard`, so
//! an object that does not deserialize becomes an "invalid" entry (logged, its last
//! served version kept) instead of an error that would stall the whole watch. Watch
//! errors are retried with backoff forever; the index keeps what it had meanwhile.
use std::{collections::BTreeSet, fmt::Debug, sync::Arc};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{
    core::v1::{Secret, Service as KubeService},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client, Resource,
    core::DeserializeGuard,
    runtime::{WatchStreamExt, watcher},
};
use portcullis_api::{Host, Route, Service};
use serde::de::DeserializeOwned;
use tokio::sync::watch as tokio_watch;

use crate::{
    endpoints::SERVICE_NAME_LABEL,
    index::{Indexed, NsName, SharedIndex},
};

/// What to watch.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Empty: all namespaces.
    pub namespaces: Vec<String>,
    /// Applies to Routes, Services and Hosts only.
    pub label_selector: String,
}

/// Spawns every watcher. The returned receiver turns true once each has listed once:
/// publishing before that would serve a partial model and drop routes.
pub fn spawn_all(
    client: &Client,
    scope: &Scope,
    index: &Arc<SharedIndex>,
) -> tokio_watch::Receiver<bool> {
    let selected = watcher::Config {
        label_selector: (!scope.label_selector.is_empty()).then(|| scope.label_selector.clone()),
        ..Default::default()
    };
    let slices = watcher::Config::default().labels(SERVICE_NAME_LABEL);
    let mut synced = Vec::new();
    let mut referrers = Vec::new();
    for ns in namespaces(scope) {
        referrers.push(spawn::<DeserializeGuard<Host>>(
            api(client, ns.as_deref()),
            selected.clone(),
            index.clone(),
        ));
        synced.push(spawn::<DeserializeGuard<Route>>(
            api(client, ns.as_deref()),
            selected.clone(),
            index.clone(),
        ));
        referrers.push(spawn::<DeserializeGuard<Service>>(
            api(client, ns.as_deref()),
            selected.clone(),
            index.clone(),
        ));
        synced.push(spawn::<KubeService>(
            api(client, ns.as_deref()),
            watcher::Config::default(),
            index.clone(),
        ));
        synced.push(spawn::<EndpointSlice>(
            api(client, ns.as_deref()),
            slices.clone(),
            index.clone(),
        ));
    }
    // Secrets are listed once Hosts and Services are, so the list keeps every Secret
    // they name; one named later is fetched by `fetch_secrets`.
    let (secrets_tx, secrets_rx) = tokio_watch::channel(false);
    synced.push(secrets_rx);
    let (client2, scope2, index2) = (client.clone(), scope.clone(), index.clone());
    tokio::spawn(async move {
        for mut s in referrers {
            let _ = s.wait_for(|done| *done).await;
        }
        let mut secrets = Vec::new();
        for ns in namespaces(&scope2) {
            secrets.push(spawn::<Secret>(
                api(&client2, ns.as_deref()),
                watcher::Config::default(),
                index2.clone(),
            ));
        }
        for mut s in secrets {
            let _ = s.wait_for(|done| *done).await;
        }
        let _ = secrets_tx.send(true);
        fetch_secrets(client2, index2).await;
    });
    let (tx, rx) = tokio_watch::channel(false);
    tokio::spawn(async move {
        for mut s in synced {
            let _ = s.wait_for(|done| *done).await;
        }
        let _ = tx.send(true);
    });
    rx
}

/// A Host or Service that starts naming an existing Secret after the watcher listed
/// it: the watch dropped that Secret's data (nothing referenced it), so read it once.
/// Later changes to it arrive through the watch.
pub async fn fetch_secrets(client: Client, index: Arc<SharedIndex>) {
    let mut changed = index.changed_rx();
    let mut asked: BTreeSet<NsName> = BTreeSet::new();
    loop {
        let (wanted, present) = {
            let read = index.read();
            (
                read.referenced_secrets(),
                read.secrets.keys().cloned().collect::<BTreeSet<_>>(),
            )
        };
        asked.retain(|k| wanted.contains(k));
        for (ns, name) in wanted.difference(&present) {
            if !asked.insert((ns.clone(), name.clone())) {
                continue;
            }
            let api: Api<Secret> = Api::namespaced(client.clone(), ns);
            match api.get_opt(name).await {
                Ok(Some(secret)) => index.fetched_secret(&secret),
                // Created later: the watch brings it.
                Ok(None) => {}
                Err(e) => {
                    asked.remove(&(ns.clone(), name.clone()));
                    tracing::warn!(secret = %format!("{ns}/{name}"), error = %e, "cannot read Secret; retrying on the next change");
                }
            }
        }
        if changed.changed().await.is_err() {
            return;
        }
    }
}

fn namespaces(scope: &Scope) -> Vec<Option<String>> {
    let listed: Vec<Option<String>> = scope
        .namespaces
        .iter()
        .filter(|n| !n.is_empty())
        .map(|n| Some(n.clone()))
        .collect();
    if listed.is_empty() {
        vec![None]
    } else {
        listed
    }
}

fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// One watcher: events are applied to the index as they come; a relist replaces the
/// kind's entries in one step, so a half-listed state is never reconciled.
fn spawn<K>(
    api: Api<K>,
    config: watcher::Config,
    index: Arc<SharedIndex>,
) -> tokio_watch::Receiver<bool>
where
    K: Indexed + Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    let (synced_tx, synced_rx) = tokio_watch::channel(false);
    tokio::spawn(async move {
        let kind = K::kind(&Default::default()).into_owned();
        let mut relist: Vec<K> = Vec::new();
        let mut events = watcher(api, config)
            .default_backoff()
            .map_ok(|e| e.modify(K::trim))
            .boxed();
        loop {
            match events.try_next().await {
                Ok(Some(event)) => match event {
                    watcher::Event::Init => relist.clear(),
                    watcher::Event::InitApply(o) => relist.push(o),
                    watcher::Event::InitDone => {
                        index.reset(std::mem::take(&mut relist));
                        synced_tx.send_replace(true);
                    }
                    watcher::Event::Apply(o) => index.apply(o),
                    watcher::Event::Delete(o) => index.delete(o),
                },
                Ok(None) => return,
                Err(e) => tracing::warn!(kind, error = %e, "watch error; retrying"),
            }
        }
    });
    synced_rx
}
