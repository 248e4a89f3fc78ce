use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::core::DeserializeGuard;
use portcullis_api::{
    Host, ObjectKey, ServiceTls,
    host::{HostSpec, HostTls},
    validate::Rules,
};
use portcullis_plane::publish::Publisher;
use portcullis_translate::Options;
use portcullis_xds::{Cache, type_url::SECRET};
use prometheus::Registry;

use crate::{
    controller::Controller,
    fixtures::{expect, meta, mk_service, mock_client},
    index::SharedIndex,
    status::queue,
};

/// A self-signed certificate for `hostname`: (chain, key).
fn issue(hostname: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![hostname.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

fn mk_host(ns: &str, name: &str, hostname: &str, secret: &str) -> Host {
    Host {
        metadata: meta(ns, name, 0),
        spec: HostSpec {
            hostname: hostname.into(),
            tls: Some(HostTls {
                secret_name: Some(secret.into()),
                ..Default::default()
            }),
            allowed_routes: None,
        },
        status: None,
    }
}

fn tls_secret(ns: &str, name: &str, pair: &(String, String)) -> Secret {
    Secret {
        metadata: meta(ns, name, 0),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".into(), ByteString(pair.0.clone().into_bytes())),
            ("tls.key".into(), ByteString(pair.1.clone().into_bytes())),
        ])),
        ..Default::default()
    }
}

fn controller(index: &Arc<SharedIndex>) -> Controller {
    let registry = Registry::new();
    let publisher = Publisher::new(Cache::new(&registry), Options::default(), None, &registry);
    Controller::new(index.clone(), publisher)
}

fn cluster_index() -> Arc<SharedIndex> {
    SharedIndex::with_rules(Rules::cluster(vec![]))
}

/// The SDS Secret the snapshot holds for `host`, as bytes.
fn sds(controller: &Controller, host: &ObjectKey) -> Option<Vec<u8>> {
    let name = portcullis_translate::tls::secret_name(host);
    let snapshot = controller.publisher.cache.snapshot();
    snapshot.get(SECRET, &name).map(|r| r.body.value.clone())
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The first base64 line of a private key: it holds key bytes (a certificate's first
/// lines are shared by every certificate rcgen makes, so certificates compare whole).
fn key_line(pem: &str) -> &str {
    pem.lines().nth(1).unwrap()
}

/// Status conditions offered for `key` in one status round.
async fn conditions_of(c: &mut Controller, key: &ObjectKey) -> Vec<portcullis_api::Condition> {
    let (q, mut writer) = queue(64, crate::metrics::KubeMetrics::unregistered());
    c.status_round(&[], &q).await;
    let mut out = Vec::new();
    while let Ok(u) = writer.try_recv() {
        if &u.key == key {
            out = u.status.conditions;
        }
    }
    out
}

#[tokio::test]
async fn a_host_and_its_secret_reach_the_snapshot_and_a_rotation_replaces_it() {
    let index = cluster_index();
    let first = issue("api.example.com");
    index.apply(DeserializeGuard(Ok(mk_host(
        "team",
        "api",
        "api.example.com",
        "api-tls",
    ))));
    index.apply(tls_secret("team", "api-tls", &first));
    let mut c = controller(&index);
    c.reconcile();
    let key = ObjectKey::new("Host", &meta("team", "api", 0));
    let secret = sds(&c, &key).expect("the SDS secret of the Host");
    assert!(contains(&secret, &first.0), "the first certificate");

    let second = issue("api.example.com");
    index.apply(tls_secret("team", "api-tls", &second));
    c.reconcile();
    let secret = sds(&c, &key).unwrap();
    assert!(contains(&secret, &second.0), "the rotated certificate");
    assert!(!contains(&secret, &first.0));
    let refs = conditions_of(&mut c, &key).await;
    let resolved = refs.iter().find(|c| c.type_ == "ResolvedRefs").unwrap();
    assert!(resolved.is_true(), "{resolved:?}");
}

#[tokio::test]
async fn a_bad_secret_keeps_the_last_good_certificate_and_says_why() {
    let index = cluster_index();
    let good = issue("api.example.com");
    index.apply(DeserializeGuard(Ok(mk_host(
        "team",
        "api",
        "api.example.com",
        "api-tls",
    ))));
    index.apply(tls_secret("team", "api-tls", &good));
    let mut c = controller(&index);
    c.reconcile();
    let key = ObjectKey::new("Host", &meta("team", "api", 0));
    // The wrong key for the certificate, then a certificate for another name.
    let other = issue("api.example.com");
    for (bad, problem) in [
        ((good.0.clone(), other.1.clone()), "does not match"),
        (issue("evil.example.com"), "api.example.com"),
    ] {
        index.apply(tls_secret("team", "api-tls", &bad));
        c.reconcile();
        let secret = sds(&c, &key).expect("still served");
        assert!(contains(&secret, &good.0), "the last good one");
        let conditions = conditions_of(&mut c, &key).await;
        let resolved = conditions
            .iter()
            .find(|c| c.type_ == "ResolvedRefs")
            .unwrap();
        assert_eq!(resolved.status, "False", "{resolved:?}");
        assert_eq!(resolved.reason, "InvalidCertificate");
        assert!(
            resolved.message.contains("Host team/api")
                && resolved.message.contains("Secret team/api-tls")
                && resolved.message.contains(problem),
            "{}",
            resolved.message
        );
        // No key byte in status, in the index's Debug or in the board.
        let status = serde_json::to_string(&conditions).unwrap();
        let debug = format!("{:?}", index.read().secrets);
        let board = serde_json::to_string(&*c.board.read()).unwrap();
        for key_pem in [&good.1, &bad.1] {
            let line = key_line(key_pem);
            assert!(!status.contains(line) && !debug.contains(line) && !board.contains(line));
        }
        assert!(debug.contains("redacted"), "{debug}");
    }
}

#[tokio::test]
async fn a_host_never_reads_another_namespaces_secret() {
    let index = cluster_index();
    let pair = issue("api.example.com");
    // The Secret exists, in namespace `other`; the Host is in `team`.
    index.apply(DeserializeGuard(Ok(mk_host(
        "team",
        "api",
        "api.example.com",
        "api-tls",
    ))));
    index.apply(tls_secret("other", "api-tls", &pair));
    assert!(index.read().secrets.is_empty(), "not referenced: not kept");
    // `ns/name` is not a Secret name: refused by validation.
    index.apply(DeserializeGuard(Ok(mk_host(
        "team",
        "cross",
        "cross.example.com",
        "other/api-tls",
    ))));
    let mut c = controller(&index);
    c.reconcile();
    let api = ObjectKey::new("Host", &meta("team", "api", 0));
    assert!(sds(&c, &api).is_none());
    let conditions = conditions_of(&mut c, &api).await;
    let resolved = conditions
        .iter()
        .find(|c| c.type_ == "ResolvedRefs")
        .unwrap();
    assert!(
        resolved.message.contains("Secret team/api-tls not found"),
        "{}",
        resolved.message
    );
    let cross = ObjectKey::new("Host", &meta("team", "cross", 0));
    let conditions = conditions_of(&mut c, &cross).await;
    let accepted = conditions.iter().find(|c| c.type_ == "Accepted").unwrap();
    assert_eq!(accepted.status, "False");
    assert!(
        accepted.message.contains("spec.tls.secretName"),
        "{}",
        accepted.message
    );
}

#[test]
fn only_referenced_secrets_are_kept_and_forgotten_with_their_host() {
    let index = cluster_index();
    let pair = issue("api.example.com");
    index.apply(tls_secret("team", "unrelated", &pair));
    index.apply(tls_secret("team", "api-tls", &pair));
    assert!(index.read().secrets.is_empty());
    let host = mk_host("team", "api", "api.example.com", "api-tls");
    index.apply(DeserializeGuard(Ok(host.clone())));
    index.apply(tls_secret("team", "api-tls", &pair));
    let kept: Vec<_> = index.read().secrets.keys().cloned().collect();
    assert_eq!(kept, [("team".to_string(), "api-tls".to_string())]);
    index.delete(DeserializeGuard(Ok(host)));
    assert!(index.read().secrets.is_empty(), "dropped with its Host");
}

#[test]
fn a_component_certificate_secret_is_never_a_hosts_even_when_named() {
    // A tenant who can make a Host in the controller's namespace names the Secret the
    // controller issued for its own components: it must not be served.
    let index = cluster_index();
    let pair = issue("api.example.com");
    index.apply(DeserializeGuard(Ok(mk_host(
        "system",
        "api",
        "api.example.com",
        "p-authz-tls",
    ))));
    let mut secret = tls_secret("system", "p-authz-tls", &pair);
    secret.metadata.labels = Some(BTreeMap::from([(
        crate::component_certs::MANAGED_LABEL.into(),
        "true".into(),
    )]));
    index.apply(secret);
    assert!(index.read().secrets.is_empty());
    // The same Secret without the label is an ordinary one, kept.
    index.apply(tls_secret("system", "p-authz-tls", &pair));
    assert_eq!(index.read().secrets.len(), 1);
}

#[tokio::test]
async fn a_service_reads_its_ca_and_client_certificate_from_secrets() {
    let index = cluster_index();
    let ca = issue("ca.internal");
    let client = issue("gateway");
    let mut svc = mk_service("team", "billing");
    svc.spec.destinations[0].address = Some("billing.internal:8443".into());
    svc.spec.tls = Some(ServiceTls {
        ca_secret_name: Some("billing-ca".into()),
        client_certificate: Some(portcullis_api::ClientCertificate {
            secret_name: Some("gateway-client".into()),
            ..Default::default()
        }),
        ..Default::default()
    });
    index.apply(DeserializeGuard(Ok(svc)));
    let mut ca_secret = tls_secret("team", "billing-ca", &ca);
    ca_secret.type_ = Some("Opaque".into());
    ca_secret.data = Some(BTreeMap::from([(
        "ca.crt".into(),
        ByteString(ca.0.clone().into_bytes()),
    )]));
    index.apply(ca_secret);
    index.apply(tls_secret("team", "gateway-client", &client));
    let mut c = controller(&index);
    c.reconcile();
    let key = ObjectKey::service("team", "billing");
    let state = index.read().certificates[&key].clone();
    assert!(state.problem.is_none(), "{:?}", state.problem);
    assert_eq!(state.trusted_ca.unwrap().count, 1);
    assert!(state.serving.is_some());
    let conditions = conditions_of(&mut c, &key).await;
    let accepted = conditions.iter().find(|c| c.type_ == "Accepted").unwrap();
    assert!(accepted.is_true(), "{accepted:?}");

    // A CA Secret without ca.crt: refused, naming the Secret.
    index.apply(tls_secret("team", "billing-ca", &ca));
    c.reconcile();
    let state = index.read().certificates[&key].clone();
    let problem = state.problem.unwrap();
    assert!(
        problem.contains("caSecretName (Secret team/billing-ca)") && problem.contains("ca.crt"),
        "{problem}"
    );
    assert!(state.trusted_ca.is_some(), "the last good bundle stays");
}

#[tokio::test]
async fn a_secret_named_after_the_watch_listed_it_is_read_once() {
    let (client, mut server) = mock_client();
    let index = cluster_index();
    let pair = issue("api.example.com");
    let task = tokio::spawn(crate::watch::fetch_secrets(client, index.clone()));
    index.apply(DeserializeGuard(Ok(mk_host(
        "team",
        "api",
        "api.example.com",
        "api-tls",
    ))));
    let reply = serde_json::to_value(tls_secret("team", "api-tls", &pair)).unwrap();
    expect(
        &mut server,
        "GET",
        "/api/v1/namespaces/team/secrets/api-tls",
        200,
        reply,
    )
    .await;
    let mut changed = index.changed_rx();
    changed
        .wait_for(|_| !index.read().secrets.is_empty())
        .await
        .unwrap();
    index.refresh_certificates(jiff::Timestamp::now().as_second());
    let key = ObjectKey::new("Host", &meta("team", "api", 0));
    assert!(index.read().certificates[&key].serving.is_some());
    task.abort();
}

#[tokio::test]
async fn a_secret_of_the_wrong_type_or_without_a_key_is_refused_naming_it() {
    let index = cluster_index();
    let pair = issue("api.example.com");
    index.apply(DeserializeGuard(Ok(mk_host(
        "team",
        "api",
        "api.example.com",
        "api-tls",
    ))));
    let key = ObjectKey::new("Host", &meta("team", "api", 0));
    let mut opaque = tls_secret("team", "api-tls", &pair);
    opaque.type_ = Some("Opaque".into());
    let mut no_key = tls_secret("team", "api-tls", &pair);
    no_key.data.as_mut().unwrap().remove("tls.key");
    let mut not_utf8 = tls_secret("team", "api-tls", &pair);
    not_utf8
        .data
        .as_mut()
        .unwrap()
        .insert("tls.crt".into(), ByteString(vec![0xff; 4096]));
    for (secret, problem) in [
        (opaque, "is of type Opaque"),
        (no_key, "has no tls.key"),
        (not_utf8, "Secret team/api-tls:"),
    ] {
        index.apply(secret);
        let mut c = controller(&index);
        c.reconcile();
        assert!(sds(&c, &key).is_none(), "never served: {problem}");
        let conditions = conditions_of(&mut c, &key).await;
        let resolved = conditions
            .iter()
            .find(|c| c.type_ == "ResolvedRefs")
            .unwrap();
        assert_eq!(resolved.status, "False");
        assert!(resolved.message.contains(problem), "{}", resolved.message);
    }
}

#[test]
fn the_watcher_drops_every_key_it_never_reads_and_the_annotations() {
    use crate::index::Indexed;
    let pair = issue("api.example.com");
    let mut secret = tls_secret("team", "release", &pair);
    secret.metadata.annotations = Some(BTreeMap::from([(
        "kubectl.kubernetes.io/last-applied-configuration".into(),
        pair.1.clone(),
    )]));
    secret
        .data
        .as_mut()
        .unwrap()
        .insert("release".into(), ByteString(vec![b'x'; 1 << 20]));
    secret.trim();
    assert!(secret.metadata.annotations.is_none());
    let keys: Vec<&String> = secret.data.as_ref().unwrap().keys().collect();
    assert_eq!(keys, ["tls.crt", "tls.key"]);
}

#[tokio::test]
async fn host_status_is_patched_through_the_hosts_status_subresource() {
    let (client, mut server) = mock_client();
    let update = crate::status::StatusUpdate {
        key: ObjectKey::new("Host", &meta("team", "api", 0)),
        status: Default::default(),
    };
    let api = tokio::spawn(async move {
        expect(
            &mut server,
            "PATCH",
            "/apis/portcullis.dev/v1alpha1/namespaces/team/hosts/api/status?",
            200,
            serde_json::json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "Host", "metadata": {"name": "api", "namespace": "team"}}),
        )
        .await;
    });
    assert_eq!(
        crate::status::write(&client, &update).await.unwrap(),
        crate::status::Written::Patched
    );
    api.await.unwrap();
}
