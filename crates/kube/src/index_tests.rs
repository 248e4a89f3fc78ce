use std::collections::BTreeSet;

use kube::core::DeserializeGuard;
use portcullis_api::{ObjectKey, Route, Service};
use portcullis_plane::reconcile::{Objects, reconcile};

use super::*;
use crate::fixtures::{mk_route, mk_service};

fn guard<K: serde::de::DeserializeOwned + kube::Resource>(
    value: serde_json::Value,
) -> DeserializeGuard<K> {
    serde_json::from_value(value).unwrap()
}

fn route_json(name: &str, spec: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "portcullis.dev/v1alpha1", "kind": "Route",
        "metadata": {"name": name, "namespace": "team", "generation": 2},
        "spec": spec,
    })
}

#[test]
fn an_object_that_does_not_deserialize_is_skipped_and_its_last_version_kept() {
    let index = SharedIndex::new();
    index.apply(DeserializeGuard(Ok(mk_service("team", "echo"))));
    index.apply(DeserializeGuard(Ok(mk_route(
        "team", "items", 0, "/items", "echo",
    ))));
    let (objects, failed) = index.read().objects();
    let first = reconcile(
        &objects,
        &failed,
        &Objects::new(),
        &Default::default(),
        &portcullis_api::validate::Rules::file_mode(),
    );
    assert_eq!(first.served.len(), 2);

    // `backend` is not a field: the guard turns the error into an invalid entry.
    let bad: DeserializeGuard<Route> = guard(route_json(
        "items",
        serde_json::json!({"match": {"paths": [{"exact": "/items"}]}, "backend": [{"service": "echo"}]}),
    ));
    assert!(bad.0.is_err());
    index.apply(bad);
    let key = ObjectKey::route("team", "items");
    {
        let read = index.read();
        assert!(
            read.invalid[&key].contains("backend"),
            "{}",
            read.invalid[&key]
        );
        assert!(!read.routes.contains_key(&key));
    }
    let (objects, failed) = index.read().objects();
    assert_eq!(failed, BTreeSet::from([key.clone()]));
    let second = reconcile(
        &objects,
        &failed,
        &first.served,
        &Default::default(),
        &portcullis_api::validate::Rules::file_mode(),
    );
    assert!(second.served.contains_key(&key), "last served version kept");

    // A fixed version replaces the invalid entry.
    index.apply(DeserializeGuard(Ok(mk_route(
        "team",
        "items",
        0,
        "/items/v2",
        "echo",
    ))));
    assert!(index.read().invalid.is_empty());
    assert!(index.read().routes.contains_key(&key));
}

#[test]
fn status_only_changes_do_not_wake_the_reconcile_loop() {
    let index = SharedIndex::new();
    let rx = index.changed_rx();
    index.apply(DeserializeGuard(Ok(mk_service("team", "echo"))));
    let after_add = *rx.borrow();
    let mut with_status = mk_service("team", "echo");
    with_status.status = Some(portcullis_api::ObjectStatus {
        observed_generation: Some(1),
        conditions: vec![],
    });
    with_status.metadata.resource_version = Some("42".into());
    index.apply(DeserializeGuard(Ok(with_status)));
    assert_eq!(*rx.borrow(), after_add);
    let key = ObjectKey::service("team", "echo");
    assert_eq!(index.read().statuses[&key].observed_generation, Some(1));
    // The same status again (a watch re-delivery) keeps its shared copy, which the
    // status round recognises by pointer; a different one replaces it.
    let before = index.read().statuses[&key].clone();
    let mut again = mk_service("team", "echo");
    again.status = Some((*before).clone());
    index.apply(DeserializeGuard(Ok(again.clone())));
    assert!(Arc::ptr_eq(&before, &index.read().statuses[&key]));
    again.status.as_mut().unwrap().observed_generation = Some(2);
    index.apply(DeserializeGuard(Ok(again)));
    let after = index.read().statuses[&key].clone();
    assert!(!Arc::ptr_eq(&before, &after));
    assert_eq!(after.observed_generation, Some(2));
}

#[test]
fn a_relist_drops_what_is_gone() {
    let index = SharedIndex::new();
    index.apply(DeserializeGuard(Ok(mk_service("team", "a"))));
    index.apply(DeserializeGuard(Ok(mk_service("team", "b"))));
    index.reset::<DeserializeGuard<Service>>(vec![DeserializeGuard(Ok(mk_service("team", "b")))]);
    let keys: Vec<String> = index
        .read()
        .services
        .keys()
        .map(ToString::to_string)
        .collect();
    assert_eq!(keys, ["Service team/b"]);
}

// The map of every object that reconcile copies is kept beside the maps by kind
// through any watch events (applies, edits, repeats, objects that stop deserializing,
// deletes, relists that drop some): after each, it is the map built from the three,
// holding the very same objects.
#[test]
fn the_map_of_every_object_follows_every_watch_event() {
    let index = SharedIndex::new();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut relists = 0;
    for step in 0..400 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let name = format!("r{}", seed % 7);
        let path = format!("/p{}", (seed >> 8) % 3);
        let route = mk_route("team", &name, 0, &path, "echo");
        match (seed >> 16) % 8 {
            0 | 1 => index.apply(DeserializeGuard(Ok(route))),
            2 => index.apply(DeserializeGuard(Ok(mk_service("team", &name)))),
            3 => index.delete(DeserializeGuard(Ok(route))),
            4 => index.delete(DeserializeGuard(Ok(mk_service("team", &name)))),
            5 => index.apply(guard::<Route>(route_json(
                &name,
                serde_json::json!({"backend": 1}),
            ))),
            6 => {
                relists += 1;
                let keep = (0..7).filter(|i| (seed >> (24 + i)) & 1 == 1).map(|i| {
                    DeserializeGuard(Ok(mk_route("team", &format!("r{i}"), 0, "/", "echo")))
                });
                index.reset::<DeserializeGuard<Route>>(keep.collect());
            }
            _ => {}
        }
        let read = index.read();
        let (objects, _) = read.objects();
        let built = read.collected();
        assert_eq!(
            objects.keys().collect::<Vec<_>>(),
            built.keys().collect::<Vec<_>>(),
            "step {step}"
        );
        for (key, doc) in &objects {
            let same = match (doc, &built[key]) {
                (Document::Route(a), Document::Route(b)) => Arc::ptr_eq(a, b),
                (Document::Service(a), Document::Service(b)) => Arc::ptr_eq(a, b),
                _ => false,
            };
            assert!(same, "step {step}: {key} is another copy");
        }
    }
    assert!(relists > 20);
}
