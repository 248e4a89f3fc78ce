use std::sync::Arc;

use crate::{
    Certificates, HostSpec, Objects, PathMatch,
    validate::{
        Memo, Rules,
        tests::{mk_route, mk_service},
        validate_objects,
    },
};

fn text(tables: &[crate::table::HostTable<'_>]) -> Vec<(String, Vec<String>)> {
    let entries = |t: &crate::table::HostTable<'_>| {
        let names = t.entries.iter().map(|e| {
            let (_, path) = e.path_parts();
            format!("{}/{} {path} {:?}", e.key, e.path_index, e.hosts())
        });
        names.collect()
    };
    tables
        .iter()
        .map(|t| (t.domain.clone(), entries(t)))
        .collect()
}

fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Route `i`, version `v`: mostly one or two plain hostnames (what a patch places),
/// sometimes a wildcard or none (what makes it build); paths and ages shared often,
/// so that entries tie on all but the last steps of precedence.
fn route(i: usize, v: u64) -> Arc<crate::Route> {
    const PLAIN: [&str; 4] = [
        "a.example.com",
        "b.example.com",
        "c.example.com",
        "d.example.org",
    ];
    let path = match v % 4 {
        0 => PathMatch::prefix("/shared"),
        1 => PathMatch::prefix(&format!("/p{}", v % 5)),
        2 => PathMatch::exact(&format!("/e{}", v % 3)),
        _ => PathMatch::prefix(&format!("/p{}/deeper", v % 2)),
    };
    let mut r = mk_route(&format!("r{i}"), (v % 3) as i64, vec![path]);
    let plain = |n: u64| PLAIN[n as usize % PLAIN.len()].to_string();
    r.spec.hosts = match (v >> 4) % 10 {
        0 => vec![],
        1 => vec!["*.example.com".into()],
        2 => vec![plain(v >> 8), plain(v >> 10)],
        _ => vec![plain(v >> 8)],
    };
    if (v >> 12).is_multiple_of(3) {
        r.metadata.namespace = Some("other".into());
    }
    if (v >> 14).is_multiple_of(2) {
        r.spec.match_.methods = vec!["GET".into()];
    }
    Arc::new(r)
}

/// The Host owning `a.example.com`, admitting its own namespace, `other` or every one.
fn host(v: u64) -> Arc<crate::Host> {
    let allowed = match v % 3 {
        0 => None,
        1 => Some(vec!["other".to_string()]),
        _ => Some(vec!["*".to_string()]),
    };
    let mut h = crate::Host::new(
        "h",
        HostSpec {
            hostname: "a.example.com".into(),
            allowed_routes: allowed.map(|namespaces| crate::host::AllowedRoutes { namespaces }),
            ..Default::default()
        },
    );
    h.metadata.namespace = Some("team".into());
    Arc::new(h)
}

// Through random edits (Routes edited, added, removed, re-allocated unchanged; plain,
// two-host, wildcard and host-less; the Host narrowing or widening whom it admits),
// the table a memo's model carries, patched when it can be, is the one built afresh
// for that model and the one a validation without memo builds, in every list and
// order; and patches do happen.
#[test]
fn a_patched_table_is_the_table_built_afresh_through_any_edits() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut objects = Objects {
        routes: (0..40).map(|i| route(i, next(&mut seed))).collect(),
        // Both teams' Routes resolve their backend, so both are served and the Host's
        // admission decides where the other team's wildcard and host-less ones go.
        services: vec![Arc::new(mk_service("svc")), {
            let mut s = mk_service("svc");
            s.metadata.namespace = Some("other".into());
            Arc::new(s)
        }],
        hosts: vec![host(2)],
    };
    let (certificates, rules) = (Certificates::new(), Rules::file_mode());
    let mut memo = Memo::new();
    for step in 0..800 {
        let v = next(&mut seed);
        let i = (v >> 40) as usize % objects.routes.len().max(1);
        match v % 10 {
            0..=4 if !objects.routes.is_empty() => objects.routes[i] = route(i, v >> 16),
            5 if objects.routes.len() > 1 => {
                objects.routes.remove(i);
            }
            6 => objects.routes.push(route(100 + step, v >> 16)),
            7 if !objects.routes.is_empty() => {
                objects.routes[i] = Arc::new((*objects.routes[i]).clone());
            }
            8 => objects.hosts[0] = host(v >> 16),
            _ => {}
        }
        let got = memo.validate(&objects, &certificates, &rules);
        let want = validate_objects(&objects, &certificates, &rules);
        let table = text(&got.model.table());
        assert_eq!(
            table,
            text(&got.model.table_positions_as_tables()),
            "step {step}: not the table built for the same model"
        );
        assert_eq!(
            table,
            text(&want.model.table()),
            "step {step}: not a fresh validation's table"
        );
    }
    let patched = memo.tables_patched();
    assert!(patched > 300, "patched {patched} of 800 tables");
}

// The controller reads each model's table only through its copy with endpoints
// (`Model::copy_for_services`): that copy still leaves the validated model's table
// built, so the next edit's table is patched, not built.
#[test]
fn a_table_read_through_the_endpoint_copy_is_patched_next_time() {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut objects = Objects {
        routes: (0..20).map(|i| plain_route(i, next(&mut seed))).collect(),
        services: vec![Arc::new(mk_service("svc"))],
        hosts: Vec::new(),
    };
    let (certificates, rules) = (Certificates::new(), Rules::file_mode());
    let mut memo = Memo::new();
    for step in 0..10 {
        objects.routes[step] = plain_route(step, next(&mut seed));
        let model = memo.validate(&objects, &certificates, &rules).model;
        let copy = model.copy_for_services();
        assert_eq!(
            text(&copy.table()),
            text(&copy.table_positions_as_tables()),
            "step {step}"
        );
    }
    assert_eq!(memo.tables_patched(), 9, "every edit after the first");
}

/// A Route naming one plain hostname only.
fn plain_route(i: usize, v: u64) -> Arc<crate::Route> {
    let mut r = mk_route(
        &format!("r{i}"),
        0,
        vec![PathMatch::prefix(&format!("/p{}", v % 5))],
    );
    r.spec.hosts = vec![format!("h{}.example.com", i % 3)];
    Arc::new(r)
}
