//! The Helm chart: its CRDs are the generated ones, it lints and renders cleanly
//! (charts/check_chart.py, through helm-python-sdk and the Makefile's Envoy), its
//! operational pieces hold (charts/check_chart_ops.py: schema, PDBs, drain, tracing,
//! NetworkPolicies, RBAC), its component mTLS holds in every mode
//! (charts/check_chart_tls.py), its README is generated from values.yaml, and its alerts and
//! dashboard check out (charts/check_monitoring.py, with promtool).
use std::{path::PathBuf, process::Command};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs a chart check script with the Helm SDK on the path; its report on failure.
fn python(script: &str, args: &[&str]) -> Result<String, String> {
    let helm = repo().join("tools/helm");
    assert!(
        helm.join("helm_python").is_dir(),
        "helm-python-sdk is not installed: python3 -m pip install --target tools/helm helm-python-sdk (make tools does it)"
    );
    let out = Command::new("python3")
        .arg(repo().join(script))
        .args(args)
        .env("PYTHONPATH", &helm)
        .current_dir(repo())
        .output()
        .expect("python3 is needed for the chart test (apt-get install python3)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(report)
    } else {
        Err(report)
    }
}

#[test]
fn chart_crds_are_identical_to_the_generated_ones() {
    for (file, yaml) in portcullis_api::crds::all() {
        let in_chart = repo().join("charts/portcullis/crds").join(file);
        let text = std::fs::read_to_string(&in_chart).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; copy crds/{file} into the chart",
                in_chart.display()
            )
        });
        assert!(
            text == yaml,
            "charts/portcullis/crds/{file} differs from the CRD the code generates; run: cp crds/*.yaml charts/portcullis/crds/ (after `portcullis crds` updated crds/)"
        );
    }
    let count = std::fs::read_dir(repo().join("charts/portcullis/crds"))
        .unwrap()
        .count();
    assert_eq!(
        count,
        portcullis_api::crds::all().len(),
        "stray files in charts/portcullis/crds"
    );
}

#[test]
fn chart_lints_and_renders() {
    python("charts/check_chart.py", &[]).unwrap_or_else(|r| panic!("chart check failed:\n{r}"));
}

/// The PrometheusRule passes `promtool check rules` and the unit tests in
/// charts/monitoring/alerts_test.yaml; the dashboard and the rules read only metrics the
/// code exports (charts/monitoring/exported-metrics.txt, itself checked against the
/// sources and a real Envoy). See charts/check_monitoring.py.
#[test]
fn chart_alerts_and_dashboard_use_real_metrics() {
    let report = python("charts/check_monitoring.py", &[]).unwrap_or_else(|r| {
        panic!(
            "monitoring check failed (promtool comes with Debian `prometheus`: make prometheus):\n{r}"
        )
    });
    assert!(
        report.contains("monitoring: ok") && report.contains("SUCCESS"),
        "the monitoring check did not run promtool:\n{report}"
    );
}

/// values.schema.json refuses unknown and mistyped values; every replicated component
/// has a PodDisruptionBudget; Envoy is ready on its own /ready and drains through the
/// `portcullis drain` sidecar and the preStop script e2e/drain.rs runs; tracing values
/// reach every pod; each NetworkPolicy opens exactly its pods' ports to the right peers.
#[test]
fn chart_operations() {
    let report = python("charts/check_chart_ops.py", &[])
        .unwrap_or_else(|r| panic!("chart operations check failed:\n{r}"));
    assert!(report.contains("0 failures"), "{report}");
}

#[test]
fn chart_readme_is_generated_from_values() {
    python("charts/gen_readme.py", &["--check"]).unwrap_or_else(|r| panic!("{r}"));
}

/// mTLS between the components in every componentTLS mode: each server's certificate
/// files come from its own Secret, the controller's issuing plan covers exactly the
/// Secrets the pods mount (names their clients dial, node prefixes), its Role may touch
/// only those, cert-manager mode has a Certificate per Secret, insecure is plaintext.
/// See charts/check_chart_tls.py.
#[test]
fn chart_component_mtls() {
    let report = python("charts/check_chart_tls.py", &[])
        .unwrap_or_else(|r| panic!("chart component mTLS check failed:\n{r}"));
    assert!(report.contains("5 modes, 0 failures"), "{report}");
}
