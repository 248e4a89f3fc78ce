//! `portcullis controller`: wires watchers, the reconcile loop, xDS, the admin
//! endpoint, the webhook, the lease and the status writer, and stops them all on
//! `shutdown`.
use portcullis_api::validate::Rules;
use std::{future::Future, sync::atomic::Ordering, time::Duration};

use anyhow::Context;
use kube::Client;
use portcullis_plane::{
    admin::{self, AdminState},
    publish::Publisher,
};
use portcullis_xds::Cache;
use prometheus::Registry;
use tokio::sync::watch;

use crate::{
    Args, component_certs,
    controller::Controller,
    fleet::summarize,
    fleet_sync::{self, FleetConfig},
    index::SharedIndex,
    lease::{Elector, LeaseConfig},
    metrics::KubeMetrics,
    status,
    watch::{Scope, spawn_all},
    webhook::{ca_bundle, server, tls},
};

/// Changes arriving closer together than this are reconciled once.
const DEBOUNCE: Duration = Duration::from_millis(100);

pub async fn run(
    args: Args,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Args {
        xds_addr,
        mut tls,
        component_certs,
        component_cert_dir,
        admin_addr,
        webhook_addr,
        namespaces,
        label_selector,
        pod_namespace,
        pod_name,
        pod_uid,
        lease_name,
        lease_seconds,
        webhook_certs,
        webhook_cert_dir,
        webhook_service,
        webhook_config,
        status_queue,
        state_file,
        allow_destination_cidrs,
        require_host_ownership,
        gateway,
        console,
    } = args;
    let plan = component_certs
        .as_deref()
        .map(component_certs::Plan::parse)
        .transpose()?;
    if plan.is_some()
        && (tls.tls_cert.is_some()
            || tls.tls_key.is_some()
            || tls.client_ca.is_some()
            || tls.insecure)
    {
        anyhow::bail!(
            "--component-certs issues the xDS certificate itself; drop --tls-cert, --tls-key, --client-ca and --insecure"
        );
    }
    // Without an issuing plan, a control plane that would serve xDS in the open stops
    // here, before it talks to the API server.
    if plan.is_none() {
        tls.transport(xds_addr, "--xds-addr")?;
    }
    let console = portcullis_plane::console::Console::new(&console)?;
    let client = Client::try_default()
        .await
        .context("no Kubernetes API access (in-cluster service account or kubeconfig)")?;
    if let Some(plan) = &plan {
        let files = component_certs::round(&client, &pod_namespace, plan, &component_cert_dir)
            .await
            .context("issuing the component certificates (--component-certs)")?;
        tls.tls_cert = Some(files.cert);
        tls.tls_key = Some(files.key);
        tls.client_ca = Some(files.ca);
    }
    let xds_transport = tls.transport(xds_addr, "--xds-addr")?;
    let registry = Registry::new();
    let metrics = KubeMetrics::new(&registry)?;
    let cache = Cache::new(&registry);
    let options = gateway.into_options()?;
    let publisher = Publisher::new(cache.clone(), options, state_file, &registry);
    let mut rules = Rules::cluster(allow_destination_cidrs);
    rules.require_host_ownership = require_host_ownership;
    let index = SharedIndex::with_rules(rules);
    let mut controller = Controller::new(index.clone(), publisher);
    // Creation times come from the API server here; only the snapshot is reused.
    if controller.publisher.restore().is_some() {
        controller.ready.store(true, Ordering::Release);
    }

    // The tasks stop after the reconcile loop, once `shutdown` has resolved.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = portcullis_process::Shutdown::new(async {
        let _ = stop_rx.await;
    });
    let stopped = || stop.signal();
    let bind = portcullis_process::bind;
    let xds = bind(xds_addr, "--xds-addr").await?;
    let admin = bind(admin_addr, "--admin-addr").await?;
    let webhook = bind(webhook_addr, "--webhook-addr").await?;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn({
        let (cache, stop) = (cache.clone(), stopped());
        async move {
            portcullis_xds::serve_with(xds, &xds_transport, cache, stop)
                .await
                .map_err(anyhow::Error::from)
        }
    });
    tasks.spawn({
        let (console, stop) = (console.clone(), stopped());
        async move {
            console.run(stop).await;
            Ok(())
        }
    });
    tasks.spawn({
        let state = AdminState {
            cache: cache.clone(),
            registry: registry.clone(),
            board: controller.board.clone(),
            model: controller.model.clone(),
            ready: controller.ready.clone(),
        };
        let console = console.clone();
        let stop = stopped();
        async move {
            portcullis_process::http::serve(admin, admin::router(state, console), stop)
                .await
                .map_err(anyhow::Error::from)
        }
    });

    // The webhook certificate: ours (CA patched into the webhook configuration), or
    // files cert-manager keeps up to date.
    let tls_config = if webhook_certs == "files" {
        let cert =
            std::fs::read_to_string(webhook_cert_dir.join("tls.crt")).context("webhook tls.crt")?;
        let key =
            std::fs::read_to_string(webhook_cert_dir.join("tls.key")).context("webhook tls.key")?;
        tls::server_config(&cert, &key)?
    } else {
        let issued = tls::self_signed(std::slice::from_ref(&webhook_service))?;
        if !webhook_config.is_empty() {
            let (client, name, ca) = (
                client.clone(),
                webhook_config.clone(),
                issued.ca_pem.clone(),
            );
            // Every replica makes its own CA and adds it to the bundle (ca_bundle.rs),
            // so the API server trusts whichever replica answers.
            tokio::spawn(async move {
                while let Err(e) = ca_bundle::install(&client, &name, &ca).await {
                    tracing::warn!(error = %e, name, "cannot install the webhook caBundle; retrying");
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
            });
        }
        tls::server_config(&issued.cert_pem, &issued.key_pem)?
    };
    tasks.spawn({
        let (router, stop) = (server::router(index.clone(), metrics.clone()), stopped());
        async move {
            server::serve(webhook, tls_config, router, stop).await;
            Ok(())
        }
    });

    if let Some(plan) = plan {
        let (client, namespace, stop) = (client.clone(), pod_namespace.clone(), stopped());
        tasks.spawn(async move {
            component_certs::keep(client, namespace, plan, component_cert_dir, stop).await;
            Ok(())
        });
    }

    let fleet = FleetConfig {
        namespace: pod_namespace.clone(),
        lease_name: lease_name.clone(),
        replica: pod_name.clone(),
        pod_uid,
    };
    let elector = Elector::new(
        client.clone(),
        LeaseConfig {
            namespace: pod_namespace,
            name: lease_name,
            identity: pod_name,
            duration: Duration::from_secs(lease_seconds),
            renew_every: Duration::from_secs(lease_seconds.div_ceil(3).max(1)),
        },
        metrics.clone(),
    );
    let mut leader = elector.leader_rx();
    tasks.spawn({
        let stop = stopped();
        async move {
            elector.run(stop).await;
            Ok(())
        }
    });
    tasks.spawn({
        let (client, fleet, cache, stop) =
            (client.clone(), fleet.clone(), cache.clone(), stopped());
        async move {
            fleet_sync::publish_loop(client, fleet, cache, stop).await;
            Ok(())
        }
    });
    let (peers_tx, mut peers) = watch::channel(Vec::new());
    tasks.spawn({
        let (client, leader, stop) = (client.clone(), leader.clone(), stopped());
        async move {
            fleet_sync::read_loop(client, fleet, leader, peers_tx, stop).await;
            Ok(())
        }
    });
    let (queue, writer) = status::queue(status_queue, metrics);
    tasks.spawn(writer.run_owned(client.clone(), leader.clone()));

    let scope = Scope {
        namespaces,
        label_selector,
    };
    let mut synced = spawn_all(&client, &scope, &index);
    let mut changed = index.changed_rx();
    let mut acks = cache.status_rx();
    tokio::pin!(shutdown);
    tokio::select! {
        _ = synced.wait_for(|s| *s) => {}
        _ = &mut shutdown => {}
    }
    let mut reconcile_due = true;
    // Certificates are re-checked against the clock (CertificateExpiring, expiry of
    // the served one) even when nothing changes.
    let mut hourly = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(3600),
        Duration::from_secs(3600),
    );
    loop {
        if reconcile_due {
            controller.reconcile();
            reconcile_due = false;
        }
        if *leader.borrow_and_update() {
            let mut envoys = summarize(&cache.nodes());
            envoys.extend(peers.borrow_and_update().iter().cloned());
            controller.status_round(&envoys, &queue).await;
        } else {
            queue.clear();
        }
        tokio::select! {
            _ = &mut shutdown => break,
            Ok(()) = changed.changed() => {
                tokio::time::sleep(DEBOUNCE).await;
                changed.borrow_and_update();
                reconcile_due = true;
            }
            Ok(()) = acks.changed() => { acks.borrow_and_update(); }
            _ = hourly.tick() => reconcile_due = true,
            Ok(()) = peers.changed() => {}
            Ok(()) = leader.changed() => {}
        }
    }
    let _ = stop_tx.send(());
    drop(queue);
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}
