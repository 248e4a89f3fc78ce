//! End-to-end tests: the real `portcullis` code (in-process or as the binary), stock
//! Envoy as a child process, and echo backends, all on 127.0.0.1 with kernel-chosen
//! ports so tests run in parallel.
#![forbid(unsafe_code)]

mod browser;
mod harness;

mod access_log;
mod adversarial;
mod auth;
mod console;
mod drain;

mod ha_status;
#[cfg(feature = "kafka-e2e")]
mod kafka;
mod limits_first;
mod mtls;
mod mtls_issued;
mod nack;
mod observability;
mod ratelimit;
mod ratelimit_identity;
mod ratelimit_runtime;
mod ratelimit_stack;
mod redis;
mod reload;
mod restart;
mod routing;
mod tls;
mod tls_client;
mod tls_kube;
mod traces;
mod traffic;
mod up;
mod upstream_tls;
mod validate_cli;
mod validated_served;
