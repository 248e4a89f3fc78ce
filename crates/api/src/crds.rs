//! The CustomResourceDefinitions, rendered from the Rust types. `crds/*.yaml` in the
//! repository is this output checked in; a test fails when the two drift.
use kube::CustomResourceExt;

use crate::{Host, Route, Service};

/// File name (as in `crds/`) and YAML of each CRD.
pub fn all() -> Vec<(&'static str, String)> {
    vec![
        ("routes.portcullis.dev.yaml", render(&Route::crd())),
        ("services.portcullis.dev.yaml", render(&Service::crd())),
        ("hosts.portcullis.dev.yaml", render(&Host::crd())),
    ]
}

/// All CRDs as one multi-document YAML stream, as `portcullis crds` prints it.
pub fn to_yaml() -> String {
    all()
        .into_iter()
        .map(|(_, y)| format!("---\n{y}"))
        .collect()
}

fn render<T: serde::Serialize>(crd: &T) -> String {
    // serde_yaml output of a CRD cannot fail: it is plain maps, strings and numbers.
    serde_yaml::to_string(crd).expect("CRD renders as YAML")
}
