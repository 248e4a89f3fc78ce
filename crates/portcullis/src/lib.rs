//! The `portcullis` binary's commands. Logic lives in the library crates; this crate
//! wires flags to them and runs the local stack (`portcullis up`).
#![forbid(unsafe_code)]

pub mod bootstrap;
pub mod certs;
pub mod cli;
pub mod drain;
pub mod echo;
pub mod envoy;
pub mod explain_cmd;
pub mod renamed;
pub mod signals;
pub mod up;
pub mod validate_cmd;
