//! Manifest text → parse → validate (file and cluster rules) → translate with every
//! optional filter on → explain. Whatever validation accepts must translate: no object
//! may fail with an internal error, at either stage.
//!
//! libfuzzer-sys aborts on any panic, even one `isolate` would catch, so a panic
//! inside per-object isolation is reported as a crash here rather than hidden.
//!
//! What validation keeps from one edit to the next (`validate::Memo`: reports, served
//! entries, each Route's conflict hashes) must give what a fresh validation gives: the
//! same objects go through a memo in three steps (half the Routes, all of them, then
//! some copied into new allocations, as an edit hands them over) and each outcome is
//! compared with validating those objects from nothing. A kept hash that hid a
//! conflict would let one tenant's Route take another's traffic.
//!
//! Explained requests: one per served route entry (its host, method, path and header
//! values, plus spellings Envoy normalizes), and one from a `#> METHOD TARGET HOST`
//! comment line of the input, so the fuzzer can steer requests too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_api::explain::{self, Outcome, Request};
use portcullis_api::isolate::INTERNAL_FIELD;
use std::sync::Arc;

use portcullis_api::validate::{Memo, Rules, validate_objects, validate_with};
use portcullis_api::{Certificates, Document, Model, Objects, Route, parse_documents};
use portcullis_translate::{Options, translate};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let docs: Vec<Document> = parse_documents(text).into_iter().flatten().collect();
    let objects = Objects::from_documents(&docs);
    memo_agrees(&objects);
    let Objects {
        routes, services, ..
    } = objects;
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

/// Validating through a memo, step by step, gives what validating from nothing gives.
fn memo_agrees(objects: &Objects) {
    let text = |o: &portcullis_api::validate::Outcome| format!("{:?}\n{:?}", o.reports, o.model);
    let half = Objects {
        routes: objects.routes.iter().step_by(2).cloned().collect(),
        ..objects.clone()
    };
    let copied = Objects {
        routes: objects
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                if i % 3 == 0 {
                    Arc::new(Route::clone(r))
                } else {
                    Arc::clone(r)
                }
            })
            .collect(),
        ..objects.clone()
    };
    let certificates = Certificates::new();
    let rules = Rules::default();
    let mut memo = Memo::new();
    for (step, objects) in [&half, objects, &copied].into_iter().enumerate() {
        let kept = memo.validate(objects, &certificates, &rules);
        let fresh = validate_objects(objects, &certificates, &rules);
        assert_eq!(text(&kept), text(&fresh), "step {step}");
    }
}

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
