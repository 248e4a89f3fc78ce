use base64::Engine;
use serde_json::{Value, json};

use super::*;
use crate::fixtures::{api_error, expect, mock_client};

const SECRETS: &str = "/api/v1/namespaces/system/secrets";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn unb64(v: &Value) -> String {
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap(),
    )
    .unwrap()
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn leaf() -> Leaf {
    Leaf {
        name: "p-authz-tls".into(),
        dns: vec!["p-authz.system.svc".into()],
        nodes: vec![],
    }
}

/// A Secret as the API server returns it, from a body the client sent.
fn stored(mut body: Value, rv: &str) -> Value {
    body["metadata"]["resourceVersion"] = json!(rv);
    body["metadata"]["namespace"] = json!("system");
    body
}

fn ca_secret(ca: &LocalCa, labelled: bool) -> Value {
    let labels = if labelled {
        json!({MANAGED_LABEL: "true"})
    } else {
        json!({})
    };
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "p-ca", "namespace": "system", "resourceVersion": "3", "labels": labels},
        "data": {"ca.crt": b64(&ca.ca_pem()), "ca.key": b64(&ca.key_pem())}})
}

fn api() -> (Api<Secret>, crate::fixtures::ApiServer) {
    let (client, server) = mock_client();
    (Api::namespaced(client, "system"), server)
}

#[test]
fn a_plan_names_what_is_wrong_with_it() {
    let ok = r#"{"caSecret":"p-ca","xdsDns":["p-xds.system.svc"],
        "secrets":[{"name":"p-authz-tls","dns":["p-authz.system.svc"]},{"name":"p-envoy-tls","nodes":["p-envoy-*"]}]}"#;
    let plan = Plan::parse(ok).unwrap();
    assert_eq!(plan.secrets[1].nodes, ["p-envoy-*"]);

    let err = |json: &str| format!("{:#}", Plan::parse(json).unwrap_err());
    assert!(
        err(r#"{"caSecret":"a","xdsDns":["x"],"secrets":[],"extra":1}"#)
            .contains("unknown field `extra`")
    );
    assert!(
        err(r#"{"caSecret":"a","xdsDns":["x"],"secrets":[{"name":"a","dns":["x"]}]}"#)
            .contains("\"a\" is named twice")
    );
    assert!(
        err(r#"{"caSecret":"a","xdsDns":["x"],"secrets":[{"name":"b"}]}"#)
            .contains("names no DNS name and no node")
    );
    assert!(err(r#"{"caSecret":"a","xdsDns":[],"secrets":[]}"#).contains("`xdsDns` is empty"));
    let many: Vec<Value> = (0..17)
        .map(|i| json!({"name": format!("s{i}"), "dns": ["x"]}))
        .collect();
    let json = json!({"caSecret": "a", "xdsDns": ["x"], "secrets": many}).to_string();
    assert!(err(&json).contains("at most 16"));
}

#[tokio::test]
async fn a_missing_ca_is_made_and_stored_with_its_label() {
    let (api, mut server) = api();
    let mock = tokio::spawn(async move {
        expect(
            &mut server,
            "GET",
            &format!("{SECRETS}/p-ca"),
            404,
            api_error(404, "NotFound"),
        )
        .await;
        let (request, send) = server.next_request().await.unwrap();
        assert_eq!(request.method(), "POST");
        let body: Value =
            serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap()).unwrap();
        send.send_response(
            http::Response::builder()
                .status(201)
                .body(kube::client::Body::from(
                    serde_json::to_vec(&stored(body.clone(), "1")).unwrap(),
                ))
                .unwrap(),
        );
        body
    });
    let ca = ensure_ca(&api, "p-ca").await.unwrap();
    let body = mock.await.unwrap();
    assert_eq!(body["metadata"]["labels"][MANAGED_LABEL], "true");
    assert_eq!(body["type"], "Opaque");
    assert_eq!(unb64(&body["data"]["ca.crt"]), ca.ca_pem());
    assert_eq!(unb64(&body["data"]["ca.key"]), ca.key_pem());
}

#[tokio::test]
async fn a_ca_made_by_another_replica_first_is_the_one_used() {
    let theirs = LocalCa::new("portcullis component CA").unwrap();
    let reply = ca_secret(&theirs, true);
    let (api, mut server) = api();
    let mock = tokio::spawn(async move {
        expect(
            &mut server,
            "GET",
            &format!("{SECRETS}/p-ca"),
            404,
            api_error(404, "NotFound"),
        )
        .await;
        expect(
            &mut server,
            "POST",
            &format!("{SECRETS}?"),
            409,
            api_error(409, "AlreadyExists"),
        )
        .await;
        expect(&mut server, "GET", &format!("{SECRETS}/p-ca"), 200, reply).await;
    });
    let ca = ensure_ca(&api, "p-ca").await.unwrap();
    mock.await.unwrap();
    assert_eq!(ca.ca_pem(), theirs.ca_pem());
}

#[tokio::test]
async fn a_ca_secret_portcullis_did_not_make_is_refused() {
    let someone = LocalCa::new("someone's").unwrap();
    let reply = ca_secret(&someone, false);
    let (api, mut server) = api();
    let mock = tokio::spawn(async move {
        expect(&mut server, "GET", &format!("{SECRETS}/p-ca"), 200, reply).await;
    });
    let err = ensure_ca(&api, "p-ca").await.err().unwrap().to_string();
    mock.await.unwrap();
    assert!(err.contains("did not make it"), "{err}");
    assert!(!err.contains(&someone.key_pem()[30..70]));
}

#[tokio::test]
async fn a_missing_leaf_is_issued_by_the_ca_for_its_names() {
    let ca = LocalCa::new("portcullis component CA").unwrap();
    let (api, mut server) = api();
    let mock = tokio::spawn(async move {
        expect(
            &mut server,
            "GET",
            &format!("{SECRETS}/p-authz-tls"),
            404,
            api_error(404, "NotFound"),
        )
        .await;
        expect(
            &mut server,
            "POST",
            &format!("{SECRETS}?"),
            201,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "p-authz-tls"}}),
        )
        .await
    });
    assert_eq!(
        ensure_leaf(&api, &ca, &leaf(), now()).await.unwrap(),
        Outcome::Created
    );
    let body = mock.await.unwrap();
    assert_eq!(body["type"], "kubernetes.io/tls");
    assert_eq!(body["metadata"]["labels"][MANAGED_LABEL], "true");
    assert_eq!(unb64(&body["data"]["ca.crt"]), ca.ca_pem());
    let cert = unb64(&body["data"]["tls.crt"]);
    assert_eq!(renewal_reason(&cert, &ca.ca_pem(), now()), None);
    let parsed = portcullis_tls::check(
        &cert,
        &unb64(&body["data"]["tls.key"]),
        "p-authz.system.svc",
        now(),
    );
    assert!(parsed.is_ok(), "{parsed:?}");
}

/// What a previous round stored for `leaf()`, issued by `ca`.
fn stored_leaf(ca: &LocalCa, names: &Leaf) -> Value {
    let issued = issue(ca, &names.name, &names.dns, &names.nodes).unwrap();
    let mut s = serde_json::to_value(secret(
        "p-authz-tls",
        "kubernetes.io/tls",
        &[
            ("tls.crt", &issued.cert_pem),
            ("tls.key", &issued.key_pem),
            ("ca.crt", &ca.ca_pem()),
        ],
        Some(&issued_for(names)),
    ))
    .unwrap();
    s["metadata"]["resourceVersion"] = json!("5");
    s
}

#[tokio::test]
async fn a_fresh_leaf_is_left_alone() {
    let ca = LocalCa::new("portcullis component CA").unwrap();
    let reply = stored_leaf(&ca, &leaf());
    let (api, mut server) = api();
    let mock = tokio::spawn(async move {
        expect(
            &mut server,
            "GET",
            &format!("{SECRETS}/p-authz-tls"),
            200,
            reply,
        )
        .await;
        // Nothing else: a write would be a second request.
        assert!(server.next_request().await.is_none());
    });
    assert_eq!(
        ensure_leaf(&api, &ca, &leaf(), now()).await.unwrap(),
        Outcome::Fresh
    );
    drop(api);
    mock.await.unwrap();
}

#[tokio::test]
async fn a_leaf_past_two_thirds_of_its_life_is_replaced_at_the_version_read() {
    let ca = LocalCa::new("portcullis component CA").unwrap();
    let reply = stored_leaf(&ca, &leaf());
    let (api, mut server) = api();
    let mock = tokio::spawn(async move {
        expect(
            &mut server,
            "GET",
            &format!("{SECRETS}/p-authz-tls"),
            200,
            reply,
        )
        .await;
        expect(
            &mut server,
            "PUT",
            &format!("{SECRETS}/p-authz-tls?"),
            200,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "p-authz-tls"}}),
        )
        .await
    });
    let later = now() + 70 * 86_400;
    let outcome = ensure_leaf(&api, &ca, &leaf(), later).await.unwrap();
    assert!(
        matches!(&outcome, Outcome::Renewed(why) if why.contains("lifetime left")),
        "{outcome:?}"
    );
    let body = mock.await.unwrap();
    assert_eq!(body["metadata"]["resourceVersion"], "5");
}

#[tokio::test]
async fn changed_names_or_a_new_ca_issue_again_and_a_lost_race_is_not_an_error() {
    let ca = LocalCa::new("portcullis component CA").unwrap();
    let mut old_names = leaf();
    old_names.dns = vec!["old.system.svc".into()];
    let renamed = stored_leaf(&ca, &old_names);
    let other_ca = stored_leaf(&LocalCa::new("portcullis component CA").unwrap(), &leaf());
    let (api, mut server) = api();
    let mock = tokio::spawn(async move {
        expect(
            &mut server,
            "GET",
            &format!("{SECRETS}/p-authz-tls"),
            200,
            renamed,
        )
        .await;
        expect(
            &mut server,
            "PUT",
            &format!("{SECRETS}/p-authz-tls?"),
            409,
            api_error(409, "Conflict"),
        )
        .await;
        expect(
            &mut server,
            "GET",
            &format!("{SECRETS}/p-authz-tls"),
            200,
            other_ca,
        )
        .await;
        expect(
            &mut server,
            "PUT",
            &format!("{SECRETS}/p-authz-tls?"),
            200,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "p-authz-tls"}}),
        )
        .await;
    });
    assert_eq!(
        ensure_leaf(&api, &ca, &leaf(), now()).await.unwrap(),
        Outcome::Raced
    );
    let outcome = ensure_leaf(&api, &ca, &leaf(), now()).await.unwrap();
    assert!(
        matches!(&outcome, Outcome::Renewed(why) if why.contains("not signed by the current CA")),
        "{outcome:?}"
    );
    mock.await.unwrap();
}

#[tokio::test]
async fn a_leaf_secret_portcullis_did_not_make_is_never_overwritten() {
    let ca = LocalCa::new("portcullis component CA").unwrap();
    let mut reply = stored_leaf(&ca, &leaf());
    reply["metadata"]["labels"] = json!({"app": "someone-else"});
    let (api, mut server) = api();
    let mock = tokio::spawn(async move {
        expect(
            &mut server,
            "GET",
            &format!("{SECRETS}/p-authz-tls"),
            200,
            reply,
        )
        .await;
        assert!(server.next_request().await.is_none());
    });
    let err = ensure_leaf(&api, &ca, &leaf(), now())
        .await
        .unwrap_err()
        .to_string();
    drop(api);
    mock.await.unwrap();
    assert!(
        err.contains("\"p-authz-tls\" exists but Portcullis did not make it"),
        "{err}"
    );
}

#[test]
fn the_own_certificate_is_kept_until_due_and_follows_a_new_ca() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().join("mtls");
    let plan = Plan {
        ca_secret: "p-ca".into(),
        xds_dns: vec!["p-xds.system.svc".into()],
        secrets: vec![],
    };
    let ca = LocalCa::new("portcullis component CA").unwrap();
    let files = ensure_own(&ca, &plan, &dir, now()).unwrap();
    let first = std::fs::read_to_string(&files.cert).unwrap();
    let key = std::fs::read_to_string(&files.key).unwrap();
    assert!(portcullis_tls::check(&first, &key, "p-xds.system.svc", now()).is_ok());
    assert_eq!(
        std::fs::metadata(&files.key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    ensure_own(&ca, &plan, &dir, now()).unwrap();
    assert_eq!(
        std::fs::read_to_string(&files.cert).unwrap(),
        first,
        "fresh: kept"
    );

    let next = LocalCa::new("portcullis component CA").unwrap();
    ensure_own(&next, &plan, &dir, now()).unwrap();
    let second = std::fs::read_to_string(&files.cert).unwrap();
    assert_ne!(second, first);
    assert_eq!(renewal_reason(&second, &next.ca_pem(), now()), None);
    assert_eq!(std::fs::read_to_string(&files.ca).unwrap(), next.ca_pem());
}
