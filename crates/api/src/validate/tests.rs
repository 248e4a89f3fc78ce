use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use super::*;
use crate::{Backend, Destination, PathMatch, RouteMatch, RouteSpec, ServiceSpec};

pub(crate) fn mk_service(name: &str) -> Service {
    let mut s = Service::new(
        name,
        ServiceSpec {
            destinations: vec![Destination {
                name: "a".into(),
                address: Some("127.0.0.1:8080".into()),
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    s.metadata.namespace = Some("team".into());
    s
}

pub(crate) fn mk_route(name: &str, age: i64, paths: Vec<PathMatch>) -> Route {
    let mut r = Route::new(
        name,
        RouteSpec {
            match_: RouteMatch {
                paths,
                ..Default::default()
            },
            backends: vec![Backend {
                service: "svc".into(),
                weight: None,
            }],
            ..Default::default()
        },
    );
    r.metadata.namespace = Some("team".into());
    r.metadata.creation_timestamp =
        Some(Time(Timestamp::from_second(1_700_000_000 + age).unwrap()));
    r
}

pub(super) fn messages(o: &Outcome) -> Vec<String> {
    o.problems().map(|i| i.to_string()).collect()
}

#[test]
fn valid_objects_are_served() {
    let o = validate(
        &[mk_route("r", 0, vec![PathMatch::prefix("/")])],
        &[mk_service("svc")],
    );
    assert!(messages(&o).is_empty(), "{:?}", messages(&o));
    assert_eq!(o.model.routes.len(), 1);
    assert_eq!(o.model.services.len(), 1);
    assert!(o.reports.iter().all(Report::is_served));
}

#[test]
fn unknown_service_is_unresolved_and_not_served() {
    let mut r = mk_route("r", 0, vec![PathMatch::prefix("/")]);
    r.spec.backends[0].service = "nope".into();
    let o = validate(&[r], &[mk_service("svc")]);
    assert_eq!(
        messages(&o),
        [
            "Route team/r: spec.backends[0].service: Service team/nope does not exist; create it or fix the name (Routes reference Services in their own namespace)"
        ]
    );
    assert!(o.model.routes.is_empty());
    let report = o.report(&ObjectKey::route("team", "r")).unwrap();
    let resolved = report
        .conditions()
        .into_iter()
        .find(|c| c.type_ == "ResolvedRefs")
        .unwrap();
    assert_eq!(resolved.status, "False");
}

#[test]
fn timeout_over_60s_names_field_and_limit() {
    let mut r = mk_route("r", 0, vec![PathMatch::prefix("/")]);
    r.spec.timeout = Some(crate::Duration::from_secs(90));
    let o = validate(&[r], &[mk_service("svc")]);
    let m = messages(&o);
    assert!(
        m[0].starts_with("Route team/r: spec.timeout: 90s is over the 60s maximum"),
        "{m:?}"
    );
}

#[test]
fn empty_and_duplicate_paths() {
    let o = validate(&[mk_route("r", 0, vec![])], &[mk_service("svc")]);
    assert!(
        messages(&o)[0].contains("spec.match.paths: no paths"),
        "{:?}",
        messages(&o)
    );
    let o = validate(
        &[mk_route(
            "r",
            0,
            vec![
                PathMatch::exact("/a"),
                PathMatch::exact("/a"),
                PathMatch::exact(""),
            ],
        )],
        &[mk_service("svc")],
    );
    let m = messages(&o);
    assert!(
        m.iter()
            .any(|m| m.contains("spec.match.paths[1].exact: duplicate path exact: /a")),
        "{m:?}"
    );
    assert!(
        m.iter()
            .any(|m| m.contains("spec.match.paths[2].exact: empty path")),
        "{m:?}"
    );
}

#[test]
fn malformed_hosts() {
    let mut r = mk_route("r", 0, vec![PathMatch::prefix("/")]);
    r.spec.hosts = vec!["https://api.example.com".into(), "Api.example.com".into()];
    let m = messages(&validate(&[r], &[mk_service("svc")]));
    assert!(
        m[0].contains("spec.hosts[0]: \"https://api.example.com\" is not a host name"),
        "{m:?}"
    );
    assert!(
        m[1].contains("spec.hosts[1]") && m[1].contains("\"api.example.com\""),
        "{m:?}"
    );
}

#[test]
fn weights_summing_to_zero() {
    let mut r = mk_route("r", 0, vec![PathMatch::prefix("/")]);
    r.spec.backends[0].weight = Some(0);
    let mut s = mk_service("svc");
    s.spec.destinations[0].weight = Some(0);
    let m = messages(&validate(&[r], &[s]));
    assert!(
        m.iter().any(
            |m| m.starts_with("Service team/svc: spec.destinations[].weight: weights sum to 0")
        ),
        "{m:?}"
    );
    // The Route is invalid on its own too, so it is reported as such, not as unresolved.
    assert!(
        m.iter()
            .any(|m| m.starts_with("Route team/r: spec.backends[].weight: weights sum to 0")),
        "{m:?}"
    );
}

#[test]
fn newer_route_with_same_match_is_conflicted_and_names_the_winner() {
    let old = mk_route("old", 0, vec![PathMatch::exact("/a")]);
    let new = mk_route(
        "new",
        10,
        vec![PathMatch::exact("/a"), PathMatch::exact("/b")],
    );
    // Input order must not matter: age decides.
    let o = validate(&[new, old], &[mk_service("svc")]);
    let report = o.report(&ObjectKey::route("team", "new")).unwrap();
    let conflict = report.conflict.as_ref().expect("conflicted");
    assert!(
        conflict
            .message
            .contains("already served by the older Route team/old"),
        "{}",
        conflict.message
    );
    assert!(o.model.routes.iter().all(|e| e.key.name == "old"));
    let cond = report
        .conditions()
        .into_iter()
        .find(|c| c.type_ == "Conflicted")
        .unwrap();
    assert!(cond.is_true());
}

#[test]
fn same_age_conflict_is_decided_by_namespace_and_name() {
    let a = mk_route("a", 0, vec![PathMatch::exact("/x")]);
    let b = mk_route("b", 0, vec![PathMatch::exact("/x")]);
    let o = validate(&[b, a], &[mk_service("svc")]);
    assert!(
        o.report(&ObjectKey::route("team", "b"))
            .unwrap()
            .conflict
            .is_some()
    );
    assert!(
        o.report(&ObjectKey::route("team", "a"))
            .unwrap()
            .conflict
            .is_none()
    );
}

#[test]
fn different_methods_or_hosts_do_not_conflict() {
    let mut get = mk_route("get", 0, vec![PathMatch::exact("/x")]);
    get.spec.match_.methods = vec!["GET".into()];
    let mut post = mk_route("post", 1, vec![PathMatch::exact("/x")]);
    post.spec.match_.methods = vec!["post".into()];
    let mut other_host = mk_route("host", 2, vec![PathMatch::exact("/x")]);
    other_host.spec.hosts = vec!["a.example.com".into()];
    let o = validate(&[get, post, other_host], &[mk_service("svc")]);
    assert!(messages(&o).is_empty(), "{:?}", messages(&o));
}

#[test]
fn precedence_specific_exact_longer_then_age() {
    let generic_long = mk_route("generic", 0, vec![PathMatch::prefix("/api/v1/items")]);
    let mut hosted_short = mk_route("hosted", 1, vec![PathMatch::prefix("/")]);
    hosted_short.spec.hosts = vec!["api.example.com".into()];
    let prefix_first = mk_route("prefix", 2, vec![PathMatch::prefix("/api")]);
    let longer_later = mk_route("longer", 3, vec![PathMatch::prefix("/api/v2")]);
    let exact = mk_route("exact", 4, vec![PathMatch::exact("/api")]);
    let o = validate(
        &[
            generic_long,
            hosted_short,
            prefix_first,
            longer_later,
            exact,
        ],
        &[mk_service("svc")],
    );
    let order: Vec<&str> = o.model.routes.iter().map(|e| e.key.name.as_str()).collect();
    assert_eq!(order, ["hosted", "exact", "generic", "longer", "prefix"]);
}

#[test]
fn service_rules() {
    let mut s = mk_service("svc");
    s.spec.destinations.push(Destination {
        name: "a".into(),
        address: Some("nohost".into()),
        ..Default::default()
    });
    s.spec.destinations.push(Destination {
        name: "c".into(),
        ..Default::default()
    });
    s.spec.timeout = Some(crate::Duration::from_secs(61));
    let m = messages(&validate(&[] as &[Route], &[s]));
    assert!(
        m.iter()
            .any(|m| m.contains("spec.destinations[1].name: duplicate destination name")),
        "{m:?}"
    );
    assert!(
        m.iter()
            .any(|m| m.contains("spec.destinations[1].address: \"nohost\" has no port")),
        "{m:?}"
    );
    assert!(
        m.iter()
            .any(|m| m.contains("spec.destinations[2]: neither address nor serviceRef")),
        "{m:?}"
    );
    assert!(
        m.iter()
            .any(|m| m.contains("spec.timeout: 61s is over the 60s maximum")),
        "{m:?}"
    );
}

#[test]
fn route_to_invalid_service_says_so() {
    let mut s = mk_service("svc");
    s.spec.destinations.clear();
    let o = validate(&[mk_route("r", 0, vec![PathMatch::prefix("/")])], &[s]);
    assert!(
        messages(&o)
            .iter()
            .any(|m| m.contains("Service team/svc is not accepted")),
        "{:?}",
        messages(&o)
    );
}

#[test]
fn duplicate_objects_keep_the_first() {
    let o = validate(
        &[
            mk_route("r", 0, vec![PathMatch::prefix("/")]),
            mk_route("r", 0, vec![PathMatch::prefix("/x")]),
        ],
        &[mk_service("svc")],
    );
    assert_eq!(o.model.routes.len(), 1);
    assert!(messages(&o)[0].contains("defined more than once"));
    // Looking the key up finds the served first copy, not the refused second.
    let key = o.model.routes[0].key.clone();
    assert!(o.report(&key).is_some_and(Report::is_served));
    let missing = crate::ObjectKey::service("team", "r");
    assert!(o.report(&missing).is_none());
}

#[test]
fn duplicates_are_found_when_copies_are_not_side_by_side() {
    // Sorted input finds copies next to each other; this order needs the other way.
    let o = validate(
        &[
            mk_route("r", 0, vec![PathMatch::prefix("/")]),
            mk_route("q", 0, vec![PathMatch::prefix("/q")]),
            mk_route("r", 0, vec![PathMatch::prefix("/x")]),
        ],
        &[mk_service("svc")],
    );
    let paths: Vec<&str> = o.model.routes.iter().map(|e| e.path_parts().1).collect();
    assert_eq!(paths, ["/q", "/"]);
    assert_eq!(messages(&o).len(), 1);
    assert!(messages(&o)[0].contains("Route team/r is defined more than once"));
}
