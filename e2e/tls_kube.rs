//! HTTPS in Kubernetes mode through real Envoy: the controller's own watchers read a
//! Host, its Route and Service, and the Host's `kubernetes.io/tls` Secret from a mock
//! API server (a tower service standing in for kube-apiserver: lists, then watch
//! streams); the index, reconcile and publisher are the controller's. The Secret is
//! replaced through the watch while a load generator runs over HTTPS: the new
//! certificate is served within 2 s and no request fails. A bad replacement keeps the
//! old certificate.
use std::{
    convert::Infallible,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{Stream, StreamExt};
use http_body_util::StreamBody;
use hyper::body::{Bytes, Frame};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use portcullis_api::validate::Rules;
use portcullis_kube::{controller::Controller, index::SharedIndex, watch};
use portcullis_plane::publish::Publisher;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::harness::*;
use crate::tls_client::{Ca, client, der, get};

type Chunks = Pin<Box<dyn Stream<Item = Result<Frame<Bytes>, Infallible>> + Send>>;

/// The mock API server: fixed lists of every kind, and a watch stream for Secrets fed
/// by `secrets` (other kinds' watches stay open and quiet).
#[derive(Clone)]
struct FakeApi {
    lists: Arc<std::collections::BTreeMap<&'static str, Vec<Value>>>,
    secrets: broadcast::Sender<String>,
}

impl FakeApi {
    fn respond(
        &self,
        req: &http::Request<kube::client::Body>,
    ) -> http::Response<StreamBody<Chunks>> {
        let path = req.uri().path();
        let query = req.uri().query().unwrap_or_default();
        // Portcullis kinds by plural; core ones prefixed (`core/services`).
        let plural = path.rsplit('/').next().unwrap_or_default();
        let kind = if path.starts_with("/apis/portcullis.dev/") {
            plural.to_string()
        } else {
            format!("core/{plural}")
        };
        let kind = kind.as_str();
        let body: Chunks = if query.contains("watch=true") {
            if kind == "core/secrets" {
                let rx = self.secrets.subscribe();
                Box::pin(
                    tokio_stream::wrappers::BroadcastStream::new(rx)
                        .filter_map(|e| async move { e.ok() })
                        .map(|line| Ok(Frame::data(Bytes::from(line)))),
                )
            } else {
                Box::pin(futures::stream::pending())
            }
        } else {
            let items = self.lists.get(kind).cloned().unwrap_or_default();
            let list = json!({
                "apiVersion": "v1", "kind": "List",
                "metadata": {"resourceVersion": "1"},
                "items": items,
            });
            let bytes = Bytes::from(serde_json::to_vec(&list).unwrap());
            Box::pin(futures::stream::once(async move { Ok(Frame::data(bytes)) }))
        };
        http::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(StreamBody::new(body))
            .unwrap()
    }

    fn client(&self) -> kube::Client {
        let api = self.clone();
        let service = tower::service_fn(move |req| {
            let response = api.respond(&req);
            async move { Ok::<_, Infallible>(response) }
        });
        kube::Client::new(service, "default")
    }
}

fn tls_secret(pair: &(String, String), rv: u32) -> Value {
    let secret = Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("api-tls".into()),
            namespace: Some("e2e".into()),
            resource_version: Some(rv.to_string()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                (
                    "tls.crt".to_string(),
                    ByteString(pair.0.clone().into_bytes()),
                ),
                (
                    "tls.key".to_string(),
                    ByteString(pair.1.clone().into_bytes()),
                ),
            ]
            .into(),
        ),
        ..Default::default()
    };
    let mut v = serde_json::to_value(secret).unwrap();
    v["apiVersion"] = "v1".into();
    v["kind"] = "Secret".into();
    v
}

fn object(yaml: &str) -> Value {
    let mut v: Value = serde_yaml::from_str(yaml).unwrap();
    v["metadata"]["resourceVersion"] = "1".into();
    v["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z".into();
    v
}

/// The controller's loop, as `portcullis controller` runs it as lease holder: reconcile
/// on every index change (100 ms debounced), and a status round after each reconcile
/// and each Envoy ACK. The status writer is left out: the conditions are read from the
/// controller's board, which the status round fills as it offers them.
async fn reconcile_loop(mut controller: Controller, cache: portcullis_xds::Cache) {
    let mut changed = controller.index.changed_rx();
    let mut acks = cache.status_rx();
    let metrics = portcullis_kube::metrics::KubeMetrics::new(&prometheus::Registry::new()).unwrap();
    let (queue, _writer) = portcullis_kube::status::queue(1024, metrics);
    let mut due = true;
    loop {
        if due {
            controller.reconcile();
            due = false;
        }
        let envoys = portcullis_kube::fleet::summarize(&cache.nodes());
        controller.status_round(&envoys, &queue).await;
        queue.clear();
        tokio::select! {
            Ok(()) = changed.changed() => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                changed.borrow_and_update();
                due = true;
            }
            Ok(()) = acks.changed() => { acks.borrow_and_update(); }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_secret_is_served_within_2s_under_load_and_a_bad_one_keeps_the_old() {
    let ca = Ca::new();
    let first = ca.leaf(&["api.example.com"], 90);
    let echo_addr = echo("echo").await;
    let host = object(
        "apiVersion: portcullis.dev/v1alpha1\nkind: Host\nmetadata: {name: api, namespace: e2e}\nspec: {hostname: api.example.com, tls: {secretName: api-tls}}\n",
    );
    let route = object(&route_yaml(
        "api",
        "{hosts: [api.example.com], match: {paths: [{prefix: /}]}, backends: [{service: echo}]}",
    ));
    let service = object(&service_yaml("echo", echo_addr));
    let (secrets, _) = broadcast::channel(16);
    let api = FakeApi {
        lists: Arc::new(
            [
                ("hosts", vec![host]),
                ("routes", vec![route]),
                ("services", vec![service]),
                ("core/secrets", vec![tls_secret(&first, 1)]),
            ]
            .into(),
        ),
        secrets: secrets.clone(),
    };

    // The controller: its watchers, index, reconcile and publisher; xDS to Envoy.
    let index = SharedIndex::with_rules(Rules::cluster(vec!["127.0.0.0/8".parse().unwrap()]));
    let mut synced = watch::spawn_all(&api.client(), &watch::Scope::default(), &index);
    tokio::time::timeout(STARTUP, synced.wait_for(|s| *s))
        .await
        .expect("the watchers list")
        .unwrap();
    let registry = prometheus::Registry::new();
    let cache = portcullis_xds::Cache::new(&registry);
    let options = portcullis_translate::Options {
        listen_address: "127.0.0.1".into(),
        listen_port: 0,
        https_port: Some(0),
        ..Default::default()
    };
    let publisher = Publisher::new(cache.clone(), options, None, &registry);
    let controller = Controller::new(index.clone(), publisher);
    let board = controller.board.clone();
    tokio::spawn(reconcile_loop(controller, cache.clone()));
    let xds = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let xds_addr = xds.local_addr().unwrap();
    tokio::spawn(portcullis_xds::serve(xds, cache, std::future::pending()));
    let gw = Gateway::start(xds_addr, "tls-kube", false).await;
    let deadline = Instant::now() + STARTUP;
    let https = loop {
        if let Some(p) = gw.listener_port("https").await {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "no https listener: {:#?}",
            board.read().objects
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let trusted = client(Some(&ca.pem));
    let deadline = Instant::now() + STARTUP;
    let old = der(&first.0);
    loop {
        match get(&trusted, https, "api.example.com", "api.example.com", "/").await {
            Ok(s) if s.status == 200 && s.leaf == old => break,
            other => assert!(
                Instant::now() < deadline,
                "the Secret's certificate is not served: {:?}",
                other.map(|s| s.head)
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(secrets.receiver_count() > 0, "the Secret watch is open");
    // The Host's Programmed: its listener and certificate ACKed by this Envoy.
    let condition = |type_: &str| {
        board
            .read()
            .objects
            .iter()
            .find(|o| o.object == "Host e2e/api")
            .and_then(|o| o.conditions.iter().find(|c| c.type_ == type_))
            .cloned()
    };
    let deadline = Instant::now() + STARTUP;
    while !condition("Programmed").is_some_and(|c| c.is_true()) {
        assert!(
            Instant::now() < deadline,
            "Host not Programmed: {:?}",
            condition("Programmed")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        condition("Programmed").unwrap().message,
        "ACKed by 1 Envoy(s)"
    );

    // Load: a new connection (a handshake) per request, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed, trusted) =
                (stop.clone(), ok.clone(), failed.clone(), trusted.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match get(
                        &trusted,
                        https,
                        "api.example.com",
                        "api.example.com",
                        "/load",
                    )
                    .await
                    {
                        Ok(s) if s.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Replace the Secret (what cert-manager does on renewal): one MODIFIED event.
    let second = ca.leaf(&["api.example.com"], 90);
    let event = json!({"type": "MODIFIED", "object": tls_secret(&second, 2)});
    secrets.send(format!("{event}\n")).unwrap();
    let rotated = Instant::now();
    let new = der(&second.0);
    let took = crate::tls_client::wait_for_leaf(&trusted, https, &old, &new, rotated).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("Secret rotation served after {took:?}; {ok} requests during it, {failed} failed");
    assert!(took < Duration::from_secs(2), "rotation took {took:?}");
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    assert!(ok > 20, "too little load to mean anything: {ok}");

    // A bad replacement (the key of another certificate): refused, the new one stays.
    let other = ca.leaf(&["api.example.com"], 90);
    let bad = (second.0.clone(), other.1.clone());
    let event = json!({"type": "MODIFIED", "object": tls_secret(&bad, 3)});
    secrets.send(format!("{event}\n")).unwrap();
    let deadline = Instant::now() + STARTUP;
    let message = loop {
        let found = condition("Accepted").map(|c| c.message).unwrap_or_default();
        if found.contains("refused") {
            break found;
        }
        assert!(Instant::now() < deadline, "the bad Secret was not reported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(message.contains("does not match"), "{message}");
    let still = get(&trusted, https, "api.example.com", "api.example.com", "/")
        .await
        .unwrap();
    assert_eq!(
        still.leaf, new,
        "a bad Secret took the good certificate away"
    );
    // The key is in no condition the controller shows.
    let shown = serde_json::to_string(&*board.read()).unwrap();
    for line in other.1.lines().chain(second.1.lines()) {
        assert!(line.starts_with("-----") || !shown.contains(line));
    }
}
