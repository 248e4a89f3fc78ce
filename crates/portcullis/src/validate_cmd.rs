//! `portcullis validate PATH…`: the control plane's rules, offline, for teams' CI.
use std::{collections::BTreeMap, path::PathBuf, process::ExitCode};

use portcullis_api::{
    Objects,
    validate::{Rules, validate_objects},
};
use portcullis_plane::reader;

pub fn run(paths: &[PathBuf], rules: &Rules) -> ExitCode {
    let (objects, mut errors) = load(paths);
    let certificates = crate::certs::load_for(&objects, paths);
    let outcome = validate_objects(&objects, &certificates, rules);
    errors.extend(outcome.problems().map(ToString::to_string));
    // A Route hiding another's paths behind weaker auth serves requests unauthenticated
    // that their author meant to protect: an error here, a condition on the cluster.
    for s in outcome.shadowed() {
        if s.auth_bypassed {
            errors.push(format!("{} (AuthBypassed)", s.issue));
        } else {
            eprintln!("warning: {} (Shadowed)", s.issue);
        }
    }
    for w in outcome.warnings() {
        eprintln!("warning: {w}");
    }
    if errors.is_empty() {
        println!(
            "ok: {} Services, {} Routes ({} route entries) are valid",
            objects.services.len(),
            objects.routes.len(),
            outcome.model.routes.len()
        );
        ExitCode::SUCCESS
    } else {
        for e in &errors {
            eprintln!("error: {e}");
        }
        eprintln!("{} error(s)", errors.len());
        ExitCode::FAILURE
    }
}

/// Every Route and Service under `paths` (the first copy of a duplicate), and what
/// could not be read.
pub fn load(paths: &[PathBuf]) -> (Objects, Vec<String>) {
    let mut errors = Vec::new();
    let mut objects = BTreeMap::new();
    for path in paths {
        if !path.exists() {
            errors.push(format!("{}: no such file or directory", path.display()));
            continue;
        }
        match reader::load(path) {
            Ok(loaded) => {
                errors.extend(loaded.errors.iter().map(ToString::to_string));
                for (file, key, doc) in loaded.documents {
                    if objects.contains_key(&key) {
                        errors.push(format!(
                            "{}: {key} is defined more than once; rename or remove the later copy",
                            file.display()
                        ));
                        continue;
                    }
                    objects.insert(key, doc);
                }
            }
            Err(e) => errors.push(format!("{}: {e}", path.display())),
        }
    }
    (Objects::from_documents(objects.values()), errors)
}
