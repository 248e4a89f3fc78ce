//! Benchmarks of the control plane (`make bench`). Each scenario reports absolute
//! figures and a ratio against a baseline measured in the same run.
#![forbid(unsafe_code)]

pub mod ads_clients;
pub mod gateway;
pub mod go_ads;
pub mod h2load;
pub mod limitador;
pub mod local_ratelimit;
pub mod manifests;
pub mod new_conns;
pub mod redis;
pub mod report;
pub mod rpc_load;
