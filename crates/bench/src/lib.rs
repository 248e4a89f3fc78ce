//! Benchmarks of the control plane (`make bench`). Each scenario reports absolute
//! figures and a ratio against a baseline measured in the same run.
#![forbid(unsafe_code)]

pub mod ads_clients;
pub mod ads_frames;
pub mod ads_wire;
pub mod frame_load;
pub mod gateway;
pub mod go_ads;
pub mod h2_wire;
pub mod h2load;
pub mod limitador;
pub mod local_ratelimit;
pub mod manifests;
pub mod new_conns;
pub mod redis;
pub mod report;
pub mod rpc_load;

/// A benchmark-only tool: `$env` when set (and a file), else `rel` under the first
/// ancestor of this crate that has it (the repository's `tools/`).
pub fn find_tool(env: &str, rel: &str) -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(std::path::PathBuf::from(p)).filter(|p| p.is_file());
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join(rel))
        .find(|p| p.is_file())
}
