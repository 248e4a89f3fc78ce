//! `portcullis validate` on the shipped examples: the valid demo passes, and each file
//! in examples/invalid/ fails with the message for its rule (one test per rule).
use std::{path::PathBuf, process::Command};

use crate::harness::portcullis_bin;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn validate(file: &str) -> (i32, String, String) {
    let out = Command::new(portcullis_bin())
        .arg("validate")
        .arg(examples().join(file))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn rejects(file: &str, expected: &str) {
    let (code, _, stderr) = validate(&format!("invalid/{file}"));
    assert_eq!(code, 1, "{file} should fail validation; stderr: {stderr}");
    assert!(
        stderr.contains(expected),
        "{file}: expected {expected:?} in:\n{stderr}"
    );
}

#[test]
fn demo_is_valid() {
    let (code, stdout, stderr) = validate("demo");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout.trim(),
        "ok: 2 Services, 4 Routes (4 route entries) are valid"
    );
}

#[test]
fn unknown_service() {
    rejects(
        "unknown-service.yaml",
        "Route default/items: spec.backends[0].service: Service default/itemz does not exist; create it or fix the name",
    );
}

#[test]
fn timeout_over_60s() {
    rejects(
        "timeout-over-60s.yaml",
        "Route default/items: spec.timeout: 90s is over the 60s maximum; set it to 60s or less",
    );
}

#[test]
fn empty_paths() {
    rejects(
        "empty-paths.yaml",
        "Route default/items: spec.match.paths: no paths; add at least one, e.g. - prefix: /",
    );
}

#[test]
fn duplicate_paths() {
    rejects(
        "duplicate-paths.yaml",
        "Route default/items: spec.match.paths[2].exact: duplicate path exact: /v1/items; list it once",
    );
}

#[test]
fn malformed_host() {
    rejects(
        "malformed-host.yaml",
        "Route default/items: spec.hosts[0]: \"https://api.example.com\" is not a host name; write a DNS name",
    );
}

#[test]
fn weights_sum_to_zero() {
    rejects(
        "zero-weights.yaml",
        "Route default/items: spec.backends[].weight: weights sum to 0",
    );
}

#[test]
fn conflicting_routes() {
    rejects(
        "conflict.yaml",
        "Route default/items-v2: spec.match: host * method GET exact /v1/items is already served by the older Route default/items",
    );
}

#[test]
fn duration_without_unit() {
    rejects(
        "bad-duration.yaml",
        "document 0 (Service items): spec.timeout: duration \"30\" has no unit; write it like 30s or 30ms",
    );
}

#[test]
fn malformed_address() {
    rejects(
        "bad-address.yaml",
        "Service default/items: spec.destinations[0].address: \"http://items.internal\"",
    );
}

#[test]
fn missing_file_is_an_error_not_a_panic() {
    let (code, _, stderr) = validate("does-not-exist.yaml");
    assert_eq!(code, 1);
    assert!(stderr.contains("no such file or directory"), "{stderr}");
}

#[test]
fn auth_bypassed_by_a_host_catch_all() {
    rejects(
        "auth-bypassed.yaml",
        "Route default/admin: spec.match.paths[0].prefix: prefix /admin never matches on api.example.com: Route default/site, which names the host more specifically, takes these requests first but does not enforce the authentication this Route requires",
    );
}

#[test]
fn require_host_ownership_refuses_a_hostname_no_host_owns() {
    let out = Command::new(portcullis_bin())
        .args(["validate", "--require-host-ownership"])
        .arg(examples().join("demo"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("Route demo/api-host: spec.hosts[0]: no Host owns api.localhost, and this gateway requires one (--require-host-ownership)"),
        "{stderr}"
    );
}
