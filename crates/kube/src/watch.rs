//! kube-rs watchers → index. Portcullis kinds are read through `DeserializeGuard`, so
//! an object that does not deserialize becomes an "invalid" entry (logged, its last
//! served version kept) instead of an error that would stall the whole watch. Watch
//! errors are retried with backoff forever; the index keeps what it had meanwhile.
use std::{fmt::Debug, sync::Arc};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{core::v1::Service as KubeService, discovery::v1::EndpointSlice};
use kube::{
    Api, Client, Resource,
    core::DeserializeGuard,
    runtime::{WatchStreamExt, watcher},
};
use portcullis_api::{Route, Service};
use serde::de::DeserializeOwned;
use tokio::sync::watch as tokio_watch;

use crate::{
    endpoints::SERVICE_NAME_LABEL,
    index::{Indexed, SharedIndex},
};

/// What to watch.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Empty: all namespaces.
    pub namespaces: Vec<String>,
    /// Applies to Routes and Services only.
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
    for ns in namespaces(scope) {
        synced.push(spawn::<DeserializeGuard<Route>>(
            api(client, ns.as_deref()),
            selected.clone(),
            index.clone(),
        ));
        synced.push(spawn::<DeserializeGuard<Service>>(
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
    let (tx, rx) = tokio_watch::channel(false);
    tokio::spawn(async move {
        for mut s in synced {
            let _ = s.wait_for(|done| *done).await;
        }
        let _ = tx.send(true);
    });
    rx
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
        let mut events = watcher(api, config).default_backoff().boxed();
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
