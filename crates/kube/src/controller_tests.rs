use kube::core::DeserializeGuard;
use portcullis_api::{Destination, ObjectKey, ServiceRef};
use portcullis_translate::Options;
use portcullis_xds::Cache;
use prometheus::Registry;

use super::*;
use crate::{
    fixtures::{mk_route, mk_service},
    status::queue,
};

#[tokio::test]
async fn reconcile_publishes_and_a_status_round_offers_every_changed_status() {
    let index = SharedIndex::new();
    let mut svc = mk_service("team", "echo");
    svc.spec.destinations.push(Destination {
        name: "pods".into(),
        service_ref: Some(ServiceRef {
            name: "echo".into(),
            port: 80,
        }),
        ..Default::default()
    });
    index.apply(DeserializeGuard(Ok(svc)));
    index.apply(DeserializeGuard(Ok(mk_route(
        "team", "items", 0, "/items", "echo",
    ))));
    index.apply(DeserializeGuard(Ok(mk_route(
        "team", "items-v2", 10, "/items", "echo",
    ))));
    let registry = Registry::new();
    let publisher = Publisher::new(Cache::new(&registry), Options::default(), None, &registry);
    let mut controller = Controller::new(index, publisher);
    let version = controller.reconcile();
    assert_eq!(controller.publisher.cache.snapshot().version(), version);
    assert!(controller.ready.load(Ordering::Acquire));

    let (q, mut writer) = queue(16, crate::metrics::KubeMetrics::unregistered());
    let mut offered = Vec::new();
    controller.status_round(&[], &q).await;
    while let Ok(update) = writer.try_recv() {
        offered.push(update);
    }
    let find = |k: &ObjectKey, t: &str| {
        offered
            .iter()
            .find(|u| &u.key == k)
            .and_then(|u| u.status.conditions.iter().find(|c| c.type_ == t))
            .cloned()
            .unwrap()
    };
    let conflicted = find(&ObjectKey::route("team", "items-v2"), "Conflicted");
    assert!(
        conflicted.is_true() && conflicted.message.contains("older Route team/items"),
        "{conflicted:?}"
    );
    let programmed = find(&ObjectKey::route("team", "items"), "Programmed");
    assert_eq!(programmed.status, "Unknown", "no Envoy connected");
    let refs = find(&ObjectKey::service("team", "echo"), "ResolvedRefs");
    assert_eq!(refs.reason, "EndpointsNotFound");
    assert!(
        refs.message
            .contains("Kubernetes Service team/echo does not exist"),
        "{}",
        refs.message
    );
    assert_eq!(offered.len(), 3);
    // The console's board carries Programmed too, and keeps it across a reconcile.
    let on_board = |c: &Controller| {
        c.board
            .read()
            .objects
            .iter()
            .find(|o| o.object == "Route team/items")
            .and_then(|o| o.conditions.iter().find(|c| c.type_ == "Programmed"))
            .cloned()
    };
    let before = on_board(&controller).expect("Programmed on the board");
    assert_eq!(
        (before.reason.as_str(), before.status.as_str()),
        ("NoEnvoy", "Unknown")
    );
    assert!(before.last_transition_time.is_some());
    controller.reconcile();
    assert_eq!(on_board(&controller), Some(before));
}
