//! Synthetic manifests: `routes` Routes over `services` Services, spread over 50 hosts,
//! with methods, exact and prefix paths, and two regional destinations per Service.
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use portcullis_api::{
    Backend, Destination, Model, PathMatch, Route, RouteMatch, RouteSpec, Service, ServiceSpec,
    validate::validate,
};

pub fn objects(routes: usize, services: usize) -> (Vec<Route>, Vec<Service>) {
    let svcs = (0..services)
        .map(|i| {
            let mut s = Service::new(
                &format!("svc-{i}"),
                ServiceSpec {
                    destinations: vec![
                        Destination {
                            name: "nyc".into(),
                            address: Some(format!("10.{}.{}.1:8080", i / 250, i % 250)),
                            weight: Some(90),
                            region: Some("nyc".into()),
                            ..Default::default()
                        },
                        Destination {
                            name: "ams".into(),
                            address: Some(format!("10.{}.{}.2:8080", i / 250, i % 250)),
                            weight: Some(10),
                            region: Some("ams".into()),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                },
            );
            s.metadata.namespace = Some(format!("team-{}", i % 20));
            s
        })
        .collect();
    let rts = (0..routes).map(|i| route(i, services, 0)).collect();
    (rts, svcs)
}

/// Route `i`; `revision` changes its path so an edit is a real change.
pub fn route(i: usize, services: usize, revision: usize) -> Route {
    let svc = i % services;
    let path = if i.is_multiple_of(3) {
        PathMatch::exact(&format!("/v1/r{i}/items/{revision}"))
    } else {
        PathMatch::prefix(&format!("/v1/r{i}/{revision}"))
    };
    let mut r = Route::new(
        &format!("route-{i}"),
        RouteSpec {
            hosts: vec![format!("api{}.example.com", i % 50)],
            match_: RouteMatch {
                methods: if i.is_multiple_of(2) {
                    vec!["GET".into()]
                } else {
                    vec![]
                },
                paths: vec![path],
                ..Default::default()
            },
            backends: vec![Backend {
                service: format!("svc-{svc}"),
                weight: None,
            }],
            ..Default::default()
        },
    );
    r.metadata.namespace = Some(format!("team-{}", svc % 20));
    r.metadata.creation_timestamp = Some(Time(
        Timestamp::from_second(1_700_000_000 + i as i64).unwrap(),
    ));
    r
}

pub fn model(routes: &[Route], services: &[Service]) -> Model {
    let outcome = validate(routes, services);
    assert_eq!(outcome.problems().count(), 0, "generated objects are valid");
    outcome.model
}
