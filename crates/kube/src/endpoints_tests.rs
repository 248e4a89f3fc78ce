use std::collections::BTreeMap;

use k8s_openapi::api::{
    core::v1::{Service as KubeService, ServicePort, ServiceSpec as KubeServiceSpec},
    discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use portcullis_api::{Destination, ServiceRef, validate::validate};
use portcullis_plane::publish::to_snapshot;
use portcullis_translate::{Options, translate};
use portcullis_xds::type_url;

use super::*;
use crate::fixtures::mk_service;

fn mk_kube_service(ns: &str, name: &str, ports: &[(&str, i32)]) -> KubeService {
    KubeService {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        spec: Some(KubeServiceSpec {
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p)| ServicePort {
                        name: Some((*n).into()),
                        port: *p,
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

/// `endpoints`: (ip, ready, terminating).
fn mk_slice(
    ns: &str,
    name: &str,
    service: &str,
    port: (&str, i32),
    endpoints: &[(&str, bool, bool)],
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            labels: Some([(SERVICE_NAME_LABEL.to_string(), service.to_string())].into()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        ports: Some(vec![EndpointPort {
            name: Some(port.0.into()),
            port: Some(port.1),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        endpoints: Some(
            endpoints
                .iter()
                .map(|(ip, ready, terminating)| Endpoint {
                    addresses: vec![(*ip).into()],
                    conditions: Some(EndpointConditions {
                        ready: Some(*ready),
                        serving: Some(*ready),
                        terminating: Some(*terminating),
                    }),
                    ..Default::default()
                })
                .collect(),
        ),
    }
}

#[test]
fn ready_endpoints_on_the_target_port_of_the_named_service_port() {
    let svc = mk_kube_service("team", "web", &[("http", 80), ("admin", 9000)]);
    let slices = [
        mk_slice(
            "team",
            "web-1",
            "web",
            ("http", 8080),
            &[("10.0.0.2", true, false), ("10.0.0.1", true, false)],
        ),
        mk_slice(
            "team",
            "web-2",
            "web",
            ("http", 8080),
            &[("10.0.0.3", false, false), ("10.0.0.4", true, true)],
        ),
        // Another Service's slice and the same name in another namespace: ignored.
        mk_slice(
            "team",
            "api-1",
            "api",
            ("http", 8080),
            &[("10.9.0.1", true, false)],
        ),
        mk_slice(
            "other",
            "web-1",
            "web",
            ("http", 8080),
            &[("10.8.0.1", true, false)],
        ),
        // The admin port's slice entry: another port name.
        mk_slice(
            "team",
            "web-3",
            "web",
            ("admin", 9999),
            &[("10.0.0.5", true, false)],
        ),
    ];
    let got = addresses(Some(&svc), &slices, "team", "web", 80).unwrap();
    assert_eq!(
        got,
        vec![
            "10.0.0.1:8080".parse().unwrap(),
            "10.0.0.2:8080".parse().unwrap()
        ]
    );
    let admin = addresses(Some(&svc), &slices, "team", "web", 9000).unwrap();
    assert_eq!(admin, vec!["10.0.0.5:9999".parse().unwrap()]);
}

#[test]
fn missing_service_or_port_says_what_to_fix() {
    let err = addresses(None, &[], "team", "web", 80).unwrap_err();
    assert!(err.contains("team/web does not exist"), "{err}");
    let svc = mk_kube_service("team", "web", &[("http", 80)]);
    let err = addresses(Some(&svc), &[], "team", "web", 81).unwrap_err();
    assert!(err.contains("no port 81 (it has [80])"), "{err}");
}

fn ref_service(weight_ref: u32, weight_addr: u32) -> portcullis_api::Service {
    let mut s = mk_service("team", "web");
    s.spec.destinations = vec![
        Destination {
            name: "pods".into(),
            service_ref: Some(ServiceRef {
                name: "web".into(),
                port: 80,
            }),
            weight: Some(weight_ref),
            ..Default::default()
        },
        Destination {
            name: "legacy".into(),
            address: Some("10.1.0.1:80".into()),
            weight: Some(weight_addr),
            ..Default::default()
        },
    ];
    s
}

fn resolved_with(ips: &[&str]) -> ServiceEndpoints {
    let kube: BTreeMap<(String, String), KubeService> = [(
        ("team".into(), "web".into()),
        mk_kube_service("team", "web", &[("", 80)]),
    )]
    .into();
    let eps: Vec<(&str, bool, bool)> = ips.iter().map(|ip| (*ip, true, false)).collect();
    let slices: BTreeMap<(String, String), EndpointSlice> = [(
        ("team".into(), "web-1".into()),
        mk_slice("team", "web-1", "web", ("", 8080), &eps),
    )]
    .into();
    resolve([&ref_service(1, 1)], &kube, &slices)
}

#[test]
fn expansion_keeps_each_destinations_share() {
    let model = validate(&[] as &[portcullis_api::Route], &[ref_service(90, 10)]).model;
    let expanded = expand(
        &model,
        &resolved_with(&["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
    );
    let svc = expanded.services.values().next().unwrap();
    let weights: Vec<(Option<&str>, u32)> = svc
        .spec
        .destinations
        .iter()
        .map(|d| (d.address.as_deref(), d.weight()))
        .collect();
    assert_eq!(
        weights,
        vec![
            (Some("10.0.0.1:8080"), 3000),
            (Some("10.0.0.2:8080"), 3000),
            (Some("10.0.0.3:8080"), 3000),
            (Some("10.1.0.1:80"), 1000),
        ]
    );
    // Services without serviceRef are untouched.
    let plain = validate(
        &[] as &[portcullis_api::Route],
        &[mk_service("team", "plain")],
    )
    .model;
    let out = expand(&plain, &ServiceEndpoints::new());
    assert_eq!(
        out.services.values().next().unwrap().spec,
        plain.services.values().next().unwrap().spec
    );
}

#[test]
fn endpoint_churn_changes_only_the_eds_version() {
    let model = validate(&[] as &[portcullis_api::Route], &[ref_service(1, 1)]).model;
    let snap = |ips: &[&str]| {
        to_snapshot(&translate(
            &expand(&model, &resolved_with(ips)),
            &Options::default(),
        ))
    };
    let before = snap(&["10.0.0.1", "10.0.0.2"]);
    let after = snap(&["10.0.0.1", "10.0.0.3"]);
    for t in [
        type_url::CLUSTER,
        type_url::LISTENER,
        type_url::ROUTE_CONFIGURATION,
    ] {
        assert_eq!(before.type_version(t), after.type_version(t), "{t}");
    }
    assert_ne!(
        before.type_version(type_url::CLUSTER_LOAD_ASSIGNMENT),
        after.type_version(type_url::CLUSTER_LOAD_ASSIGNMENT)
    );
}
