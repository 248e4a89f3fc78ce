use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::{
    fixtures::{expect, mock_client},
    fleet::{Nack, TypeState},
};

fn config(replica: &str) -> FleetConfig {
    FleetConfig {
        namespace: "system".into(),
        lease_name: "portcullis".into(),
        replica: replica.into(),
        pod_uid: "0b9c-uid".into(),
    }
}

fn group(id: &str, nack: Option<&str>) -> EnvoyGroup {
    EnvoyGroup {
        count: 2,
        nodes: vec![id.into()],
        types: [(
            "type.googleapis.com/envoy.config.route.v3.RouteConfiguration".to_owned(),
            TypeState {
                acked: Some("v1".into()),
                nack: nack.map(|m| Nack {
                    version: "v2".into(),
                    message: m.into(),
                }),
            },
        )]
        .into(),
    }
}

fn report(replica: &str, updated_at: &str) -> FleetReport {
    FleetReport {
        replica: replica.into(),
        updated_at: updated_at.into(),
        envoys: vec![group(&format!("{replica}-envoy"), Some("bad regex"))],
    }
}

/// The ConfigMap as the API server would list it.
fn listed(replica: &str, updated_at: &str, rv: &str) -> ConfigMap {
    let mut cm = to_configmap(&config(replica), &report(replica, updated_at));
    cm.metadata.resource_version = Some(rv.into());
    cm
}

#[tokio::test]
async fn a_report_is_applied_server_side_and_owned_by_the_pod() {
    let (client, mut server) = mock_client();
    let api: Api<ConfigMap> = Api::namespaced(client, "system");
    let sent = report("pod-a", "2026-11-22T12:00:00Z");
    let mock = tokio::spawn(async move {
        let body = expect(
            &mut server,
            "PATCH",
            "/api/v1/namespaces/system/configmaps/portcullis-xds-pod-a?&force=true&fieldManager=portcullis",
            200,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "portcullis-xds-pod-a"}}),
        )
        .await;
        assert_eq!(body["apiVersion"], "v1");
        assert_eq!(body["kind"], "ConfigMap");
        assert_eq!(body["metadata"]["labels"][LABEL], "portcullis");
        assert_eq!(
            body["metadata"]["ownerReferences"],
            json!([{"apiVersion": "v1", "kind": "Pod", "name": "pod-a", "uid": "0b9c-uid"}])
        );
        let data: FleetReport =
            serde_json::from_str(body["data"]["report.json"].as_str().unwrap()).unwrap();
        data
    });
    write(&api, &config("pod-a"), &sent).await.unwrap();
    assert_eq!(mock.await.unwrap(), sent);
}

#[test]
fn outside_a_cluster_there_is_no_owner() {
    let mut c = config("dev");
    c.pod_uid.clear();
    let cm = to_configmap(&c, &report("dev", "2026-11-22T12:00:00Z"));
    assert!(cm.metadata.owner_references.is_none());
}

#[test]
fn unreadable_reports_name_what_is_wrong() {
    let mut cm = listed("pod-b", "2026-11-22T12:00:00Z", "1");
    cm.data = Some(BTreeMap::from([("report.json".into(), "{".into())]));
    let e = from_configmap(&cm).unwrap_err();
    assert!(e.starts_with("data.report.json: "), "{e}");
    cm.data = None;
    assert_eq!(from_configmap(&cm).unwrap_err(), "no data.report.json");
}

#[test]
fn the_leader_counts_fresh_peer_reports_only() {
    let wall: Timestamp = "2026-11-22T12:00:30Z".parse().unwrap();
    let start = Instant::now();
    let mut broken = listed("pod-d", "2026-11-22T12:00:00Z", "4");
    broken.data = None;
    let items = [
        listed("pod-a", "2026-11-22T12:00:25Z", "1"), // this replica
        listed("pod-b", "2026-11-22T12:00:25Z", "2"),
        listed("pod-c", "2026-11-22T11:50:00Z", "3"), // written ten minutes ago
        broken,
    ];
    let mut peers = Peers::default();
    peers.ingest(&items, start);
    assert_eq!(
        peers.envoys("pod-a", start, wall),
        vec![group("pod-b-envoy", Some("bad regex"))]
    );
    // pod-b stops rewriting its report: retired after STALE by the leader's clock.
    let later = start + STALE + Duration::from_secs(1);
    peers.ingest(&items, later);
    assert_eq!(peers.envoys("pod-a", later, wall), vec![]);
    // It rewrites it (a new resourceVersion): counted again.
    let items = [listed("pod-b", "2026-11-22T12:00:59Z", "9")];
    peers.ingest(&items, later);
    assert_eq!(peers.envoys("pod-a", later, wall).len(), 1);
}

#[tokio::test]
async fn only_the_leader_lists_reports() {
    let (client, mut server) = mock_client();
    let (leader_tx, leader_rx) = watch::channel(false);
    let (out_tx, mut out_rx) = watch::channel(Vec::new());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(read_loop(
        client,
        config("pod-a"),
        leader_rx,
        out_tx,
        async move {
            let _ = stop_rx.await;
        },
    ));
    // A follower sends nothing; becoming leader triggers a listing at once.
    leader_tx.send(true).unwrap();
    let now = Timestamp::now().to_string();
    let peer = serde_json::to_value(listed("pod-b", &now, "7")).unwrap();
    expect(
        &mut server,
        "GET",
        "/api/v1/namespaces/system/configmaps?&labelSelector=portcullis.dev%2Fxds-report%3Dportcullis",
        200,
        json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {}, "items": [peer]}),
    )
    .await;
    out_rx.changed().await.unwrap();
    assert_eq!(
        *out_rx.borrow_and_update(),
        vec![group("pod-b-envoy", Some("bad regex"))]
    );
    // Losing the lease forgets the peers.
    leader_tx.send(false).unwrap();
    out_rx.changed().await.unwrap();
    assert!(out_rx.borrow().is_empty());
    stop_tx.send(()).unwrap();
    reader.await.unwrap();
}
