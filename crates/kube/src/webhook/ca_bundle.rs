//! Puts our CA into the ValidatingWebhookConfiguration the chart installed, so the
//! API server trusts the certificate made at start.
//!
//! Every replica makes its own CA. Each one *adds* its CA to the bundle (a caBundle may
//! hold several), keeping the newest [`MAX_CAS`], so the API server trusts whichever
//! replica answers; replacing the bundle would leave all but the last replica's
//! webhook failing TLS.
//!
//! A merge patch cannot address one element of the `webhooks` list, so the object is
//! read, every webhook gets the bundle, and the whole list is merge-patched back with
//! the resourceVersion that was read (the API server refuses the patch with 409 if
//! anyone changed the object in between; then we read again). `patch`, not `update`,
//! keeps the RBAC rule at get+patch on one named object.
use k8s_openapi::{ByteString, api::admissionregistration::v1::ValidatingWebhookConfiguration};
use kube::{
    Client,
    api::{Api, Patch, PatchParams},
};

/// CAs kept in a bundle: the replicas running now plus those of a rolling restart.
pub const MAX_CAS: usize = 8;

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";

/// `existing` with `ours` appended (once), oldest dropped beyond `max`.
pub fn merge_bundle(existing: &str, ours: &str, max: usize) -> String {
    let ours = ours.trim();
    let mut certs: Vec<String> = existing
        .split(BEGIN)
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| format!("{BEGIN}{}{c}", if c.starts_with('\n') { "" } else { "\n" }))
        .map(|c| c.trim().to_string())
        .filter(|c| c != ours)
        .collect();
    certs.push(ours.to_string());
    let skip = certs.len().saturating_sub(max.max(1));
    let mut out = certs[skip..].join("\n");
    out.push('\n');
    out
}

/// Adds `ca_pem` to the caBundle of every webhook in `name`.
pub async fn install(client: &Client, name: &str, ca_pem: &str) -> Result<(), kube::Error> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let mut attempt = 0;
    loop {
        let mut config = api.get(name).await?;
        let mut webhooks = config.webhooks.take().unwrap_or_default();
        for webhook in &mut webhooks {
            let existing = webhook
                .client_config
                .ca_bundle
                .as_ref()
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                .unwrap_or_default();
            let merged = merge_bundle(&existing, ca_pem, MAX_CAS);
            webhook.client_config.ca_bundle = Some(ByteString(merged.into_bytes()));
        }
        let body = serde_json::json!({
            "metadata": {"resourceVersion": config.metadata.resource_version},
            "webhooks": webhooks,
        });
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(_) => {
                tracing::info!(
                    name,
                    "caBundle installed in the ValidatingWebhookConfiguration"
                );
                return Ok(());
            }
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < 4 => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(n: u32) -> String {
        format!("{BEGIN}\nMIIB{n}\n-----END CERTIFICATE-----\n")
    }

    #[test]
    fn each_replica_adds_its_ca_once_and_the_oldest_go() {
        let one = merge_bundle("", &cert(1), 3);
        assert_eq!(one, cert(1));
        let two = merge_bundle(&one, &cert(2), 3);
        assert_eq!(two, format!("{}{}", cert(1), cert(2)));
        assert_eq!(
            merge_bundle(&two, &cert(1), 3),
            format!("{}{}", cert(2), cert(1)),
            "re-added moves last, not twice"
        );
        let four = [3, 4]
            .iter()
            .fold(two, |b, n| merge_bundle(&b, &cert(*n), 3));
        assert_eq!(four, format!("{}{}{}", cert(2), cert(3), cert(4)));
    }
}
