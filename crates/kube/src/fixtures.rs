//! Test builders (`mk_*`) and the mock API server (`tower_test::mock::pair()` wrapped
//! as a `kube::Client`) whose scenarios assert method, URI and body of each request.
use http::{Request, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::{Client, client::Body};
use portcullis_api::{
    Backend, Destination, PathMatch, Route, RouteMatch, RouteSpec, Service, ServiceSpec,
};

pub fn meta(ns: &str, name: &str, age_secs: i64) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        generation: Some(1),
        creation_timestamp: Some(Time(
            jiff::Timestamp::from_second(1_700_000_000 + age_secs).unwrap(),
        )),
        ..Default::default()
    }
}

pub fn mk_service(ns: &str, name: &str) -> Service {
    Service {
        metadata: meta(ns, name, 0),
        spec: ServiceSpec {
            destinations: vec![Destination {
                name: "a".into(),
                address: Some("10.0.0.1:8080".into()),
                ..Default::default()
            }],
            ..Default::default()
        },
        status: None,
    }
}

/// A Route created `age_secs` after the epoch of these tests, on `exact` path.
pub fn mk_route(ns: &str, name: &str, age_secs: i64, exact: &str, service: &str) -> Route {
    Route {
        metadata: meta(ns, name, age_secs),
        spec: RouteSpec {
            match_: RouteMatch {
                paths: vec![PathMatch {
                    exact: Some(exact.into()),
                    prefix: None,
                }],
                ..Default::default()
            },
            backends: vec![Backend {
                service: service.into(),
                weight: None,
            }],
            ..Default::default()
        },
        status: None,
    }
}

pub type ApiServer = tower_test::mock::Handle<Request<Body>, Response<Body>>;

pub fn mock_client() -> (Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

/// Expects one request: asserts method and URI, returns its body as JSON (Null when
/// empty) and answers with `status` and `reply`.
pub async fn expect(
    server: &mut ApiServer,
    method: &str,
    uri: &str,
    status: u16,
    reply: serde_json::Value,
) -> serde_json::Value {
    let (request, send) = server.next_request().await.expect("a request");
    assert_eq!(
        request.method().as_str(),
        method,
        "method of {}",
        request.uri()
    );
    assert_eq!(request.uri().to_string(), uri);
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&reply).unwrap()))
            .unwrap(),
    );
    body
}

/// A Kubernetes `Status` error body.
pub fn api_error(code: u16, reason: &str) -> serde_json::Value {
    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason, "reason": reason, "code": code})
}
