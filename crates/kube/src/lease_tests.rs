use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::*;
use crate::fixtures::{api_error, expect, mock_client};

const URI: &str = "/apis/coordination.k8s.io/v1/namespaces/system/leases/portcullis";

fn config() -> LeaseConfig {
    LeaseConfig {
        namespace: "system".into(),
        name: "portcullis".into(),
        identity: "pod-a".into(),
        duration: Duration::from_secs(15),
        renew_every: Duration::from_secs(5),
    }
}

fn now() -> Timestamp {
    "2026-11-22T12:00:00Z".parse().unwrap()
}

fn lease(holder: &str, renewed: &str, rv: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "portcullis", "namespace": "system", "resourceVersion": rv},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                 "acquireTime": "2026-11-22T11:00:00.000000Z", "renewTime": renewed, "leaseTransitions": 2},
    })
}

#[tokio::test]
async fn creates_a_missing_lease() {
    let (client, mut server) = mock_client();
    let elector = Elector::new(client, config(), KubeMetrics::unregistered());
    let api = tokio::spawn(async move {
        expect(&mut server, "GET", URI, 404, api_error(404, "NotFound")).await;
        let body = expect(
            &mut server,
            "POST",
            "/apis/coordination.k8s.io/v1/namespaces/system/leases?",
            201,
            lease("pod-a", "2026-11-22T12:00:00.000000Z", "1"),
        )
        .await;
        assert_eq!(body["spec"]["holderIdentity"], "pod-a");
        assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
        assert_eq!(body["spec"]["leaseTransitions"], 0);
    });
    assert!(elector.try_acquire_or_renew(now()).await);
    assert!(*elector.leader_rx().borrow());
    api.await.unwrap();
}

#[tokio::test]
async fn a_fresh_lease_held_by_a_peer_is_left_alone() {
    let (client, mut server) = mock_client();
    let elector = Elector::new(client, config(), KubeMetrics::unregistered());
    let api = tokio::spawn(async move {
        expect(
            &mut server,
            "GET",
            URI,
            200,
            lease("pod-b", "2026-11-22T11:59:55.000000Z", "7"),
        )
        .await;
    });
    assert!(!elector.try_acquire_or_renew(now()).await);
    api.await.unwrap();
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_with_the_resource_version_read() {
    let (client, mut server) = mock_client();
    let elector = Elector::new(client, config(), KubeMetrics::unregistered());
    let api = tokio::spawn(async move {
        expect(
            &mut server,
            "GET",
            URI,
            200,
            lease("pod-b", "2026-11-22T11:59:40.000000Z", "7"),
        )
        .await;
        let body = expect(
            &mut server,
            "PUT",
            &format!("{URI}?"),
            200,
            lease("pod-a", "2026-11-22T12:00:00.000000Z", "8"),
        )
        .await;
        assert_eq!(body["metadata"]["resourceVersion"], "7");
        assert_eq!(body["spec"]["holderIdentity"], "pod-a");
        assert_eq!(body["spec"]["leaseTransitions"], 3);
        assert_eq!(body["spec"]["acquireTime"], "2026-11-22T12:00:00.000000Z");
    });
    assert!(elector.try_acquire_or_renew(now()).await);
    api.await.unwrap();
}

#[tokio::test]
async fn losing_the_race_for_a_lease_means_follower() {
    let (client, mut server) = mock_client();
    let elector = Elector::new(client, config(), KubeMetrics::unregistered());
    let api = tokio::spawn(async move {
        expect(
            &mut server,
            "GET",
            URI,
            200,
            lease("pod-b", "2026-11-22T11:59:40.000000Z", "7"),
        )
        .await;
        expect(
            &mut server,
            "PUT",
            &format!("{URI}?"),
            409,
            api_error(409, "Conflict"),
        )
        .await;
    });
    assert!(!elector.try_acquire_or_renew(now()).await);
    api.await.unwrap();
}

#[tokio::test]
async fn the_holder_renews_and_releases() {
    let (client, mut server) = mock_client();
    let elector = Elector::new(client, config(), KubeMetrics::unregistered());
    let api = tokio::spawn(async move {
        expect(
            &mut server,
            "GET",
            URI,
            200,
            lease("pod-a", "2026-11-22T11:59:58.000000Z", "9"),
        )
        .await;
        let body = expect(
            &mut server,
            "PUT",
            &format!("{URI}?"),
            200,
            lease("pod-a", "2026-11-22T12:00:00.000000Z", "10"),
        )
        .await;
        assert_eq!(body["metadata"]["resourceVersion"], "9");
        assert_eq!(body["spec"]["renewTime"], "2026-11-22T12:00:00.000000Z");
        assert_eq!(
            body["spec"]["leaseTransitions"], 2,
            "a renewal is not a transition"
        );
        // Release: the holder field is cleared, with the resourceVersion check.
        expect(
            &mut server,
            "GET",
            URI,
            200,
            lease("pod-a", "2026-11-22T12:00:00.000000Z", "10"),
        )
        .await;
        let body = expect(
            &mut server,
            "PUT",
            &format!("{URI}?"),
            200,
            lease("", "2026-11-22T12:00:00.000000Z", "11"),
        )
        .await;
        assert_eq!(body["metadata"]["resourceVersion"], "10");
        assert!(body["spec"].get("holderIdentity").is_none(), "{body}");
    });
    assert!(elector.try_acquire_or_renew(now()).await);
    elector.release().await.unwrap();
    assert!(!*elector.leader_rx().borrow());
    api.await.unwrap();
}

#[tokio::test]
async fn lease_metrics_follow_leadership_and_api_errors() {
    let (client, mut server) = mock_client();
    let metrics = KubeMetrics::unregistered();
    let elector = Elector::new(client, config(), metrics.clone());
    let transitions = |role: &str| metrics.lease_transitions.with_label_values(&[role]).get();
    let api = tokio::spawn(async move {
        // Round 1: taken over from an expired holder.
        expect(
            &mut server,
            "GET",
            URI,
            200,
            lease("pod-b", "2026-11-22T11:59:40.000000Z", "7"),
        )
        .await;
        expect(
            &mut server,
            "PUT",
            &format!("{URI}?"),
            200,
            lease("pod-a", "2026-11-22T12:00:00.000000Z", "8"),
        )
        .await;
        // Round 2: renewed.
        expect(
            &mut server,
            "GET",
            URI,
            200,
            lease("pod-a", "2026-11-22T12:00:00.000000Z", "8"),
        )
        .await;
        expect(
            &mut server,
            "PUT",
            &format!("{URI}?"),
            200,
            lease("pod-a", "2026-11-22T12:00:00.000000Z", "9"),
        )
        .await;
        // Round 3: the API server fails; a holder that cannot renew stops writing.
        expect(
            &mut server,
            "GET",
            URI,
            500,
            api_error(500, "InternalError"),
        )
        .await;
    });
    assert!(elector.try_acquire_or_renew(now()).await);
    assert_eq!((metrics.leader.get(), transitions("leader")), (1, 1));
    assert!(elector.try_acquire_or_renew(now()).await);
    assert_eq!(transitions("leader"), 1, "a renewal is not a transition");
    assert!(!elector.try_acquire_or_renew(now()).await);
    assert_eq!(
        (
            metrics.leader.get(),
            transitions("follower"),
            metrics.lease_errors.get()
        ),
        (0, 1, 1)
    );
    api.await.unwrap();
}
