//! Hosts' certificate files for the offline commands (`validate`, `explain`), checked
//! as `portcullis serve` checks them. Relative paths start at the first path given.
use std::path::{Path, PathBuf};

use portcullis_api::{Certificates, Document, Objects};
use portcullis_plane::certificates::FileCertificates;

pub fn load_for(objects: &Objects, paths: &[PathBuf]) -> Certificates {
    let base = paths.first().map_or(Path::new("."), |p| {
        if p.is_file() {
            p.parent().unwrap_or(Path::new("."))
        } else {
            p.as_path()
        }
    });
    let docs: Vec<Document> = objects
        .hosts
        .iter()
        .map(|h| Document::Host(h.clone()))
        .collect();
    FileCertificates::default().load(base, &docs, jiff::Timestamp::now().as_second())
}
