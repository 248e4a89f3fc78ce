//! Route policies already read, by the context they were read from. Every Check on a
//! Route carries the same `context_extensions`, and reading them
//! ([`RoutePolicy::from_context`]: lower-casing, checking and parsing header names,
//! splitting scopes) allocated a dozen strings per call. A policy is a function of the
//! context alone, so the same context bytes can share one.
//!
//! Bounded: at most [`MAX_POLICIES`] contexts, of at most [`MAX_CONTEXT_BYTES`] each
//! and [`MAX_TABLE_BYTES`] together; a larger context is read for its call and not
//! kept, and when the table is full it is emptied (more Routes with `auth` than that,
//! all in use, read their contexts per call as before). Keyed by a seeded hash and
//! confirmed by comparing every byte, so a collision, crafted or not, costs a read and
//! never another Route's policy.
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::policy::RoutePolicy;
use crate::request::MapView;

/// Distinct contexts kept: one per Route with `auth` in use.
pub const MAX_POLICIES: usize = 16_384;
/// A context the control plane writes is a few hundred bytes.
pub const MAX_CONTEXT_BYTES: usize = 4_096;
/// Context bytes kept in all (10,000 Routes of ~300 bytes fit): with the policies read
/// from them, a few times this in memory at most, whatever a peer sends.
pub const MAX_TABLE_BYTES: usize = 8 << 20;

#[derive(Default)]
pub struct Policies {
    hasher: foldhash::fast::RandomState,
    known: RwLock<Table>,
}

#[derive(Default)]
struct Table {
    by_hash: HashMap<u64, Known>,
    /// The sum of every kept context's length.
    bytes: usize,
}

struct Known {
    /// The context's [`parts`], one after another.
    context: Box<[u8]>,
    policy: Arc<RoutePolicy>,
}

impl Policies {
    /// The policy `context` reads as.
    pub fn get(&self, context: MapView<'_>) -> Arc<RoutePolicy> {
        // The hash reads the same bytes as [`parts`], the separator as one byte.
        let (mut h, mut size) = (self.hasher.build_hasher(), 0);
        for (k, v) in context.raw() {
            h.write(k);
            h.write_u8(SEPARATOR[0]);
            h.write(v);
            h.write_u8(SEPARATOR[0]);
            size += k.len() + v.len() + 2 * SEPARATOR.len();
        }
        let hash = h.finish();
        if let Some(known) = self.known.read().by_hash.get(&hash)
            && same(&known.context, context)
        {
            return known.policy.clone();
        }
        let policy = Arc::new(RoutePolicy::from_context(&context));
        if size <= MAX_CONTEXT_BYTES {
            let flat: Vec<u8> = parts(context).flatten().copied().collect();
            let mut table = self.known.write();
            if table.by_hash.len() >= MAX_POLICIES || table.bytes + size > MAX_TABLE_BYTES {
                *table = Table::default();
            }
            let known = Known {
                context: flat.into(),
                policy: policy.clone(),
            };
            // A collision replaces the other context (each gets its own policy).
            if let Some(old) = table.by_hash.insert(hash, known) {
                table.bytes -= old.context.len();
            }
            table.bytes += size;
        }
        policy
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.known.read().by_hash.len()
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.known.read().bytes
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The context's entries as sent, in order: each key and each value followed by a
/// 0xff byte (never part of UTF-8 text, so the boundaries are part of what is hashed
/// and compared).
fn parts<'a>(context: MapView<'a>) -> impl Iterator<Item = &'a [u8]> + 'a {
    context
        .raw()
        .flat_map(|(k, v)| [k, SEPARATOR, v, SEPARATOR])
}

const SEPARATOR: &[u8] = &[0xff];

/// Whether `flat` holds exactly `context`'s [`parts`].
fn same(flat: &[u8], context: MapView<'_>) -> bool {
    let mut rest = flat;
    for part in parts(context) {
        match rest.strip_prefix(part) {
            Some(tail) => rest = tail,
            None => return false,
        }
    }
    rest.is_empty()
}

#[cfg(test)]
#[path = "policies_tests.rs"]
mod tests;
