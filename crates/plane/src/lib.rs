//! The control plane's sources and reconcile loop: manifests (a directory now, the
//! Kubernetes API later) → validated model → translated resources → xDS snapshot.
#![forbid(unsafe_code)]

pub mod admin;
mod admin_state;
pub mod args;
pub mod board;
pub mod certificates;
pub mod console;
pub mod directory;
pub mod expiry;
pub mod file_source;
pub mod files;
pub mod publish;
pub mod reader;
pub mod reconcile;
pub mod serve;
pub mod state;
pub mod walk;
