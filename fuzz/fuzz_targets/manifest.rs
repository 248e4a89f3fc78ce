//! Manifest text → parse → validate (file and cluster rules) → translate with every
//! optional filter on → explain. Whatever validation accepts must translate: no object
//! may fail with an internal error, at either stage.
//!
//! libfuzzer-sys aborts on any panic, even one `isolate` would catch, so a panic
//! inside per-object isolation is reported as a crash here rather than hidden.
//!
//! Explained requests: one per served route entry (its host, method, path and header
//! values, plus spellings Envoy normalizes), and one from a `#> METHOD TARGET HOST`
//! comment line of the input, so the fuzzer can steer requests too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_api::explain::{self, Outcome, Request};
use portcullis_api::isolate::INTERNAL_FIELD;
use portcullis_api::validate::{Rules, validate_with};
use portcullis_api::{Document, Model, Objects, parse_documents};
use portcullis_translate::{Options, translate};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let docs: Vec<Document> = parse_documents(text).into_iter().flatten().collect();
    let Objects {
        routes, services, ..
    } = Objects::from_documents(&docs);
    for rules in [Rules::file_mode(), Rules::default()] {
        let outcome = validate_with(&routes, &services, &rules);
        for report in &outcome.reports {
            for e in &report.errors {
                assert_ne!(e.field, INTERNAL_FIELD, "validation panicked: {e}");
            }
            let _ = report.conditions();
        }
        let resources = translate(&outcome.model, &options());
        assert!(
            resources.failed.is_empty(),
            "translation failed: {:?}",
            resources.failed
        );
        for req in requests(text, &outcome.model) {
            let e = explain::explain(&outcome.model, &req);
            assert_eq!(e.outcome == Outcome::Routed, e.served.is_some(), "{e:?}");
        }
    }
});

fn options() -> Options {
    Options {
        listen_address: "127.0.0.1".into(),
        listen_port: 10000,
        authz: Some("127.0.0.1:18081".into()),
        ratelimit: Some("127.0.0.1:18082".into()),
        access_log: Some("/dev/stdout".into()),
        access_log_service: Some("127.0.0.1:18090".into()),
        access_log_headers: vec!["x-request-id".into(), "authorization".into()],
        otlp_collector: Some("127.0.0.1:4317".into()),
        trace_sampling_percent: 5,
        ..Options::default()
    }
}

/// At most this many route entries are turned into requests (each costs a few
/// explain calls; the point is coverage of explain, not of every entry).
const ENTRY_REQUESTS: usize = 8;

fn requests(text: &str, model: &Model) -> Vec<Request> {
    let mut out = Vec::new();
    if let Some(line) = text.lines().rev().find_map(|l| l.strip_prefix("#>")) {
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("GET");
        let target = parts.next().unwrap_or("/");
        let host = parts.next().unwrap_or("");
        out.push(Request::new(method, target, &[("host", host)]));
    }
    for entry in model.routes.iter().take(ENTRY_REQUESTS) {
        let (_, path) = entry.path_parts();
        let method = entry.methods.first().map_or("GET", String::as_str);
        let host = entry.hosts().first().map_or("example.test", String::as_str);
        let host = host.replace('*', "x");
        let mut headers: Vec<(String, String)> = entry
            .headers
            .iter()
            .map(|h| {
                let value = h.exact.clone().or_else(|| h.prefix.clone());
                (h.name.clone(), value.unwrap_or_default())
            })
            .collect();
        headers.push(("host".into(), host));
        for target in [
            path.to_string(),
            format!("{path}/x?q=1"),
            path.to_ascii_uppercase(),
            format!("{path};x"),
            path.replace('/', "%2F"),
            format!("/.{path}/.."),
        ] {
            out.push(Request {
                method: method.to_string(),
                target,
                headers: headers.clone(),
            });
        }
    }
    out
}
