//! The in-memory index the watchers fill: Portcullis Routes, Services and Hosts, the
//! objects that failed to deserialize, the core Services and EndpointSlices
//! `serviceRef`s resolve through, and the Secrets Hosts and Services name. Synchronous (behind a `parking_lot::RwLock`), so its logic is
//! tested with plain calls; every change that can alter what is served bumps a
//! `watch` counter the reconcile loop waits on.
//!
//! Status is kept apart from specs: our own status writes come back through the
//! watch, and must not trigger another reconcile.
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use k8s_openapi::api::{
    core::v1::{Secret, Service as KubeService},
    discovery::v1::EndpointSlice,
};
use kube::{ResourceExt, core::DeserializeGuard};
use parking_lot::RwLock;
use portcullis_api::{Document, Host, ObjectKey, ObjectStatus, Route, Service};
use portcullis_plane::reconcile::Objects;
use tokio::sync::watch;

use crate::secrets;

pub use crate::secrets::NsName;

#[derive(Default)]
pub struct Index {
    /// Shared with reconcile's input and the served model: a reconcile takes every
    /// object, and copying 10k Routes for each one cost more than validating them.
    pub routes: BTreeMap<ObjectKey, Arc<Route>>,
    pub services: BTreeMap<ObjectKey, Arc<Service>>,
    pub hosts: BTreeMap<ObjectKey, Arc<Host>>,
    /// Objects whose current version does not deserialize, with serde's message.
    pub invalid: BTreeMap<ObjectKey, String>,
    /// `.status` as last seen on the API server, to write only what changed.
    pub statuses: BTreeMap<ObjectKey, Arc<ObjectStatus>>,
    pub kube_services: BTreeMap<NsName, KubeService>,
    pub slices: BTreeMap<NsName, EndpointSlice>,
    /// The deployment's validation rules (allowed destination ranges), shared by
    /// reconcile and the webhook so both refuse the same objects.
    pub rules: portcullis_api::validate::Rules,
    /// The Secrets Hosts and Services reference, and only those (crate::secrets).
    pub secrets: BTreeMap<NsName, secrets::SecretData>,
    /// Hosts' certificates and Services' upstream TLS material, from their Secrets,
    /// as of the last `refresh_certificates`.
    pub certificates: portcullis_api::Certificates,
    /// The last good certificate of each Host and Service.
    pub(crate) store: portcullis_tls::Store,
    /// [`Index::referenced_secrets`] as of the last Host or Service change: a relist
    /// of many Secrets asks it once per Secret.
    referenced: BTreeSet<NsName>,
    /// `routes`, `services` and `hosts` as one map, kept beside them (a change to
    /// them goes through [`put`] and [`take`]): a reconcile takes a copy, which is
    /// cheaper than building the map from the three (~2 ms of an edit at 10k Routes).
    /// The cost: the map's nodes a second time; the objects are shared.
    all: Objects,
}

/// The index plus its change counter; shared by watchers, reconcile and webhook.
pub struct SharedIndex {
    index: RwLock<Index>,
    changed: watch::Sender<u64>,
}

/// One kind of watched object. `apply` returns whether what is served may change.
pub trait Indexed: Sized {
    fn apply(self, index: &mut Index) -> bool;
    fn delete(self, index: &mut Index) -> bool;
    /// Keys of this kind currently in the index (to drop what a relist no longer has).
    fn keys(index: &Index) -> BTreeSet<String>;
    fn key_of(&self) -> String;
    fn remove_key(index: &mut Index, key: &str) -> bool;
    /// Drops what is never read, as each object arrives (before a relist buffers it).
    fn trim(&mut self) {}
    /// Whether objects of this kind name Secrets (Hosts and Services): only their
    /// changes recompute which Secrets are kept, a walk over every Host and Service
    /// that each Route event (and its status coming back) would otherwise pay.
    const NAMES_SECRETS: bool = false;
}

impl SharedIndex {
    pub fn new() -> Arc<Self> {
        Self::with_rules(portcullis_api::validate::Rules::default())
    }

    pub fn with_rules(rules: portcullis_api::validate::Rules) -> Arc<Self> {
        Arc::new(Self {
            index: RwLock::new(Index {
                rules,
                ..Index::default()
            }),
            changed: watch::Sender::new(0),
        })
    }

    pub fn read(&self) -> parking_lot::RwLockReadGuard<'_, Index> {
        self.index.read()
    }

    /// Wakes whenever something that may change the served model changed.
    pub fn changed_rx(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn apply<K: Indexed>(&self, obj: K) {
        let mut index = self.index.write();
        let changed = obj.apply(&mut index);
        index.prune_secrets_after::<K>();
        drop(index);
        self.notify(changed);
    }

    pub fn delete<K: Indexed>(&self, obj: K) {
        let mut index = self.index.write();
        let changed = obj.delete(&mut index);
        index.prune_secrets_after::<K>();
        drop(index);
        self.notify(changed);
    }

    /// A Secret read with a GET because a Host or Service started naming it after the
    /// watcher had passed it: kept only if still referenced and not already newer
    /// from the watch.
    pub fn fetched_secret(&self, secret: &Secret) {
        let mut index = self.index.write();
        let key = ns_name(secret);
        let changed = !index.secrets.contains_key(&key) && index.put_secret(secret);
        drop(index);
        self.notify(changed);
    }

    /// Checks the referenced Secrets' material as of `now` (see crate::secrets).
    pub fn refresh_certificates(&self, now: i64) {
        self.index.write().refresh_certificates(now);
    }

    /// A relist finished: `objs` is everything of this kind now.
    pub fn reset<K: Indexed>(&self, objs: Vec<K>) {
        let mut index = self.index.write();
        let keep: BTreeSet<String> = objs.iter().map(K::key_of).collect();
        let mut changed = false;
        for gone in K::keys(&index).difference(&keep) {
            changed |= K::remove_key(&mut index, gone);
        }
        for obj in objs {
            changed |= obj.apply(&mut index);
        }
        index.prune_secrets_after::<K>();
        drop(index);
        self.notify(changed);
    }

    fn notify(&self, changed: bool) {
        if changed {
            self.changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// Secrets: only those a Host or Service names are kept (crate::secrets).
impl Index {
    pub fn referenced_secrets(&self) -> BTreeSet<NsName> {
        secrets::referenced(
            self.hosts.values().map(|h| &**h),
            self.services.values().map(|s| &**s),
        )
    }

    /// Keeps `secret` when referenced, else forgets it. Returns whether it changed.
    pub fn put_secret(&mut self, secret: &Secret) -> bool {
        secrets::put(&mut self.secrets, secret, &self.referenced)
    }

    /// After a change to objects of kind `K`: [`Index::prune_secrets`] when that kind
    /// names Secrets ([`Indexed::NAMES_SECRETS`]); other kinds change no reference.
    fn prune_secrets_after<K: Indexed>(&mut self) {
        if K::NAMES_SECRETS {
            self.prune_secrets();
        }
    }

    /// After any change: recomputes what is referenced and drops the data of Secrets
    /// nothing references any more.
    pub fn prune_secrets(&mut self) {
        self.referenced = self.referenced_secrets();
        let keep = &self.referenced;
        self.secrets.retain(|k, _| keep.contains(k));
    }

    /// Checks every Host's and Service's Secret material as of `now` (unix seconds)
    /// into `certificates`, keeping the last good one of each.
    pub fn refresh_certificates(&mut self, now: i64) {
        self.certificates = secrets::check(
            &mut self.store,
            self.hosts.values().map(|h| &**h),
            self.services.values().map(|s| &**s),
            &self.secrets,
            now,
        );
    }
}

impl Index {
    /// Valid objects as reconcile input, and the keys whose current version failed to
    /// deserialize (reconcile keeps their last served version).
    pub fn objects(&self) -> (Objects, BTreeSet<ObjectKey>) {
        let objects = self.all.clone();
        #[cfg(debug_assertions)]
        {
            let collected = self.collected();
            let same = |(k, d): (&ObjectKey, &Document), (ck, cd): (&ObjectKey, &Document)| {
                k == ck
                    && match (d, cd) {
                        (Document::Route(a), Document::Route(b)) => Arc::ptr_eq(a, b),
                        (Document::Service(a), Document::Service(b)) => Arc::ptr_eq(a, b),
                        (Document::Host(a), Document::Host(b)) => Arc::ptr_eq(a, b),
                        _ => false,
                    }
            };
            assert!(
                objects.len() == collected.len()
                    && objects.iter().zip(&collected).all(|(a, b)| same(a, b)),
                "the map of every object differs from the maps by kind"
            );
        }
        (objects, self.invalid.keys().cloned().collect())
    }

    /// The three maps by kind as one, built from them (the debug check above, and tests).
    #[cfg(any(test, debug_assertions))]
    fn collected(&self) -> Objects {
        // Collected, not inserted one by one: a map built from keys in order is built
        // in one pass (the kinds sort Host < Route < Service, each map in key order).
        let hosts = self
            .hosts
            .iter()
            .map(|(k, h)| (k.clone(), Document::Host(h.clone())));
        let routes = self
            .routes
            .iter()
            .map(|(k, r)| (k.clone(), Document::Route(r.clone())));
        let services = self
            .services
            .iter()
            .map(|(k, s)| (k.clone(), Document::Service(s.clone())));
        hosts.chain(routes).chain(services).collect()
    }
}

/// Puts `obj` in its kind's map and in the map of every object.
fn put<K: Portcullis>(index: &mut Index, key: ObjectKey, obj: Arc<K>) {
    index.all.insert(key.clone(), K::document(obj.clone()));
    K::map(index).insert(key, obj);
}

/// Takes `key` out of its kind's map and out of the map of every object; whether it
/// was there.
fn take<K: Portcullis>(index: &mut Index, key: &ObjectKey) -> bool {
    index.all.remove(key);
    K::map(index).remove(key).is_some()
}

pub(crate) fn ns_name<K: kube::Resource>(o: &K) -> NsName {
    (o.namespace().unwrap_or_default(), o.name_any())
}

fn key_string(k: &ObjectKey) -> String {
    format!("{}/{}", k.namespace, k.name)
}

fn split_key(kind: &'static str, s: &str) -> ObjectKey {
    let (ns, name) = s.split_once('/').unwrap_or(("", s));
    ObjectKey {
        kind,
        namespace: ns.into(),
        name: name.into(),
    }
}

/// Route and Service share every rule; only the map differs.
trait Portcullis: kube::Resource<DynamicType = ()> + Clone {
    const KIND: &'static str;
    /// See [`Indexed::NAMES_SECRETS`].
    const NAMES_SECRETS: bool;
    fn map(index: &mut Index) -> &mut BTreeMap<ObjectKey, Arc<Self>>;
    fn map_ref(index: &Index) -> &BTreeMap<ObjectKey, Arc<Self>>;
    fn take_status(&mut self) -> Option<ObjectStatus>;
    /// Same metadata and spec (the CRD types do not derive `PartialEq`).
    fn same(&self, other: &Self) -> bool;
    fn document(obj: Arc<Self>) -> Document;
}

impl Portcullis for Route {
    const KIND: &'static str = "Route";
    const NAMES_SECRETS: bool = false;
    fn document(obj: Arc<Self>) -> Document {
        Document::Route(obj)
    }
    fn same(&self, other: &Self) -> bool {
        self.metadata == other.metadata && self.spec == other.spec
    }
    fn map(index: &mut Index) -> &mut BTreeMap<ObjectKey, Arc<Self>> {
        &mut index.routes
    }
    fn map_ref(index: &Index) -> &BTreeMap<ObjectKey, Arc<Self>> {
        &index.routes
    }
    fn take_status(&mut self) -> Option<ObjectStatus> {
        self.status.take()
    }
}

impl Portcullis for Service {
    const KIND: &'static str = "Service";
    const NAMES_SECRETS: bool = true;
    fn document(obj: Arc<Self>) -> Document {
        Document::Service(obj)
    }
    fn same(&self, other: &Self) -> bool {
        self.metadata == other.metadata && self.spec == other.spec
    }
    fn map(index: &mut Index) -> &mut BTreeMap<ObjectKey, Arc<Self>> {
        &mut index.services
    }
    fn map_ref(index: &Index) -> &BTreeMap<ObjectKey, Arc<Self>> {
        &index.services
    }
    fn take_status(&mut self) -> Option<ObjectStatus> {
        self.status.take()
    }
}

impl Portcullis for Host {
    const KIND: &'static str = "Host";
    const NAMES_SECRETS: bool = true;
    fn document(obj: Arc<Self>) -> Document {
        Document::Host(obj)
    }
    fn same(&self, other: &Self) -> bool {
        self.metadata == other.metadata && self.spec == other.spec
    }
    fn map(index: &mut Index) -> &mut BTreeMap<ObjectKey, Arc<Self>> {
        &mut index.hosts
    }
    fn map_ref(index: &Index) -> &BTreeMap<ObjectKey, Arc<Self>> {
        &index.hosts
    }
    fn take_status(&mut self) -> Option<ObjectStatus> {
        self.status.take()
    }
}

impl<K: Portcullis> Indexed for DeserializeGuard<K> {
    const NAMES_SECRETS: bool = K::NAMES_SECRETS;

    fn apply(self, index: &mut Index) -> bool {
        match self.0 {
            Ok(mut obj) => {
                let key = ObjectKey::new(K::KIND, obj.meta());
                let status = obj.take_status().unwrap_or_default();
                // A repeated status keeps its shared copy, so the status round knows it
                // by pointer (`Controller::status_round`).
                if index.statuses.get(&key).is_none_or(|s| **s != status) {
                    index.statuses.insert(key.clone(), Arc::new(status));
                }
                // Fields the API server bumps on every write (resourceVersion,
                // managedFields) must not count as a change, or our own status
                // writes would loop back into reconciles.
                let meta = obj.meta_mut();
                meta.resource_version = None;
                meta.managed_fields = None;
                let was_invalid = index.invalid.remove(&key).is_some();
                let same = K::map_ref(index).get(&key).is_some_and(|o| o.same(&obj));
                // An unchanged object keeps its shared copy, so what was built from it
                // (encoded virtual hosts) is recognised by pointer.
                if !same {
                    put(index, key, Arc::new(obj));
                }
                was_invalid || !same
            }
            Err(invalid) => {
                let key = ObjectKey::new(K::KIND, &invalid.metadata);
                tracing::warn!(object = %key, error = %invalid.error, "object does not deserialize; skipped (its last served version stays)");
                // Drop the stale valid copy: reconcile's `failed` keeps the last
                // *served* version, which is the right thing to keep.
                take::<K>(index, &key);
                index.invalid.insert(key, invalid.error);
                true
            }
        }
    }

    fn delete(self, index: &mut Index) -> bool {
        let meta = match &self.0 {
            Ok(o) => o.meta().clone(),
            Err(e) => e.metadata.clone(),
        };
        let key = ObjectKey::new(K::KIND, &meta);
        index.statuses.remove(&key);
        let a = take::<K>(index, &key);
        let b = index.invalid.remove(&key).is_some();
        a || b
    }

    fn keys(index: &Index) -> BTreeSet<String> {
        K::map_ref(index)
            .keys()
            .chain(index.invalid.keys().filter(|k| k.kind == K::KIND))
            .map(key_string)
            .collect()
    }

    fn key_of(&self) -> String {
        let meta = match &self.0 {
            Ok(o) => o.meta(),
            Err(e) => &e.metadata,
        };
        key_string(&ObjectKey::new(K::KIND, meta))
    }

    fn remove_key(index: &mut Index, key: &str) -> bool {
        let key = split_key(K::KIND, key);
        index.statuses.remove(&key);
        let a = take::<K>(index, &key);
        let b = index.invalid.remove(&key).is_some();
        a || b
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
