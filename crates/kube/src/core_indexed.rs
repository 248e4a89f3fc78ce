//! Core kinds in the index: Kubernetes Services, EndpointSlices (for `serviceRef`) and
//! Secrets (for Hosts' and Services' TLS; only referenced ones are kept).
use std::collections::BTreeSet;

use k8s_openapi::api::{
    core::v1::{Secret, Service as KubeService},
    discovery::v1::EndpointSlice,
};

use crate::index::{Index, Indexed, ns_name};

/// Core Services and EndpointSlices: stored by (namespace, name); every change counts
/// (reconcile is cheap, and unchanged endpoints publish an identical snapshot).
macro_rules! core_indexed {
    ($ty:ty, $field:ident) => {
        impl Indexed for $ty {
            fn apply(mut self, index: &mut Index) -> bool {
                self.metadata.resource_version = None;
                self.metadata.managed_fields = None;
                let key = ns_name(&self);
                index.$field.insert(key, self.clone()).as_ref() != Some(&self)
            }
            fn delete(self, index: &mut Index) -> bool {
                index.$field.remove(&ns_name(&self)).is_some()
            }
            fn keys(index: &Index) -> BTreeSet<String> {
                index
                    .$field
                    .keys()
                    .map(|(n, m)| format!("{n}/{m}"))
                    .collect()
            }
            fn key_of(&self) -> String {
                let (n, m) = ns_name(self);
                format!("{n}/{m}")
            }
            fn remove_key(index: &mut Index, key: &str) -> bool {
                let (n, m) = key.split_once('/').unwrap_or(("", key));
                index.$field.remove(&(n.to_owned(), m.to_owned())).is_some()
            }
        }
    };
}

core_indexed!(KubeService, kube_services);

/// Secrets: kept only while a Host or Service references them (crate::secrets).
impl Indexed for Secret {
    /// Only the keys a certificate is read from, and no annotations (kubectl's
    /// last-applied-configuration holds the whole Secret): a relist buffers every
    /// Secret of the namespace until it ends, Helm releases and tokens included.
    fn trim(&mut self) {
        self.metadata.annotations = None;
        self.metadata.managed_fields = None;
        self.string_data = None;
        if let Some(data) = &mut self.data {
            data.retain(|k, _| crate::secrets::READ_KEYS.contains(&k.as_str()));
        }
    }
    fn apply(self, index: &mut Index) -> bool {
        index.put_secret(&self)
    }
    fn delete(self, index: &mut Index) -> bool {
        index.secrets.remove(&ns_name(&self)).is_some()
    }
    fn keys(index: &Index) -> BTreeSet<String> {
        index
            .secrets
            .keys()
            .map(|(n, m)| format!("{n}/{m}"))
            .collect()
    }
    fn key_of(&self) -> String {
        let (n, m) = ns_name(self);
        format!("{n}/{m}")
    }
    fn remove_key(index: &mut Index, key: &str) -> bool {
        let (n, m) = key.split_once('/').unwrap_or(("", key));
        index
            .secrets
            .remove(&(n.to_owned(), m.to_owned()))
            .is_some()
    }
}
core_indexed!(EndpointSlice, slices);
