//! Synthetic manifests: `routes` Routes over `services` Services, spread over 50 hosts,
//! with methods, exact and prefix paths, and two regional destinations per Service.
use std::sync::Arc;

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use portcullis_api::{
    Backend, Destination, Document, Model, ObjectKey, PathMatch, Route, RouteMatch, RouteSpec,
    Service, ServiceSpec, validate::validate,
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
            hosts: vec![format!("api{}.example.com", i % HOSTS)],
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

/// How many hostnames the Routes spread over (`api<i>.example.com`).
pub const HOSTS: usize = 50;

/// One TLS Host per hostname, admitting every namespace, and the certificate they all
/// serve (`*.example.com`, from a throwaway CA).
pub fn tls_hosts() -> (Vec<portcullis_api::Host>, portcullis_api::Certificate) {
    use portcullis_api::{Host, HostSpec, HostTls, host::AllowedRoutes};
    let hosts = (0..HOSTS)
        .map(|i| {
            let mut h = Host::new(
                &format!("api{i}"),
                HostSpec {
                    hostname: format!("api{i}.example.com"),
                    tls: Some(HostTls {
                        certificate_file: Some("bench.crt".into()),
                        key_file: Some("bench.key".into()),
                        ..Default::default()
                    }),
                    allowed_routes: Some(AllowedRoutes {
                        namespaces: vec!["*".into()],
                    }),
                },
            );
            h.metadata.namespace = Some("edge".into());
            h.metadata.creation_timestamp = Some(Time(
                Timestamp::from_second(1_600_000_000 + i as i64).unwrap(),
            ));
            h
        })
        .collect();
    let leaf = tls_leaf();
    let now = Timestamp::now().as_second();
    let cert = portcullis_tls::check(&leaf.cert_pem, &leaf.key_pem, "api0.example.com", now)
        .expect("the bench certificate checks");
    (hosts, cert)
}

/// The certificate the bench Hosts serve, as PEM: `*.example.com`, from a throwaway CA.
/// The Hosts name it `bench.crt` and `bench.key`.
pub fn tls_leaf() -> portcullis_tls::mtls::generate::Issued {
    let ca = portcullis_tls::mtls::generate::LocalCa::new("bench CA").expect("a CA");
    ca.issue("bench", &["*.example.com"], &[]).expect("a leaf")
}

/// The objects as a source hands them to reconcile: shared documents by key.
pub fn documents(
    routes: &[Route],
    services: &[Service],
    hosts: &[portcullis_api::Host],
) -> portcullis_plane::reconcile::Objects {
    let routes = routes.iter().map(|r| Document::Route(Arc::new(r.clone())));
    let services = services
        .iter()
        .map(|s| Document::Service(Arc::new(s.clone())));
    let hosts = hosts.iter().map(|h| Document::Host(Arc::new(h.clone())));
    routes
        .chain(services)
        .chain(hosts)
        .map(|d| (d.key(), d))
        .collect()
}

/// Every one of `hosts` serving `cert`, as the control plane loads certificates.
pub fn certificates(
    hosts: &[portcullis_api::Host],
    cert: &portcullis_api::Certificate,
) -> portcullis_api::Certificates {
    hosts
        .iter()
        .map(|h| {
            let state = portcullis_api::CertificateState {
                serving: Some(cert.clone()),
                ..Default::default()
            };
            (ObjectKey::new("Host", &h.metadata), state)
        })
        .collect()
}
