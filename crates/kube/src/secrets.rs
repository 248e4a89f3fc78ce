//! Secrets in Kubernetes mode: a Host's `spec.tls.secretName` (a `kubernetes.io/tls`
//! Secret in the Host's own namespace) and a Service's `spec.tls.caSecretName` (`ca.crt`)
//! and `clientCertificate.secretName` (`tls.crt`/`tls.key`).
//!
//! Every Secret of the watched namespaces passes through the watcher, but only the
//! ones a Host or Service references are kept, and of those only the keys read here:
//! the controller never holds other Secrets' data. A reference is always resolved in
//! the referring object's namespace (a secret name is a name, never `ns/name`), so a
//! Host can never read another namespace's Secret.
//!
//! Each reconcile checks the referenced material with portcullis-tls; its [`Store`]
//! keeps the last good certificate, so a bad rotation (wrong key, expired, half-written)
//! keeps the previous certificate serving while status says what is wrong.
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use portcullis_api::{Certificates, Host, ObjectKey, Service, certificate::PrivateKey};
use portcullis_tls::{ServiceSource, Store};

pub const TLS_TYPE: &str = "kubernetes.io/tls";
pub const TLS_CRT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
pub const CA_CRT: &str = "ca.crt";
/// Every Secret key the controller reads; the watcher drops the others on arrival.
pub const READ_KEYS: [&str; 3] = [TLS_CRT, TLS_KEY, CA_CRT];

/// The part of a referenced Secret the controller reads. `Debug` leaves the key out.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretData {
    pub type_: String,
    pub crt: Option<String>,
    pub key: Option<PrivateKey>,
    pub ca: Option<String>,
}

impl fmt::Debug for SecretData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretData")
            .field("type", &self.type_)
            .field("tls.crt", &self.crt.as_ref().map(String::len))
            .field("tls.key", &self.key)
            .field("ca.crt", &self.ca.as_ref().map(String::len))
            .finish()
    }
}

impl SecretData {
    pub fn from_secret(secret: &Secret) -> Self {
        let text = |k: &str| {
            let bytes = secret.data.as_ref()?.get(k)?;
            // Not UTF-8 cannot be PEM; an empty value reads as "no certificate".
            Some(String::from_utf8(bytes.0.clone()).unwrap_or_default())
        };
        Self {
            type_: secret.type_.clone().unwrap_or_else(|| "Opaque".into()),
            crt: text(TLS_CRT),
            key: text(TLS_KEY).map(PrivateKey),
            ca: text(CA_CRT),
        }
    }

    /// `(chain, key)` of a `kubernetes.io/tls` Secret.
    fn pair(&self) -> Result<(String, String), String> {
        if self.type_ != TLS_TYPE {
            return Err(format!(
                "is of type {}; a certificate Secret has type {TLS_TYPE} (kubectl create secret tls)",
                self.type_
            ));
        }
        match (&self.crt, &self.key) {
            (Some(c), Some(k)) => Ok((c.clone(), k.0.clone())),
            (None, _) => Err(format!("has no {TLS_CRT}")),
            (_, None) => Err(format!("has no {TLS_KEY}")),
        }
    }
}

/// Secrets a Host references, in its own namespace.
fn host_refs(host: &Host) -> Option<NsName> {
    let name = host.spec.tls.as_ref()?.secret_name.clone()?;
    Some((host.namespace().unwrap_or_default(), name))
}

/// `(ca, client)` Secrets a Service references, in its own namespace.
fn service_refs(svc: &Service) -> (Option<NsName>, Option<NsName>) {
    let Some(tls) = &svc.spec.tls else {
        return (None, None);
    };
    let ns = svc.namespace().unwrap_or_default();
    let ca = tls.ca_secret_name.clone().map(|n| (ns.clone(), n));
    let client = tls
        .client_certificate
        .as_ref()
        .and_then(|c| c.secret_name.clone())
        .map(|n| (ns, n));
    (ca, client)
}

/// `(namespace, name)` of a core object.
pub type NsName = (String, String);

/// Every Secret the Hosts and Services name.
pub fn referenced<'a>(
    hosts: impl IntoIterator<Item = &'a Host>,
    services: impl IntoIterator<Item = &'a Service>,
) -> BTreeSet<NsName> {
    let hosts = hosts.into_iter().filter_map(host_refs);
    let services = services.into_iter().flat_map(|s| {
        let (a, b) = service_refs(s);
        a.into_iter().chain(b)
    });
    hosts.chain(services).collect()
}

/// Keeps `secret` in `secrets` when `referenced`, else forgets it. Returns whether
/// it changed.
pub fn put(
    secrets: &mut BTreeMap<NsName, SecretData>,
    secret: &Secret,
    referenced: &BTreeSet<NsName>,
) -> bool {
    let key = (secret.namespace().unwrap_or_default(), secret.name_any());
    if !referenced.contains(&key) {
        return secrets.remove(&key).is_some();
    }
    // The components' own mTLS material (component_certs.rs) is never a Host's or a
    // Service's certificate, whoever names it: it would let a tenant's Host serve, or a
    // Service present, the identity Portcullis' components trust.
    let component = secret.labels().get(crate::component_certs::MANAGED_LABEL);
    if component.is_some_and(|v| v == "true") {
        tracing::warn!(
            namespace = key.0,
            secret = key.1,
            "a Host or Service names a Portcullis component certificate Secret; refused"
        );
        return secrets.remove(&key).is_some();
    }
    let data = SecretData::from_secret(secret);
    secrets.insert(key, data.clone()) != Some(data)
}

/// Checks every Host's and Service's Secret material as of `now` (unix seconds),
/// keeping the last good one of each in `store`.
pub fn check<'a>(
    store: &mut Store,
    hosts: impl IntoIterator<Item = &'a Host>,
    services: impl IntoIterator<Item = &'a Service>,
    secrets: &BTreeMap<NsName, SecretData>,
    now: i64,
) -> Certificates {
    let mut out = Certificates::new();
    for host in hosts {
        let Some(r) = host_refs(host) else { continue };
        let key = ObjectKey::new("Host", &host.metadata);
        let source = lookup(secrets, &r)
            .and_then(|s| s.pair().map_err(|e| format!("Secret {}/{} {e}", r.0, r.1)));
        let mut state = store.update(&key, &host.spec.hostname, source, now);
        state.problem = state.problem.map(|p| name_secret(p, &r));
        if let Some(p) = &state.problem {
            tracing::warn!(host = %key, problem = p, "certificate refused");
        }
        out.insert(key, state);
    }
    for svc in services {
        let (Some(ca), client) = service_refs(svc) else {
            continue;
        };
        let key = ObjectKey::new("Service", &svc.metadata);
        let ca_pem = lookup(secrets, &ca).and_then(|s| {
            s.ca.clone()
                .ok_or_else(|| format!("Secret {}/{} has no {CA_CRT}", ca.0, ca.1))
        });
        let client_pair = client.as_ref().map(|c| {
            lookup(secrets, c)
                .and_then(|s| s.pair().map_err(|e| format!("Secret {}/{} {e}", c.0, c.1)))
        });
        let source = ServiceSource {
            ca: ca_pem,
            client: client_pair,
        };
        let mut state = store.update_service(&key, source, now);
        state.problem = state.problem.map(|p| {
            p.replace(
                "caFile:",
                &format!("caSecretName (Secret {}/{}):", ca.0, ca.1),
            )
        });
        if let Some(p) = &state.problem {
            tracing::warn!(service = %key, problem = p, "upstream TLS material refused");
        }
        out.insert(key, state);
    }
    store.retain(|k| out.contains_key(k));
    out
}

fn lookup<'a>(
    secrets: &'a BTreeMap<NsName, SecretData>,
    key: &NsName,
) -> Result<&'a SecretData, String> {
    secrets.get(key).ok_or_else(|| {
        format!(
            "Secret {}/{} not found (a Secret in the referring object's namespace)",
            key.0, key.1
        )
    })
}

/// The Store's problems say what is wrong with the certificate; say which Secret.
fn name_secret(problem: String, (ns, name): &NsName) -> String {
    if problem.starts_with("Secret ") {
        problem
    } else {
        format!("Secret {ns}/{name}: {problem}")
    }
}

#[cfg(test)]
#[path = "secrets_tests.rs"]
mod tests;
