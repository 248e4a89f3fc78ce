//! The Kubernetes controller's whole reconcile per one-Route edit: what the control
//! plane does per edit when it is deployed with Helm, beyond the file-mode path the
//! other edit rows time. The index is filled as the watchers fill it (Routes,
//! Services, TLS Hosts and their Secret), without an API server.
use std::time::Instant;

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::core::DeserializeGuard;
use portcullis_bench::manifests;
use portcullis_kube::{
    controller::Controller, fleet::EnvoyGroup, index::SharedIndex, metrics::KubeMetrics, status,
};
use portcullis_plane::publish::Publisher;
use portcullis_xds::Cache;

use super::{SERVICES, options};

/// Fills an index with `n` Routes, the Services and the HTTPS Hosts (their certificate
/// in one `kubernetes.io/tls` Secret), reconciles once, then makes `edits` one-Route
/// edits (the same as `--child-rebuild`), each followed by a reconcile and (as on the
/// lease holder) a status round with one Envoy that ACKed everything. Prints the median
/// milliseconds of the reconcile and of the status round after an edit, then those of
/// the first reconcile and status round (everything built and offered: the baseline).
pub fn child_controller(n: usize, edits: usize) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The controller publishes from inside the runtime, as `portcullis controller` does.
    let _guard = rt.enter();
    let (routes, services) = manifests::objects(n, SERVICES);
    let (mut hosts, _) = manifests::tls_hosts();
    let index = SharedIndex::new();
    for h in &mut hosts {
        let tls = h.spec.tls.as_mut().expect("the bench Hosts have TLS");
        tls.certificate_file = None;
        tls.key_file = None;
        tls.secret_name = Some("bench-tls".into());
    }
    for h in hosts {
        index.apply(DeserializeGuard(Ok(h)));
    }
    index.apply(tls_secret()?);
    for s in services {
        index.apply(DeserializeGuard(Ok(s)));
    }
    for r in routes {
        index.apply(DeserializeGuard(Ok(r)));
    }
    let registry = prometheus::Registry::new();
    let mut opts = options();
    opts.https_port = Some(0);
    let publisher = Publisher::new(Cache::new(&registry), opts, None, &registry);
    let mut controller = Controller::new(index.clone(), publisher);
    let t = Instant::now();
    controller.reconcile();
    let first = t.elapsed().as_secs_f64() * 1000.0;
    let served = controller
        .publisher
        .cache
        .snapshot()
        .type_len(portcullis_xds::type_url::ROUTE_CONFIGURATION);
    anyhow::ensure!(
        served > 1,
        "the controller serves {served} RouteConfigurations: the Hosts' certificate was not taken"
    );
    // No API server: what the status writer would write comes back into the index as
    // its watch would bring it, so later rounds offer only what changed, as in a cluster.
    let (queue, mut writer) = status::queue(1 << 15, KubeMetrics::new(&registry)?);
    let acked = |c: &Controller| {
        vec![EnvoyGroup::all_acked(
            "bench",
            &c.publisher.cache.snapshot(),
        )]
    };
    let t = Instant::now();
    rt.block_on(controller.status_round(&acked(&controller), &queue));
    let first_round = t.elapsed().as_secs_f64() * 1000.0;
    written_back(&index, &mut writer);
    let mut times = Vec::with_capacity(edits);
    let mut rounds = Vec::with_capacity(edits);
    let mut last = String::new();
    for e in 0..edits {
        index.apply(DeserializeGuard(Ok(manifests::route(
            (e * 7919) % n,
            SERVICES,
            e + 1,
        ))));
        let t = Instant::now();
        let version = controller.reconcile();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(version != last, "edit {e} published nothing new");
        last = version;
        let envoys = acked(&controller);
        let t = Instant::now();
        rt.block_on(controller.status_round(&envoys, &queue));
        rounds.push(t.elapsed().as_secs_f64() * 1000.0);
        written_back(&index, &mut writer);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{:.1} {:.1} {first:.1} {first_round:.1}",
        median(&mut times),
        median(&mut rounds)
    );
    Ok(())
}

/// Applies each queued status to its object in the index, as the status writer's
/// patch comes back through the watch (the index keeps the object's shared copy).
fn written_back(index: &SharedIndex, writer: &mut status::StatusWriter) {
    while let Ok(update) = writer.try_recv() {
        let status = Some(update.status);
        let read = index.read();
        let key = &update.key;
        match key.kind {
            "Route" => {
                if let Some(o) = read.routes.get(key) {
                    let o = portcullis_api::Route {
                        status,
                        ..(**o).clone()
                    };
                    drop(read);
                    index.apply(DeserializeGuard(Ok(o)));
                }
            }
            "Service" => {
                if let Some(o) = read.services.get(key) {
                    let o = portcullis_api::Service {
                        status,
                        ..(**o).clone()
                    };
                    drop(read);
                    index.apply(DeserializeGuard(Ok(o)));
                }
            }
            _ => {
                if let Some(o) = read.hosts.get(key) {
                    let o = portcullis_api::Host {
                        status,
                        ..(**o).clone()
                    };
                    drop(read);
                    index.apply(DeserializeGuard(Ok(o)));
                }
            }
        }
    }
}

/// The Hosts' certificate as the `kubernetes.io/tls` Secret `edge/bench-tls`.
fn tls_secret() -> anyhow::Result<Secret> {
    let leaf = manifests::tls_leaf();
    let mut secret = Secret {
        type_: Some("kubernetes.io/tls".into()),
        ..Default::default()
    };
    secret.metadata.name = Some("bench-tls".into());
    secret.metadata.namespace = Some("edge".into());
    secret.data = Some(
        [
            (
                "tls.crt".to_string(),
                ByteString(leaf.cert_pem.into_bytes()),
            ),
            ("tls.key".to_string(), ByteString(leaf.key_pem.into_bytes())),
        ]
        .into(),
    );
    Ok(secret)
}
