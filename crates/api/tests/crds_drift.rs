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

#[test]
fn crds_have_short_names_a_category_a_description_and_metav1_conditions() {
    for (file, yaml) in portcullis_api::crds::all() {
        let crd: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        let names = &crd["spec"]["names"];
        let short: Vec<&str> = names["shortNames"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(
            short.contains(&"pcroute") || short.contains(&"pcsvc") || short.contains(&"pchost"),
            "{file}: {short:?}"
        );
        assert_eq!(
            names["categories"][0], "portcullis",
            "{file}: kubectl get portcullis"
        );
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let description = schema["description"].as_str().unwrap();
        assert!(
            !description.contains("Auto-generated") && description.contains("docs/api.md"),
            "{file}: {description}"
        );
        let conditions = &schema["properties"]["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map", "{file}");
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"][0], "type",
            "{file}"
        );
        let item = &conditions["items"];
        assert_eq!(
            item["properties"]["status"]["enum"],
            serde_yaml::to_value(["True", "False", "Unknown"]).unwrap(),
            "{file}"
        );
        assert_eq!(
            item["properties"]["lastTransitionTime"]["format"],
            "date-time"
        );
        for field in ["type", "status", "reason", "message", "lastTransitionTime"] {
            assert!(
                item["required"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|v| v == field),
                "{file}: {field} is required in metav1.Condition"
            );
        }
        let columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_sequence()
            .unwrap();
        assert!(columns.iter().any(|c| c["name"] == "Ready"), "{file}");
    }
}
