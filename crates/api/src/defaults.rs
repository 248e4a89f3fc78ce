//! Portcullis' defaults where the manifests say nothing. Envoy's own defaults are often
//! infinite or off, and infinite timeouts hide broken connections until they pile up;
//! these are the values docs/traffic.md promises. The translator applies them and
//! `explain` shows them, from this one place.
use std::time::Duration;

pub const MAX_CONNECTIONS: u32 = 1024;
pub const MAX_PENDING_REQUESTS: u32 = 1024;
pub const MAX_REQUESTS: u32 = 1024;
pub const RETRY_BUDGET_PERCENT: f64 = 20.0;
/// Retries always allowed: low-traffic Services would otherwise get almost none.
pub const RETRY_BUDGET_MIN_CONCURRENCY: u32 = 10;
pub const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
pub const KEEPALIVE_TIME: Duration = Duration::from_secs(60);
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
pub const KEEPALIVE_PROBES: u32 = 3;

pub const HC_INTERVAL: Duration = Duration::from_secs(5);
pub const HC_TIMEOUT: Duration = Duration::from_secs(2);
pub const HC_JITTER: Duration = Duration::from_secs(1);
pub const HC_UNHEALTHY_THRESHOLD: u32 = 3;
pub const HC_HEALTHY_THRESHOLD: u32 = 2;

pub const OD_CONSECUTIVE_5XX: u32 = 5;
pub const OD_CONSECUTIVE_GATEWAY: u32 = 5;
pub const OD_INTERVAL: Duration = Duration::from_secs(10);
pub const OD_BASE_EJECTION: Duration = Duration::from_secs(30);
pub const OD_MAX_EJECTION_PERCENT: u32 = 50;
pub const OD_SR_MINIMUM_HOSTS: u32 = 5;
pub const OD_SR_REQUEST_VOLUME: u32 = 100;
pub const OD_SR_STDEV_FACTOR: f64 = 1.9;

pub const RETRY_ATTEMPTS: u32 = 1;
/// Retried when the upstream never saw the request: safe for every method.
pub const RETRY_ON: &[&str] = &["connect-failure", "refused-stream"];
pub const RETRY_BACKOFF_BASE: Duration = Duration::from_millis(25);
pub const ROUTE_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
