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
    let on_board = |c: &Controller| programmed_on_board(c, "Route team/items");
    let before = on_board(&controller).expect("Programmed on the board");
    assert_eq!(
        (before.reason.as_str(), before.status.as_str()),
        ("NoEnvoy", "Unknown")
    );
    assert!(before.last_transition_time.is_some());
    controller.reconcile();
    assert_eq!(on_board(&controller), Some(before));
    // Served or not, per object, as reconcile decided (the board walks the served keys).
    let served: Vec<(String, bool)> = controller
        .board
        .read()
        .objects
        .iter()
        .map(|o| (o.object.clone(), o.served))
        .collect();
    assert_eq!(
        served,
        [
            ("Route team/items".to_string(), true),
            ("Route team/items-v2".to_string(), false),
            ("Service team/echo".to_string(), true),
        ]
    );
}

/// The `Programmed` condition of `object` on the console's board.
fn programmed_on_board(c: &Controller, object: &str) -> Option<Condition> {
    c.board
        .read()
        .objects
        .iter()
        .find(|o| o.object == object)
        .and_then(|o| o.conditions.iter().find(|c| c.type_ == "Programmed"))
        .cloned()
}

/// One status round's offers, written back into the index as the watch brings them.
async fn round(c: &mut Controller, envoys: &[EnvoyGroup]) -> Vec<crate::status::StatusUpdate> {
    let (q, mut writer) = queue(64, crate::metrics::KubeMetrics::unregistered());
    c.status_round(envoys, &q).await;
    let mut offered = Vec::new();
    while let Ok(update) = writer.try_recv() {
        write_status(&c.index, &update.key, update.status.clone());
        offered.push(update);
    }
    offered
}

/// `status` on the object `key` in the index, as a watch event would bring it.
fn write_status(index: &SharedIndex, key: &ObjectKey, status: ObjectStatus) {
    let read = index.read();
    match key.kind {
        "Route" => {
            let mut o = (**read.routes.get(key).expect("the Route")).clone();
            o.status = Some(status);
            drop(read);
            index.apply(DeserializeGuard(Ok(o)));
        }
        _ => {
            let mut o = (**read.services.get(key).expect("the Service")).clone();
            o.status = Some(status);
            drop(read);
            index.apply(DeserializeGuard(Ok(o)));
        }
    }
}

/// One Envoy that ACKed everything the controller serves now.
fn all_acked(c: &Controller) -> Vec<EnvoyGroup> {
    vec![EnvoyGroup::all_acked(
        "edge-1",
        &c.publisher.cache.snapshot(),
    )]
}

fn programmed_of(update: &crate::status::StatusUpdate) -> (String, String) {
    let c = update
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == "Programmed")
        .expect("a Programmed condition");
    (c.status.clone(), c.reason.clone())
}

// A round reuses each object's last desired status only while its report, its
// `Programmed` and its ref problems are unchanged and the API server holds that status:
// anything else (an ACK, an edit, a status someone else wrote) is offered again.
#[tokio::test]
async fn a_status_round_offers_only_what_changed_and_restores_a_status_written_by_someone_else() {
    let index = SharedIndex::new();
    index.apply(DeserializeGuard(Ok(mk_service("team", "echo"))));
    index.apply(DeserializeGuard(Ok(mk_route(
        "team", "items", 0, "/items", "echo",
    ))));
    let registry = Registry::new();
    let publisher = Publisher::new(Cache::new(&registry), Options::default(), None, &registry);
    let mut c = Controller::new(index.clone(), publisher);
    c.reconcile();
    let route = ObjectKey::route("team", "items");

    let first = round(&mut c, &[]).await;
    assert_eq!(first.len(), 2, "the Route and the Service: {first:?}");
    assert!(
        round(&mut c, &[]).await.is_empty(),
        "written statuses are not offered again"
    );

    // Envoy ACKs: Programmed turns True for both, on the API server and on the board.
    let envoys = all_acked(&c);
    let acked = round(&mut c, &envoys).await;
    assert_eq!(acked.len(), 2, "{acked:?}");
    for update in &acked {
        assert_eq!(
            programmed_of(update),
            ("True".into(), "Programmed".into()),
            "{}",
            update.key
        );
    }
    let on_board = |c: &Controller| programmed_on_board(c, "Route team/items").map(|c| c.reason);
    assert_eq!(on_board(&c).as_deref(), Some("Programmed"));
    assert!(round(&mut c, &envoys).await.is_empty());

    // Someone else writes a status on the Route: the next round puts ours back.
    let forged = ObjectStatus {
        observed_generation: Some(1),
        conditions: vec![Condition::new(
            "Accepted",
            false,
            "Forged",
            "written by someone else",
        )],
    };
    write_status(&index, &route, forged);
    let restored = round(&mut c, &envoys).await;
    assert_eq!(restored.len(), 1, "{restored:?}");
    assert_eq!(restored[0].key, route);
    // The same conditions; transition times are new where the forged status differed.
    let shape = |s: &ObjectStatus| {
        s.conditions
            .iter()
            .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
            .collect::<Vec<_>>()
    };
    let ours = &acked.iter().find(|u| u.key == route).unwrap().status;
    assert_eq!(shape(&restored[0].status), shape(ours));

    // An edit (a new generation) is Pending until Envoy ACKs the new version.
    let mut edited = mk_route("team", "items", 0, "/items-v2", "echo");
    edited.metadata.generation = Some(2);
    index.apply(DeserializeGuard(Ok(edited)));
    c.reconcile();
    let after_edit = round(&mut c, &envoys).await;
    assert_eq!(after_edit.len(), 1, "only the edited Route: {after_edit:?}");
    assert_eq!(after_edit[0].status.observed_generation, Some(2));
    assert_eq!(
        programmed_of(&after_edit[0]),
        ("False".into(), "Pending".into())
    );
    assert_eq!(on_board(&c).as_deref(), Some("Pending"));
    let envoys = all_acked(&c);
    let again = round(&mut c, &envoys).await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(
        programmed_of(&again[0]),
        ("True".into(), "Programmed".into())
    );
    assert_eq!(on_board(&c).as_deref(), Some("Programmed"));
}
