//! Puts our CA into the ValidatingWebhookConfiguration the chart installed, so the
//! API server trusts the certificate made at start.
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

/// Sets `ca_pem` as the caBundle of every webhook in `name`.
pub async fn install(client: &Client, name: &str, ca_pem: &str) -> Result<(), kube::Error> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let bundle = ByteString(ca_pem.as_bytes().to_vec());
    let mut attempt = 0;
    loop {
        let mut config = api.get(name).await?;
        let mut webhooks = config.webhooks.take().unwrap_or_default();
        for webhook in &mut webhooks {
            webhook.client_config.ca_bundle = Some(bundle.clone());
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
