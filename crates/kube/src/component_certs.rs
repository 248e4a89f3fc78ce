//! Certificates for mTLS between Portcullis components when the chart does not use
//! cert-manager: the controller keeps a private CA in a Secret it owns and issues one
//! `kubernetes.io/tls` Secret per component (`tls.crt`, `tls.key`, `ca.crt`), which the
//! component's pod mounts. It issues its own xDS serving certificate into a private
//! directory (its pod cannot mount a Secret it has yet to make).
//!
//! Every replica runs this. Creations race harmlessly (409: the other replica's stands)
//! and replacements carry the resourceVersion they read, so two replicas never
//! overwrite each other's fresh certificate. A Secret of the same name that Portcullis
//! did not make is never touched.
use std::{collections::BTreeMap, path::Path, time::Duration};

use anyhow::{Context, bail};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use portcullis_tls::mtls::generate::{Files, Issued, LocalCa, renewal_reason, write_dir};
use serde::Deserialize;

/// Label on every Secret this module makes; one without it is not ours to replace.
pub const MANAGED_LABEL: &str = "portcullis.dev/component-certificate";
/// Annotation with the names a leaf was issued for, so a changed plan re-issues it.
const ISSUED_FOR: &str = "portcullis.dev/issued-for";
/// How long a component certificate is valid; renewed with a third of it left.
pub const LEAF_LIFETIME: Duration = Duration::from_secs(90 * 86_400);
/// The CA's lifetime. Replacing it is manual (delete the Secret; see docs/tls.md).
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);
/// How often the Secrets are checked for renewal.
pub const CHECK_EVERY: Duration = Duration::from_secs(3600);
/// Most leaves and names one plan may hold (the plan comes from the chart, but a typo
/// should not make thousands of Secrets).
const MAX_LEAVES: usize = 16;
const MAX_NAMES: usize = 16;

/// What to issue (`--component-certs`, JSON; the chart renders it).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Plan {
    /// The Secret holding the CA certificate and key (`ca.crt`, `ca.key`).
    pub ca_secret: String,
    /// DNS names of the controller's own xDS serving certificate.
    pub xds_dns: Vec<String>,
    /// One `kubernetes.io/tls` Secret per component.
    pub secrets: Vec<Leaf>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Leaf {
    /// The Secret's name, in the controller's namespace.
    pub name: String,
    /// DNS names the component serves under (its Service names).
    #[serde(default)]
    pub dns: Vec<String>,
    /// xDS node ids the component may subscribe as (`prefix*` allowed).
    #[serde(default)]
    pub nodes: Vec<String>,
}

impl Plan {
    pub fn parse(json: &str) -> anyhow::Result<Plan> {
        let plan: Plan = serde_json::from_str(json).context(
            "--component-certs (PORTCULLIS_COMPONENT_CERTS) is not a plan: expected \
             {\"caSecret\": …, \"xdsDns\": […], \"secrets\": [{\"name\": …, \"dns\": […], \"nodes\": […]}]}",
        )?;
        if plan.secrets.len() > MAX_LEAVES {
            bail!(
                "--component-certs: {} secrets, at most {MAX_LEAVES}",
                plan.secrets.len()
            );
        }
        let mut names = vec![plan.ca_secret.as_str()];
        for leaf in &plan.secrets {
            if leaf.dns.len() + leaf.nodes.len() > MAX_NAMES {
                bail!(
                    "--component-certs: secret {:?} has more than {MAX_NAMES} names",
                    leaf.name
                );
            }
            if leaf.dns.is_empty() && leaf.nodes.is_empty() {
                bail!(
                    "--component-certs: secret {:?} names no DNS name and no node; give it `dns` (a server) or `nodes` (an xDS client)",
                    leaf.name
                );
            }
            names.push(&leaf.name);
        }
        if plan.xds_dns.is_empty() {
            bail!(
                "--component-certs: `xdsDns` is empty; give the xDS Service's DNS names (Envoy and ratelimit connect to them)"
            );
        }
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            bail!("--component-certs: secret {:?} is named twice", w[0]);
        }
        Ok(plan)
    }
}

/// What [`ensure_leaf`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Fresh,
    Created,
    Renewed(String),
    /// Another replica wrote it first; theirs stands.
    Raced,
}

fn data(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

fn ours(secret: &Secret) -> bool {
    secret
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.get(MANAGED_LABEL).is_some_and(|v| v == "true"))
}

fn not_ours(name: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "Secret {name:?} exists but Portcullis did not make it (no label {MANAGED_LABEL}=true); \
         delete it, or give the chart another name, so the controller can issue it"
    )
}

fn secret(name: &str, type_: &str, entries: &[(&str, &str)], issued_for: Option<&str>) -> Secret {
    let data = entries
        .iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect::<BTreeMap<_, _>>();
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([
                (MANAGED_LABEL.to_string(), "true".to_string()),
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    "portcullis".to_string(),
                ),
            ])),
            annotations: issued_for
                .map(|f| BTreeMap::from([(ISSUED_FOR.to_string(), f.to_string())])),
            ..Default::default()
        },
        type_: Some(type_.to_string()),
        data: Some(data),
        ..Default::default()
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// The CA in `name`, made and stored when missing.
pub async fn ensure_ca(api: &Api<Secret>, name: &str) -> anyhow::Result<LocalCa> {
    for _ in 0..2 {
        if let Some(found) = api
            .get_opt(name)
            .await
            .with_context(|| format!("reading the CA Secret {name:?}"))?
        {
            if !ours(&found) {
                return Err(not_ours(name));
            }
            let (Some(cert), Some(key)) = (data(&found, "ca.crt"), data(&found, "ca.key")) else {
                bail!(
                    "the CA Secret {name:?} lacks ca.crt or ca.key; delete it and the controller makes a new CA (every component certificate is then issued again)"
                );
            };
            return LocalCa::restore(&cert, &key).map_err(|e| {
                anyhow::anyhow!(
                    "the CA Secret {name:?}: {e}; delete it and the controller makes a new CA"
                )
            });
        }
        let ca = LocalCa::with_validity("portcullis component CA", Some(CA_LIFETIME))
            .context("generating the component CA")?;
        let new = secret(
            name,
            "Opaque",
            &[("ca.crt", &ca.ca_pem()), ("ca.key", &ca.key_pem())],
            None,
        );
        match api.create(&PostParams::default(), &new).await {
            Ok(_) => {
                tracing::info!(secret = name, "made the component CA");
                return Ok(ca);
            }
            // Another replica made it between our read and our create: use theirs.
            Err(e) if is_status(&e, 409) => continue,
            Err(e) => return Err(e).with_context(|| format!("creating the CA Secret {name:?}")),
        }
    }
    bail!("the CA Secret {name:?} kept changing while it was read")
}

fn issued_for(leaf: &Leaf) -> String {
    format!("dns={};nodes={}", leaf.dns.join(","), leaf.nodes.join(","))
}

fn issue(ca: &LocalCa, name: &str, dns: &[String], nodes: &[String]) -> anyhow::Result<Issued> {
    let dns: Vec<&str> = dns.iter().map(String::as_str).collect();
    let nodes: Vec<&str> = nodes.iter().map(String::as_str).collect();
    ca.issue_for(name, &dns, &nodes, Some(LEAF_LIFETIME))
        .with_context(|| format!("issuing the certificate for {name:?}"))
}

/// Makes `leaf`'s Secret, or issues it again when [`renewal_reason`] says so or the
/// names it was issued for changed.
pub async fn ensure_leaf(
    api: &Api<Secret>,
    ca: &LocalCa,
    leaf: &Leaf,
    now: i64,
) -> anyhow::Result<Outcome> {
    let name = leaf.name.as_str();
    let want = issued_for(leaf);
    let found = api
        .get_opt(name)
        .await
        .with_context(|| format!("reading the Secret {name:?}"))?;
    let reason = match &found {
        None => None,
        Some(s) if !ours(s) => return Err(not_ours(name)),
        Some(s) => {
            let had = s
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ISSUED_FOR));
            let reason = match data(s, "tls.crt") {
                None => Some("it has no tls.crt".to_string()),
                Some(_) if had != Some(&want) => Some(format!("its names changed to {want}")),
                Some(cert) => renewal_reason(&cert, &ca.ca_pem(), now),
            };
            match reason {
                None => return Ok(Outcome::Fresh),
                some => some,
            }
        }
    };
    let issued = issue(ca, name, &leaf.dns, &leaf.nodes)?;
    let mut new = secret(
        name,
        "kubernetes.io/tls",
        &[
            ("tls.crt", &issued.cert_pem),
            ("tls.key", &issued.key_pem),
            ("ca.crt", &ca.ca_pem()),
        ],
        Some(&want),
    );
    let result = match &found {
        None => api.create(&PostParams::default(), &new).await,
        Some(old) => {
            // Replaced only if nobody wrote it since we read it.
            new.metadata.resource_version = old.metadata.resource_version.clone();
            api.replace(name, &PostParams::default(), &new).await
        }
    };
    match result {
        Ok(_) => match reason {
            None => {
                tracing::info!(secret = name, "issued a component certificate");
                Ok(Outcome::Created)
            }
            Some(why) => {
                tracing::info!(secret = name, reason = %why, "issued a component certificate again");
                Ok(Outcome::Renewed(why))
            }
        },
        Err(e) if is_status(&e, 409) => Ok(Outcome::Raced),
        Err(e) => Err(e).with_context(|| format!("writing the Secret {name:?}")),
    }
}

/// The controller's own xDS certificate in `dir` (re-issued when due); its files.
pub fn ensure_own(ca: &LocalCa, plan: &Plan, dir: &Path, now: i64) -> anyhow::Result<Files> {
    let files = Files {
        cert: dir.join("xds.pem"),
        key: dir.join("xds-key.pem"),
        ca: dir.join("ca.pem"),
    };
    let current = std::fs::read_to_string(&files.cert).ok();
    let stored_ca = std::fs::read_to_string(&files.ca).ok();
    let due = match (current, stored_ca) {
        (Some(cert), Some(stored)) if stored == ca.ca_pem() => {
            renewal_reason(&cert, &ca.ca_pem(), now)
        }
        _ => Some("none yet".into()),
    };
    if due.is_some() {
        let issued = issue(ca, "portcullis-xds", &plan.xds_dns, &[])?;
        write_dir(dir, ca, &[("xds", &issued)])
            .with_context(|| format!("writing the xDS certificate into {}", dir.display()))?;
    }
    Ok(files)
}

/// Makes or renews the CA, every component Secret and the own certificate once.
pub async fn round(
    client: &Client,
    namespace: &str,
    plan: &Plan,
    dir: &Path,
) -> anyhow::Result<Files> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let ca = ensure_ca(&api, &plan.ca_secret).await?;
    let now = jiff::Timestamp::now().as_second();
    for leaf in &plan.secrets {
        ensure_leaf(&api, &ca, leaf, now).await?;
    }
    ensure_own(&ca, plan, dir, now)
}

/// Checks every [`CHECK_EVERY`] until `stop`; a failed round is logged and retried
/// sooner. The servers re-read the files on change, the pods' Secret volumes follow.
pub async fn keep(
    client: Client,
    namespace: String,
    plan: Plan,
    dir: std::path::PathBuf,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut wait = CHECK_EVERY;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = match round(&client, &namespace, &plan, &dir).await {
            Ok(_) => CHECK_EVERY,
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "component certificates: retrying in 60 s"
                );
                Duration::from_secs(60)
            }
        };
    }
}

#[cfg(test)]
#[path = "component_certs_tests.rs"]
mod tests;
