//! Component certificates without cert-manager, end to end: the controller's issuing
//! round (`portcullis_kube::component_certs`) runs against an in-memory Secrets API
//! (no kube-apiserver can run here), and what it stored is what the components use —
//! authz, ratelimit and accesslog their Secret as a volume would hold it, Envoy its
//! node-prefix Secret, the xDS port the controller's own certificate. Envoy gets its
//! configuration over mTLS and calls authz with its certificate; that certificate
//! subscribes as any node under its prefix and as no other.
use std::{
    collections::BTreeMap,
    convert::Infallible,
    path::Path,
    sync::{Arc, Mutex},
};

use base64::Engine;
use http_body_util::Full;
use hyper::body::Bytes;
use portcullis_kube::component_certs::{Plan, round};
use portcullis_tls::mtls::generate::{Files, LocalCa, write_dir};
use serde_json::{Value, json};

use crate::harness::*;
use crate::mtls::{Pki, bootstrap, manifests, servers, serves_and_authenticates, subscribe};

type Store = Arc<Mutex<BTreeMap<String, Value>>>;

const SECRETS: &str = "/api/v1/namespaces/system/secrets";

fn reply(status: u16, body: &Value) -> http::Response<Full<Bytes>> {
    http::Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": reason, "code": code})
}

/// GET, POST and PUT of Secrets in namespace `system`, with resourceVersion checks.
async fn secrets_api(
    store: Store,
    req: http::Request<kube::client::Body>,
) -> http::Response<Full<Bytes>> {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let body: Value = match req.into_body().collect_bytes().await {
        Ok(b) if !b.is_empty() => serde_json::from_slice(&b).unwrap(),
        _ => Value::Null,
    };
    let mut store = store.lock().unwrap();
    let name = path
        .strip_prefix(&format!("{SECRETS}/"))
        .map(str::to_string);
    match (method.as_str(), name) {
        ("GET", Some(name)) => match store.get(&name) {
            Some(s) => reply(200, s),
            None => reply(404, &status(404, "NotFound")),
        },
        ("POST", None) => {
            let name = body["metadata"]["name"].as_str().unwrap().to_string();
            if store.contains_key(&name) {
                return reply(409, &status(409, "AlreadyExists"));
            }
            let mut s = body;
            s["metadata"]["resourceVersion"] = json!("1");
            store.insert(name, s.clone());
            reply(201, &s)
        }
        ("PUT", Some(name)) => {
            let current = store
                .get(&name)
                .map(|s| s["metadata"]["resourceVersion"].clone());
            if current.as_ref() != Some(&body["metadata"]["resourceVersion"]) {
                return reply(409, &status(409, "Conflict"));
            }
            let rv: u64 = current.unwrap().as_str().unwrap().parse().unwrap();
            let mut s = body;
            s["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
            store.insert(name, s.clone());
            reply(200, &s)
        }
        (m, n) => panic!("unexpected {m} {path} ({n:?})"),
    }
}

fn client(store: &Store) -> kube::Client {
    let store = store.clone();
    let service = tower::service_fn(move |req| {
        let store = store.clone();
        async move { Ok::<_, Infallible>(secrets_api(store, req).await) }
    });
    kube::Client::new(service, "system")
}

fn data(store: &Store, secret: &str, key: &str) -> String {
    let store = store.lock().unwrap();
    let b64 = store[secret]["data"][key].as_str().unwrap().to_string();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

/// The Secret's files as its volume would hold them.
fn mount(store: &Store, secret: &str, dir: &Path) -> Files {
    std::fs::create_dir_all(dir).unwrap();
    let files = Files {
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
        ca: dir.join("ca.crt"),
    };
    std::fs::write(&files.cert, data(store, secret, "tls.crt")).unwrap();
    std::fs::write(&files.key, data(store, secret, "tls.key")).unwrap();
    std::fs::write(&files.ca, data(store, secret, "ca.crt")).unwrap();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_the_controller_issues_carry_envoy_to_xds_and_authz() {
    let store: Store = Arc::default();
    let kube = client(&store);
    let plan = Plan::parse(
        r#"{"caSecret": "p-ca", "xdsDns": ["127.0.0.1"], "secrets": [
            {"name": "p-servers-tls", "dns": ["127.0.0.1"]},
            {"name": "p-envoy-tls", "nodes": ["edge-*"]}]}"#,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let xds = round(&kube, "system", &plan, &dir.path().join("xds"))
        .await
        .unwrap();

    // A second replica's round finds everything fresh and rewrites nothing.
    let before = store.lock().unwrap().clone();
    round(&kube, "system", &plan, &dir.path().join("xds-2"))
        .await
        .unwrap();
    assert_eq!(*store.lock().unwrap(), before);
    // The CA key stays in the CA Secret.
    let ca_key = data(&store, "p-ca", "ca.key");
    for leaf in ["p-servers-tls", "p-envoy-tls"] {
        assert!(!before[leaf].to_string().contains(&ca_key[30..80]));
    }

    let other = LocalCa::new("another CA").unwrap();
    let stranger = other.issue("edge-1", &["127.0.0.1"], &["edge-1"]).unwrap();
    let stranger = write_dir(&dir.path().join("other"), &other, &[("s", &stranger)])
        .unwrap()
        .remove(0);
    let pki = Pki {
        _dir: tempfile::tempdir().unwrap(),
        server: mount(&store, "p-servers-tls", &dir.path().join("servers")),
        xds,
        node_a: mount(&store, "p-envoy-tls", &dir.path().join("envoy")),
        stranger,
        sds_dir: None,
    };
    let s = servers(&pki, dir.path(), &manifests(echo("echo").await)).await;
    let gw = Gateway::from_bootstrap(&bootstrap(s.xds, "edge-7f9c", &pki.node_a), &[]).await;
    serves_and_authenticates(&gw).await;

    // The Envoy certificate names the prefix `edge-`: any pod under it, nothing else.
    let envoy = pki.client(&pki.node_a);
    assert!(subscribe(s.xds, &envoy, "edge-other").await.unwrap() > 0);
    let refused = subscribe(s.xds, &envoy, "ops-1").await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    // Another CA's certificate for an `edge-` node is refused at the handshake.
    let err = crate::mtls::talk(s.xds, &pki.client(&pki.stranger))
        .await
        .unwrap_err();
    assert!(
        err.contains("UnknownCA") || err.contains("BadCertificate"),
        "{err}"
    );
}

/// Writes `issued` (and the CA) the way the kubelet updates a Secret volume: a new
/// timestamped directory, then one rename of the `..data` symlink.
fn volume_swap(
    dir: &Path,
    version: &str,
    issued: &portcullis_tls::mtls::generate::Issued,
    ca: &str,
) {
    use std::os::unix::fs::symlink;
    let data = dir.join(version);
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("tls.crt"), &issued.cert_pem).unwrap();
    std::fs::write(data.join("tls.key"), &issued.key_pem).unwrap();
    std::fs::write(data.join("ca.crt"), ca).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(version, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for f in ["tls.crt", "tls.key", "ca.crt"] {
        if !dir.join(f).exists() {
            symlink(format!("..data/{f}"), dir.join(f)).unwrap();
        }
    }
}

/// The DNS names of the client certificates Envoy holds now (admin `/certs`).
async fn envoy_cert_names(gw: &Gateway) -> String {
    let (_, body) = fetch(&gw.envoy.admin_url("/certs")).await.unwrap();
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_envoy_certificate_applies_without_restarting_envoy() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::new("e2e CA").unwrap();
    let server = ca.issue("server", &["127.0.0.1"], &[]).unwrap();
    let server = write_dir(&dir.path().join("server"), &ca, &[("server", &server)])
        .unwrap()
        .remove(0);
    // Envoy's Secret volume, first version; the renewal adds a name to tell them apart.
    let volume = dir.path().join("envoy-volume");
    let first = ca.issue("edge", &["first.invalid"], &["edge-*"]).unwrap();
    volume_swap(&volume, "..v1", &first, &ca.ca_pem());
    let other = LocalCa::new("another CA").unwrap();
    let stranger = other.issue("s", &["127.0.0.1"], &["edge-1"]).unwrap();
    let stranger = write_dir(&dir.path().join("other"), &other, &[("s", &stranger)])
        .unwrap()
        .remove(0);
    let envoy_files = Files {
        cert: volume.join("tls.crt"),
        key: volume.join("tls.key"),
        ca: volume.join("ca.crt"),
    };
    let sds_dir = dir.path().join("sds");
    std::fs::create_dir_all(&sds_dir).unwrap();
    let pki = Pki {
        _dir: tempfile::tempdir().unwrap(),
        xds: server.clone(),
        server,
        node_a: envoy_files.clone(),
        stranger,
        sds_dir: Some(sds_dir.clone()),
    };
    let s = servers(&pki, dir.path(), &manifests(echo("echo").await)).await;
    let mut b = bootstrap(s.xds, "edge-1", &envoy_files);
    b.sds_dir = Some(sds_dir);
    for (path, content) in b.sds_files() {
        std::fs::write(path, content.to_string()).unwrap();
    }
    let gw = Gateway::from_bootstrap(&b, &[]).await;
    let alice = [("x-api-key", "demo-key-alice")];
    assert_eq!(
        gw.request("GET", "example.com", "/private", &alice)
            .await
            .status,
        200
    );
    let before = envoy_cert_names(&gw).await;
    assert!(before.contains("first.invalid"), "{before}");

    let renewed = ca.issue("edge", &["renewed.invalid"], &["edge-*"]).unwrap();
    volume_swap(&volume, "..v2", &renewed, &ca.ca_pem());
    // Envoy watches the volume directory: the renewed certificate replaces the first.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let after = loop {
        let names = envoy_cert_names(&gw).await;
        if names.contains("renewed.invalid") {
            break names;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not picked up in 10 s: {names}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(!after.contains("first.invalid"), "{after}");
    assert_eq!(
        gw.request("GET", "example.com", "/private", &alice)
            .await
            .status,
        200
    );
}
