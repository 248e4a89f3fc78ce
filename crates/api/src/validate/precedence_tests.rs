//! Precedence without auth bypass: the most specific path wins whatever methods or
//! headers a broader Route names; a Route naming a host hides host-less ones there,
//! and says so (`Shadowed`, `AuthBypassed` when the hiding Route is weaker).
use super::tests::{messages, mk_route, mk_service};
use super::*;
use crate::{
    HeaderMatch, PathMatch,
    policy::Auth,
    precedence::{Step, deciding_step},
};

fn auth() -> Option<Auth> {
    Some(Auth {
        required: Some(true),
        ..Default::default()
    })
}

fn order_on(o: &Outcome, host: &str) -> Vec<String> {
    o.model
        .host_table(host)
        .entries
        .iter()
        .map(|e| format!("{}/{}", e.key.name, e.path_index))
        .collect()
}

#[test]
fn a_public_get_catch_all_does_not_answer_for_an_authenticated_admin() {
    // The order this project started from put method-bearing Routes first, so
    // `GET /admin` went to the public Route with no credentials.
    let mut public = mk_route("public", 0, vec![PathMatch::prefix("/")]);
    public.spec.match_.methods = vec!["GET".into()];
    public.spec.match_.headers = vec![HeaderMatch {
        name: "x-any".into(),
        ..Default::default()
    }];
    let mut admin = mk_route("admin", 1, vec![PathMatch::prefix("/admin")]);
    admin.spec.auth = auth();
    let o = validate(&[public, admin], &[mk_service("svc")]);
    assert!(messages(&o).is_empty(), "{:?}", messages(&o));
    assert_eq!(order_on(&o, "*"), ["admin/0", "public/0"]);
    assert_eq!(o.shadowed().count(), 0);
    let (a, p) = (&o.model.routes[0], &o.model.routes[1]);
    let (step, _) = deciding_step("*", a, p).unwrap();
    assert_eq!(step, Step::PathLength);
    assert!(
        step.explain(a, p, "*").contains("/admin is longer"),
        "{}",
        step.explain(a, p, "*")
    );
}

#[test]
fn within_one_path_methods_then_headers_then_age_decide() {
    let mut get = mk_route("get", 2, vec![PathMatch::prefix("/x")]);
    get.spec.match_.methods = vec!["GET".into()];
    let mut header = mk_route("header", 1, vec![PathMatch::prefix("/x")]);
    header.spec.match_.headers = vec![HeaderMatch {
        name: "x-canary".into(),
        exact: Some("1".into()),
        ..Default::default()
    }];
    let plain = mk_route("plain", 0, vec![PathMatch::prefix("/x")]);
    let exact = mk_route("exact", 3, vec![PathMatch::exact("/x")]);
    let o = validate(&[get, header, plain, exact], &[mk_service("svc")]);
    assert!(messages(&o).is_empty(), "{:?}", messages(&o));
    assert_eq!(
        order_on(&o, "*"),
        ["exact/0", "get/0", "header/0", "plain/0"]
    );
}

#[test]
fn a_host_catch_all_hides_a_host_less_admin_and_it_is_an_auth_bypass() {
    let mut hosted = mk_route("hosted", 0, vec![PathMatch::prefix("/")]);
    hosted.spec.hosts = vec!["api.example.com".into()];
    let mut admin = mk_route("admin", 1, vec![PathMatch::prefix("/admin")]);
    admin.spec.auth = auth();
    let o = validate(&[hosted, admin], &[mk_service("svc")]);
    // Both are served: the admin Route still answers on every other host.
    assert!(messages(&o).is_empty(), "{:?}", messages(&o));
    assert_eq!(order_on(&o, "api.example.com"), ["hosted/0", "admin/0"]);
    assert_eq!(order_on(&o, "*"), ["admin/0"]);
    let report = o.report(&ObjectKey::route("team", "admin")).unwrap();
    assert!(report.is_served() && report.auth_bypassed());
    let c = report
        .conditions()
        .into_iter()
        .find(|c| c.type_ == "Shadowed")
        .unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "AuthBypassed")
    );
    assert!(
        c.message.contains("spec.match.paths[0].prefix")
            && c.message.contains("api.example.com")
            && c.message.contains("Route team/hosted"),
        "{}",
        c.message
    );
    // The hiding Route is not the one reported.
    let hosted = o.report(&ObjectKey::route("team", "hosted")).unwrap();
    assert!(hosted.shadowed.is_empty());
}

#[test]
fn shadowing_by_an_equally_authenticated_route_is_reported_but_not_a_bypass() {
    let mut hosted = mk_route("hosted", 0, vec![PathMatch::prefix("/")]);
    hosted.spec.hosts = vec!["api.example.com".into()];
    hosted.spec.auth = Some(Auth {
        required: Some(true),
        scopes: vec!["admin".into(), "read".into()],
        ..Default::default()
    });
    let mut admin = mk_route("admin", 1, vec![PathMatch::prefix("/admin")]);
    admin.spec.auth = Some(Auth {
        scopes: vec!["admin".into()],
        ..Default::default()
    });
    let o = validate(&[hosted, admin], &[mk_service("svc")]);
    let report = o.report(&ObjectKey::route("team", "admin")).unwrap();
    assert_eq!(report.shadowed.len(), 1);
    assert!(!report.auth_bypassed());
}

#[test]
fn partial_overlaps_are_not_shadowing() {
    // The hosted Route only takes GET with a header: the admin Route still gets the rest.
    let mut hosted = mk_route("hosted", 0, vec![PathMatch::prefix("/")]);
    hosted.spec.hosts = vec!["api.example.com".into()];
    hosted.spec.match_.methods = vec!["GET".into()];
    let mut narrow = mk_route("narrow", 0, vec![PathMatch::prefix("/adm")]);
    narrow.spec.hosts = vec!["api.example.com".into()];
    let mut admin = mk_route("admin", 1, vec![PathMatch::prefix("/admin")]);
    admin.spec.auth = auth();
    let o = validate(&[hosted, narrow, admin], &[mk_service("svc")]);
    assert_eq!(
        o.shadowed().count(),
        0,
        "{:?}",
        o.shadowed().collect::<Vec<_>>()
    );
}

#[test]
fn a_wildcard_host_ranks_below_the_exact_host_and_above_no_host() {
    let mut wild = mk_route("wild", 0, vec![PathMatch::prefix("/a/b")]);
    wild.spec.hosts = vec!["*.example.com".into()];
    let mut exact = mk_route("exact", 1, vec![PathMatch::prefix("/a")]);
    exact.spec.hosts = vec!["api.example.com".into()];
    let anywhere = mk_route("anywhere", 2, vec![PathMatch::exact("/a/b/c")]);
    let o = validate(&[wild, exact, anywhere], &[mk_service("svc")]);
    assert_eq!(
        order_on(&o, "api.example.com"),
        ["exact/0", "wild/0", "anywhere/0"]
    );
    assert_eq!(order_on(&o, "x.example.com"), ["wild/0", "anywhere/0"]);
    let hidden: Vec<(String, String)> = o
        .shadowed()
        .map(|s| (s.issue.object.name.to_string(), s.issue.message.clone()))
        .collect();
    // exact hides wild and anywhere on api.example.com; wild hides anywhere on both
    // *.example.com hosts.
    assert_eq!(hidden.len(), 3, "{hidden:?}");
}

#[test]
fn paths_differing_only_in_case_conflict() {
    let older = mk_route("older", 0, vec![PathMatch::exact("/Admin")]);
    let newer = mk_route("newer", 1, vec![PathMatch::exact("/admin")]);
    let o = validate(&[older, newer], &[mk_service("svc")]);
    let r = o.report(&ObjectKey::route("team", "newer")).unwrap();
    assert!(r.conflict.is_some(), "{:?}", messages(&o));
}

#[test]
fn methods_and_paths_differing_only_in_case_cannot_take_an_older_match() {
    // A newer tenant spells the older one's GET /Admin as get /ADMIN.
    let mut older = mk_route("older", 0, vec![PathMatch::exact("/Admin")]);
    older.spec.match_.methods = vec!["GET".into()];
    let mut newer = mk_route("newer", 1, vec![PathMatch::exact("/ADMIN")]);
    newer.spec.match_.methods = vec!["get".into()];
    let o = validate(&[older, newer], &[mk_service("svc")]);
    let r = o.report(&ObjectKey::route("team", "newer")).unwrap();
    assert!(!r.is_served(), "{:?}", messages(&o));
    assert!(
        o.report(&ObjectKey::route("team", "older"))
            .unwrap()
            .is_served()
    );
}

#[test]
fn the_route_table_budget_admits_older_routes_and_refuses_the_rest() {
    // Ten hosts, then host-less Routes: each is copied into 11 host tables.
    let mut routes: Vec<crate::Route> = (0..10)
        .map(|i| {
            let mut r = mk_route(&format!("h{i}"), i, vec![PathMatch::prefix("/")]);
            r.spec.hosts = vec![format!("h{i}.example.com")];
            r
        })
        .collect();
    for i in 0..5 {
        routes.push(mk_route(
            &format!("g{i}"),
            100 + i,
            vec![PathMatch::prefix(&format!("/g{i}"))],
        ));
    }
    let rules = Rules {
        route_table_bytes: 10 * 1024 + 3 * 11 * 500,
        ..Rules::file_mode()
    };
    let o = validate_with(&routes, &[mk_service("svc")], &rules);
    let refused: Vec<String> = o
        .reports
        .iter()
        .filter(|r| !r.is_served())
        .map(|r| r.key.name.to_string())
        .collect();
    assert!(
        !refused.is_empty() && refused.iter().all(|n| n.starts_with('g')),
        "{refused:?}"
    );
    assert!(
        refused.contains(&"g4".to_string()),
        "the newest goes first: {refused:?}"
    );
    let m = messages(&o);
    assert!(
        m.iter()
            .any(|m| m.contains("spec: the route table is full")
                && m.contains("in 11 host table(s)")),
        "{m:?}"
    );
    // The default budget takes the same set without complaint.
    assert!(messages(&validate(&routes, &[mk_service("svc")])).is_empty());
}

#[test]
fn the_precomputed_sort_key_orders_entries_as_precedence_does() {
    // The model is sorted by `precedence_key` then `precedence`; that must be the
    // order `precedence` alone gives, for every pair, or the table Envoy receives
    // would differ from the one `explain` and the console describe.
    let hosts: [&[&str]; 5] = [
        &[],
        &["a.example.com"],
        &["*.example.com"],
        &["*.b.example.com", "*.example.com"],
        &["*.example.com", "c.example.com"],
    ];
    // Unique paths (no conflicts), of few lengths (so later steps decide too).
    let path = |i: usize, j: usize| {
        let p = format!("/{}{i:03}", ["", "api", "API/v1"][(i + j) % 3]);
        if (i + j).is_multiple_of(2) {
            PathMatch::exact(&p)
        } else {
            PathMatch::prefix(&p)
        }
    };
    let mut routes = Vec::new();
    for i in 0..150usize {
        let mut r = mk_route(
            &format!("r{i}"),
            (i % 7) as i64,
            vec![path(i, 0), path(i, 1)],
        );
        r.spec.hosts = hosts[(i / 3) % 5].iter().map(|h| h.to_string()).collect();
        if i % 4 == 0 {
            r.spec.match_.methods = vec!["GET".into()];
        }
        if i % 6 == 0 {
            r.spec.match_.headers = vec![HeaderMatch {
                name: format!("x-h{}", i % 3),
                ..Default::default()
            }];
        }
        if i % 11 == 0 {
            r.metadata.creation_timestamp = None;
        }
        routes.push(r);
    }
    let entries: Vec<Arc<crate::RouteEntry>> = validate(&routes, &[mk_service("svc")]).model.routes;
    assert!(entries.len() > 100, "{} entries served", entries.len());
    for a in &entries {
        for b in &entries {
            let keyed = crate::precedence::precedence_key(a)
                .cmp(&crate::precedence::precedence_key(b))
                .then_with(|| crate::precedence::precedence(a, b));
            assert_eq!(
                keyed,
                crate::precedence::precedence(a, b),
                "{}/{} vs {}/{}",
                a.key,
                a.path_index,
                b.key,
                b.path_index
            );
        }
    }
}
