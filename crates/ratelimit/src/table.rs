//! The limit table: which [`Limit`] a request descriptor falls under, and the handle
//! through which new configurations are swapped in atomically.
//!
//! Readers take an `Arc` snapshot per request, so a swap never blocks a decision and a
//! request is decided against one consistent table. Counters are keyed by the
//! descriptor's identity and the window length, not by table version, so limits that
//! are unchanged by a swap keep their counts.
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::watch;

use crate::envoy_format::EnvoyConfig;
use crate::limit::Limit;
use crate::portcullis_config::PortcullisLimits;

/// A request descriptor entry (key, value).
pub type Entry<'a> = (&'a str, &'a str);

/// A descriptor matched to a limit.
#[derive(Debug, Clone)]
pub struct Matched {
    pub limit: Arc<Limit>,
    /// Metric label for this decision (envoyproxy `detailed_metric` puts values in it).
    pub metric_name: String,
    /// Names of limits this one replaces (envoyproxy `replaces`).
    pub replaces: Vec<String>,
    /// The name other limits can replace this one by (envoyproxy `rate_limit.name`).
    pub replaceable_as: Option<String>,
}

/// A complete set of limits from one source.
#[derive(Debug, Default)]
pub enum Limits {
    #[default]
    Empty,
    /// From the control plane (domain `portcullis`).
    Portcullis(PortcullisLimits),
    /// From an envoyproxy/ratelimit YAML file (any domains it declares).
    Envoy(EnvoyConfig),
}

impl Limits {
    pub fn resolve(&self, domain: &str, entries: &[Entry<'_>]) -> Option<Matched> {
        match self {
            Limits::Empty => None,
            Limits::Portcullis(p) => p.resolve(domain, entries),
            Limits::Envoy(e) => e.resolve(domain, entries),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Limits::Empty => 0,
            Limits::Portcullis(p) => p.len(),
            Limits::Envoy(e) => e.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The live table.
pub struct LimitTable {
    /// The limits and a generation number that changes with every swap (the local
    /// over-limit cache forgets entries from older generations).
    current: RwLock<(u64, Arc<Limits>)>,
    version: watch::Sender<Option<String>>,
}

impl Default for LimitTable {
    fn default() -> Self {
        LimitTable {
            current: RwLock::new((0, Arc::new(Limits::Empty))),
            version: watch::channel(None).0,
        }
    }
}

impl LimitTable {
    pub fn new(limits: Limits, version: impl Into<String>) -> Self {
        let t = LimitTable::default();
        t.swap(limits, version);
        t
    }

    pub fn snapshot(&self) -> Arc<Limits> {
        self.current.read().1.clone()
    }

    /// The limits with their generation.
    pub fn generation_snapshot(&self) -> (u64, Arc<Limits>) {
        self.current.read().clone()
    }

    /// Replace every limit at once.
    pub fn swap(&self, limits: Limits, version: impl Into<String>) {
        let mut cur = self.current.write();
        *cur = (cur.0 + 1, Arc::new(limits));
        drop(cur);
        self.version.send_replace(Some(version.into()));
    }

    /// The version of the applied configuration; `None` until the first one.
    pub fn version_rx(&self) -> watch::Receiver<Option<String>> {
        self.version.subscribe()
    }

    pub fn version(&self) -> Option<String> {
        self.version.borrow().clone()
    }
}

/// Counter key prefix of one descriptor: `prl:{<hash>}`, the hash over the domain and
/// every entry. 64-bit FNV-1a: collisions between live keys are negligible (about
/// 1 in 10^7 with a million keys alive in one window) and would only merge two counters.
pub fn counter_base(domain: &str, entries: &[Entry<'_>]) -> String {
    let mut h = Fnv::new();
    h.write(domain.as_bytes());
    for (k, v) in entries {
        h.write(&[0x1f]);
        h.write(k.as_bytes());
        h.write(&[0x1e]);
        h.write(v.as_bytes());
    }
    format!("prl:{{{:016x}}}", h.0)
}

/// 64-bit FNV-1a of `bytes` (configuration versions).
pub(crate) fn fnv64(bytes: &[u8]) -> u64 {
    let mut h = Fnv::new();
    h.write(bytes);
    h.0
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_base_depends_on_every_entry_and_has_a_hash_tag() {
        let a = counter_base("d", &[("k", "v"), ("u", "1")]);
        let b = counter_base("d", &[("k", "v"), ("u", "2")]);
        let c = counter_base("d", &[("kv", ""), ("u", "1")]);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert!(a.starts_with("prl:{") && a.ends_with('}'));
    }
}
