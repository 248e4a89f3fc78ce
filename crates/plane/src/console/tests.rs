//! The console over real HTTP on 127.0.0.1:0, on manifests read from a directory as
//! `portcullis serve` reads them: what tenants write renders as text, problems show
//! with their fix, the table is in Envoy's order, and the console refuses foreign
//! host names and bad explain input.
use std::sync::{Arc, atomic::AtomicBool};

use parking_lot::RwLock;
use portcullis_xds::Cache;
use prometheus::Registry;

use super::{Console, ConsoleArgs};
use crate::{admin::AdminState, file_source::FileSource};

const SERVICE: &str = "apiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  destinations: [{name: d, address: \"127.0.0.1:9\"}]\n";

fn route(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: portcullis.dev/v1alpha1\nkind: Route\nmetadata: {{name: {name:?}, namespace: shop}}\nspec: {spec}\n"
    )
}

/// A console on `yaml` (file mode), reachable at the returned address.
async fn console(
    yaml: &str,
    args: ConsoleArgs,
) -> (std::net::SocketAddr, AdminState, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("all.yaml"), yaml).unwrap();
    let mut source = FileSource::new(dir.path().to_path_buf(), Default::default());
    let reloaded = source.reload();
    let board = source.next_board(
        &mut Default::default(),
        "0123456789abcdef".into(),
        &[],
        &super::now_rfc3339(),
    );
    let registry = Registry::new();
    let cache = Cache::new(&registry);
    let resources = portcullis_translate::translate(&reloaded.model, &Default::default());
    cache.set_snapshot(crate::publish::to_snapshot(&resources));
    let state = AdminState {
        cache,
        registry,
        board: Arc::new(RwLock::new(board)),
        model: Arc::new(RwLock::new(Arc::new(reloaded.model))),
        ready: Arc::new(AtomicBool::new(true)),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = crate::admin::router(state.clone(), Console::new(&args).unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, state, dir)
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
    get_as(addr, path, &addr.to_string()).await
}

async fn get_as(
    addr: std::net::SocketAddr,
    path: &str,
    host: &str,
) -> (u16, reqwest::header::HeaderMap, String) {
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .header("host", host)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

/// Markup a tenant can put into manifests: a header value, an invalid object's name, a
/// broken document's text, and a request to explain.
#[tokio::test]
async fn what_tenants_write_renders_as_text() {
    let yaml = [
        SERVICE.to_string(),
        route(
            "web",
            "{match: {paths: [{prefix: /web}], headers: [{name: x-team, exact: \"<script>alert(1)</script>\"}]}, backends: [{service: web}]}",
        ),
        route("<script>alert(2)</script>", "{match: {paths: [{prefix: /x}]}, backends: [{service: web}]}"),
        "---\nkind: Route\nmetadata: {name: \"<img src=x onerror=alert(3)>\"}\nspec: [\"<script>alert(4)</script>\"]\n".into(),
    ]
    .concat();
    let (addr, _state, _dir) = console(&yaml, ConsoleArgs::default()).await;
    for path in [
        "/",
        "/routes",
        "/routes?q=%3Cscript%3Ealert(5)%3C/script%3E&ns=%22%3E%3Cscript%3Ealert(6)%3C/script%3E",
        "/explain?url=/%3Cscript%3Ealert(7)%3C/script%3E&headers=x-team:%20%3Cscript%3Ealert(8)%3C/script%3E",
        "/fleet",
        "/signals?q=%3Cscript%3Ealert(9)%3C/script%3E",
    ] {
        let (status, headers, body) = get(addr, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        for n in 1..=9 {
            assert!(
                !body.contains(&format!("<script>alert({n})")),
                "{path} renders markup {n}: {body}"
            );
        }
        assert!(!body.contains("<img"), "{path}: {body}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
    }
    // The text is there, escaped.
    let (_, _, problems) = get(addr, "/").await;
    assert!(
        problems.contains("&lt;script&gt;alert(2)&lt;/script&gt;"),
        "{problems}"
    );
    let (_, _, table) = get(addr, "/routes").await;
    assert!(
        table.contains("x-team = &lt;script&gt;alert(1)&lt;/script&gt;"),
        "{table}"
    );
}

#[tokio::test]
async fn a_conflicted_route_is_a_problem_with_its_fix() {
    let yaml = [
        SERVICE.to_string(),
        route(
            "first",
            "{match: {paths: [{prefix: /a}]}, backends: [{service: web}]}",
        ),
        route(
            "second",
            "{match: {paths: [{prefix: /a}]}, backends: [{service: web}]}",
        ),
        route(
            "broken",
            "{match: {paths: [{prefix: /b}]}, backends: [{service: missing}]}",
        ),
    ]
    .concat();
    let (addr, _state, _dir) = console(&yaml, ConsoleArgs::default()).await;
    let (_, _, body) = get(addr, "/").await;
    // Same age in one file: the name decides which one keeps the match.
    let conflicted = body
        .split("<li class=\"problem")
        .find(|p| p.contains("data-kind=\"Conflicted\""))
        .unwrap_or_else(|| panic!("no Conflicted problem: {body}"));
    assert!(conflicted.contains("Route shop/second"), "{conflicted}");
    assert!(
        conflicted.contains("already served by the older Route shop/first"),
        "{conflicted}"
    );
    assert!(conflicted.contains("<b>Fix:</b>"), "{conflicted}");
    let unresolved = body
        .split("<li class=\"problem")
        .find(|p| p.contains("data-kind=\"Unresolved\""))
        .unwrap_or_else(|| panic!("no Unresolved problem: {body}"));
    assert!(
        unresolved.contains("Service shop/missing does not exist"),
        "{unresolved}"
    );
    // No Envoy connected: nothing is programmed, and the page says so.
    assert!(body.contains("no Envoy is connected"), "{body}");
    assert!(
        body.contains("id=\"problem-count\" class=\"count bad\">3<"),
        "{body}"
    );
}

#[tokio::test]
async fn the_table_lists_each_host_in_envoys_order() {
    let yaml = [
        SERVICE.to_string(),
        route("root", "{match: {paths: [{prefix: /}]}, backends: [{service: web}]}"),
        route("items", "{match: {paths: [{prefix: /items}]}, backends: [{service: web}]}"),
        route("item-exact", "{match: {methods: [POST], paths: [{exact: /items}]}, backends: [{service: web}]}"),
        route("host", "{hosts: [shop.example.com], match: {paths: [{prefix: /}]}, backends: [{service: web}]}"),
    ]
    .concat();
    let (addr, _state, _dir) = console(&yaml, ConsoleArgs::default()).await;
    let (_, _, body) = get(addr, "/routes").await;
    let order = |host: &str| -> Vec<String> {
        let section = body
            .split("<section class=\"host\" data-host=\"")
            .find(|s| s.starts_with(&format!("{host}\"")))
            .unwrap_or_else(|| panic!("no section for {host}: {body}"));
        section
            .split("data-route=\"")
            .skip(1)
            .map(|s| s.split('"').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(order("*"), ["shop/item-exact", "shop/items", "shop/root"]);
    // The host's own Route first, then the host-less ones in their order.
    assert_eq!(
        order("shop.example.com"),
        ["shop/host", "shop/item-exact", "shop/items", "shop/root"]
    );
    // Filters: namespace, host, text.
    let (_, _, filtered) = get(addr, "/routes?host=shop.example&q=exact").await;
    assert!(
        filtered.contains("data-route=\"shop/item-exact\"")
            && !filtered.contains("data-route=\"shop/root\"")
    );
    assert!(!filtered.contains("data-host=\"*\""), "{filtered}");
    let (_, _, none) = get(addr, "/routes?ns=other").await;
    assert!(none.contains("No entry matches the filter"));
}

#[tokio::test]
async fn explain_answers_in_the_page_and_refuses_bad_input_by_field() {
    let yaml = [
        SERVICE.to_string(),
        route(
            "items",
            "{match: {paths: [{prefix: /items}]}, backends: [{service: web}]}",
        ),
        route(
            "root",
            "{match: {paths: [{prefix: /}]}, backends: [{service: web}]}",
        ),
    ]
    .concat();
    let (addr, _state, _dir) = console(&yaml, ConsoleArgs::default()).await;
    let (status, _, body) = get(
        addr,
        "/explain?method=GET&url=http%3A%2F%2Fx.test%2Fitems%2F1",
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body.contains("id=\"explain-route\" data-route=\"shop/items\""),
        "{body}"
    );
    assert!(
        body.contains("<tr data-route=\"shop/root\">"),
        "the loser is listed: {body}"
    );
    let (status, _, body) = get(addr, "/explain?method=BREW&url=/x").await;
    assert_eq!(status, 400);
    assert!(
        body.contains("method: &quot;BREW&quot; is not one of"),
        "{body}"
    );
    let (status, _, body) = get(addr, &format!("/explain?url=/{}", "a".repeat(9000))).await;
    assert_eq!(status, 400);
    assert!(body.contains("url: longer than"), "{body}");
}

/// DNS rebinding: a page on evil.example resolving to 127.0.0.1 must not read the
/// console; localhost, IP literals and configured names work.
#[tokio::test]
async fn only_local_names_ip_addresses_and_configured_hosts_are_answered() {
    let args = ConsoleArgs {
        console_hosts: vec!["portcullis.internal".into()],
        ..Default::default()
    };
    let (addr, _state, _dir) = console(SERVICE, args).await;
    let port = addr.port();
    for host in [
        "evil.example",
        &format!("evil.example:{port}"),
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "",
    ] {
        let (status, _, body) = get_as(addr, "/", host).await;
        assert_eq!(status, 421, "Host {host:?}: {body}");
        assert!(body.contains("--console-host"), "{body}");
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "LOCALHOST".into(),
        format!("[::1]:{port}"),
        "portcullis.internal".into(),
        format!("Portcullis.Internal:{port}"),
    ] {
        assert_eq!(get_as(addr, "/", &host).await.0, 200, "Host {host:?}");
    }
    // The JSON endpoints and probes are not the console's: unchanged.
    assert_eq!(get_as(addr, "/healthz", "evil.example").await.0, 200);
}

#[tokio::test]
async fn the_token_changes_with_the_problems() {
    let (addr, state, _dir) = console(SERVICE, ConsoleArgs::default()).await;
    let token = |addr| async move {
        let (status, _, body) = get(addr, "/console/token?page=problems").await;
        assert_eq!(status, 200);
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let before = token(addr).await;
    state
        .board
        .write()
        .file_errors
        .push("x.yaml: document 1: broken".into());
    let after = token(addr).await;
    assert_ne!(before["token"], after["token"]);
    assert_eq!(after["problems"], before["problems"].as_u64().unwrap() + 1);
    assert_eq!(get(addr, "/console/token?page=nope").await.0, 400);
    let (status, headers, css) = get(addr, "/console/console.css").await;
    assert_eq!(
        (status, headers["content-type"].to_str().unwrap()),
        (200, "text/css; charset=utf-8")
    );
    assert!(css.contains("--accent"));
}
