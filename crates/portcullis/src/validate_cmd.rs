//! `portcullis validate PATH…`: the control plane's rules, offline, for teams' CI.
use std::{collections::BTreeMap, path::PathBuf, process::ExitCode};

use portcullis_api::{
    Document, Route, Service,
    validate::{Rules, validate_with},
};
use portcullis_controller::files;

pub fn run(paths: &[PathBuf], rules: &Rules) -> ExitCode {
    let (routes, services, mut errors) = load(paths);
    let outcome = validate_with(&routes, &services, rules);
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
            services.len(),
            routes.len(),
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
pub fn load(paths: &[PathBuf]) -> (Vec<Route>, Vec<Service>, Vec<String>) {
    let mut errors = Vec::new();
    let mut objects = BTreeMap::new();
    for path in paths {
        if !path.exists() {
            errors.push(format!("{}: no such file or directory", path.display()));
            continue;
        }
        match files::load(path) {
            Ok(loaded) => {
                errors.extend(loaded.errors.iter().map(ToString::to_string));
                for (file, doc) in loaded.documents {
                    let key = doc.key();
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
    let (mut routes, mut services) = (Vec::new(), Vec::new());
    for doc in objects.into_values() {
        match doc {
            Document::Route(r) => routes.push(*r),
            Document::Service(s) => services.push(*s),
        }
    }
    (routes, services, errors)
}
