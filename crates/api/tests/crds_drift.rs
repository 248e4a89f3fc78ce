//! `crds/*.yaml` is generated from the types; this fails when someone changes a type and
//! forgets `make crds` (or edits the YAML by hand).
use std::path::Path;

#[test]
fn checked_in_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds");
    for (file, yaml) in portcullis_api::crds::all() {
        let path = dir.join(file);
        let on_disk = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run `make crds`", path.display()));
        assert!(
            on_disk == yaml,
            "{} drifted from the Rust types; run `make crds` and commit the result",
            path.display()
        );
    }
}

#[test]
fn crds_are_structural_and_namespaced() {
    for (file, yaml) in portcullis_api::crds::all() {
        let crd: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(crd["spec"]["group"], "portcullis.dev", "{file}");
        assert_eq!(crd["spec"]["scope"], "Namespaced", "{file}");
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        assert!(
            version["subresources"]["status"].is_mapping(),
            "{file}: status subresource"
        );
        // Structural schemas forbid anyOf/oneOf without properties at the same level.
        assert!(
            !yaml.contains("anyOf") && !yaml.contains("oneOf"),
            "{file} has a non-structural schema"
        );
    }
}
