use portcullis_api::{ObjectKey, validate::validate};
use pretty_assertions::assert_eq;
use serde_json::json;

use super::*;
use crate::fixtures::{expect, mk_route, mk_service, mock_client};

fn report_of(key: &ObjectKey) -> Report {
    let outcome = validate(
        &[mk_route("team", "items", 0, "/items", "missing")],
        &[mk_service("team", "echo")],
    );
    outcome.report(key).unwrap().clone()
}

#[test]
fn desired_keeps_transition_times_of_unchanged_conditions() {
    let key = ObjectKey::route("team", "items");
    let report = report_of(&key);
    let first = desired(&report, None, &[], &ObjectStatus::default(), "t1");
    assert_eq!(first.observed_generation, Some(1));
    let types: Vec<(&str, &str)> = first
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("Accepted", "True"),
            ("ResolvedRefs", "False"),
            ("Conflicted", "False"),
            ("Shadowed", "False"),
            ("Programmed", "False"),
            ("Ready", "False")
        ]
    );
    assert!(
        first
            .conditions
            .iter()
            .all(|c| c.last_transition_time.as_deref() == Some("t1"))
    );
    let programmed = Condition::new(PROGRAMMED, true, "Programmed", "ACKed by 1 Envoy(s)");
    let second = desired(&report, Some(programmed), &[], &first, "t2");
    let times: Vec<&str> = second
        .conditions
        .iter()
        .map(|c| c.last_transition_time.as_deref().unwrap())
        .collect();
    assert_eq!(times, ["t1", "t1", "t1", "t1", "t2", "t1"]);
    assert!(
        second
            .conditions
            .iter()
            .all(|c| c.observed_generation == Some(1))
    );
}

#[test]
fn service_ref_problems_flip_resolved_refs() {
    let key = ObjectKey::service("team", "echo");
    let s = desired(
        &report_of(&key),
        None,
        &["spec.destinations[0].serviceRef: gone".into()],
        &ObjectStatus::default(),
        "t",
    );
    let c = s
        .conditions
        .iter()
        .find(|c| c.type_ == RESOLVED_REFS)
        .unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
        (
            "False",
            "EndpointsNotFound",
            "spec.destinations[0].serviceRef: gone"
        )
    );
}

#[tokio::test]
async fn writes_a_merge_patch_to_the_status_subresource() {
    let (client, mut server) = mock_client();
    let status = ObjectStatus {
        observed_generation: Some(3),
        conditions: vec![Condition::new("Accepted", true, "Accepted", "")],
    };
    let update = StatusUpdate {
        key: ObjectKey::route("team", "items"),
        status,
    };
    let api = tokio::spawn(async move {
        let body = expect(
            &mut server,
            "PATCH",
            "/apis/portcullis.dev/v1alpha1/namespaces/team/routes/items/status?",
            200,
            json!({"apiVersion": "portcullis.dev/v1alpha1", "kind": "Route", "metadata": {"name": "items", "namespace": "team"}}),
        )
        .await;
        assert_eq!(
            body,
            json!({"status": {"observedGeneration": 3, "conditions": [
                {"type": "Accepted", "status": "True", "reason": "Accepted", "message": ""}
            ]}})
        );
        // A Service deleted meanwhile: 404 is not an error.
        expect(
            &mut server,
            "PATCH",
            "/apis/portcullis.dev/v1alpha1/namespaces/team/services/gone/status?",
            404,
            crate::fixtures::api_error(404, "NotFound"),
        )
        .await;
    });
    assert_eq!(write(&client, &update).await.unwrap(), Written::Patched);
    let gone = StatusUpdate {
        key: ObjectKey::service("team", "gone"),
        status: ObjectStatus::default(),
    };
    assert_eq!(write(&client, &gone).await.unwrap(), Written::Gone);
    api.await.unwrap();
}

#[tokio::test]
async fn the_queue_skips_what_is_written_or_queued_and_only_the_leader_writes() {
    let (client, mut server) = mock_client();
    let metrics = KubeMetrics::unregistered();
    let (queue, writer) = queue(4, metrics.clone());
    let (leader_tx, leader_rx) = watch::channel(true);
    let writer = tokio::spawn(writer.run(client, leader_rx));
    let key = ObjectKey::route("team", "items");
    let want = ObjectStatus {
        observed_generation: Some(1),
        conditions: vec![],
    };
    // Already on the server: nothing is sent.
    queue.offer(key.clone(), want.clone(), &want).await;
    // Offered twice before the watch shows it: sent once.
    queue
        .offer(key.clone(), want.clone(), &ObjectStatus::default())
        .await;
    queue
        .offer(key.clone(), want.clone(), &ObjectStatus::default())
        .await;
    expect(
        &mut server,
        "PATCH",
        "/apis/portcullis.dev/v1alpha1/namespaces/team/routes/items/status?",
        200,
        json!({"metadata": {"name": "items"}}),
    )
    .await;
    // A follower drops updates instead of writing.
    leader_tx.send(false).unwrap();
    let other = ObjectKey::route("team", "other");
    queue
        .offer(other, want.clone(), &ObjectStatus::default())
        .await;
    drop(queue);
    writer.await.unwrap();
    assert!(
        server.next_request().await.is_none(),
        "no request from a follower"
    );
    let writes = |kind: &str, result: &str| {
        metrics
            .status_writes
            .with_label_values(&[kind, result])
            .get()
    };
    assert_eq!((writes("Route", "ok"), writes("Route", "dropped")), (1, 1));
    assert_eq!(metrics.status_write_seconds.get_sample_count(), 1);
    // `items` was written and is awaited back from the watch; `other` was dropped.
    assert_eq!(metrics.status_pending.get(), 1);
}

#[tokio::test]
async fn failed_and_vanished_writes_are_counted_apart() {
    let (client, mut server) = mock_client();
    let metrics = KubeMetrics::unregistered();
    let (queue, writer) = queue(4, metrics.clone());
    let (_leader_tx, leader_rx) = watch::channel(true);
    let writer = tokio::spawn(writer.run(client, leader_rx));
    let want = ObjectStatus {
        observed_generation: Some(2),
        conditions: vec![],
    };
    for name in ["gone", "broken"] {
        queue
            .offer(
                ObjectKey::service("team", name),
                want.clone(),
                &ObjectStatus::default(),
            )
            .await;
    }
    assert_eq!(metrics.status_pending.get(), 2);
    let uri =
        |n: &str| format!("/apis/portcullis.dev/v1alpha1/namespaces/team/services/{n}/status?");
    expect(
        &mut server,
        "PATCH",
        &uri("gone"),
        404,
        crate::fixtures::api_error(404, "NotFound"),
    )
    .await;
    expect(
        &mut server,
        "PATCH",
        &uri("broken"),
        500,
        crate::fixtures::api_error(500, "InternalError"),
    )
    .await;
    drop(queue);
    writer.await.unwrap();
    let writes = |result: &str| {
        metrics
            .status_writes
            .with_label_values(&["Service", result])
            .get()
    };
    assert_eq!(
        (writes("not_found"), writes("error"), writes("ok")),
        (1, 1, 0)
    );
    // The failed one is forgotten so the next round offers it again; the deleted one
    // will never show up in the watch, so it is not awaited either.
    assert_eq!(metrics.status_pending.get(), 0);
}
