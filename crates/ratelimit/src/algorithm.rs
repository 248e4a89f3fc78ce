//! The counting arithmetic, shared by every store: the in-memory store calls it
//! directly and the Redis Lua script mirrors [`fits`] line for line, so both stores
//! take the same decisions on the same counts.
//!
//! A window of length `per` is split into buckets `[k·per, (k+1)·per)`. A store keeps
//! the count of the current bucket and (sliding only) of the previous one.
//! - Fixed: usage = current count.
//! - Sliding: usage = prev · (per − elapsed)/per + current, i.e. the previous bucket
//!   is assumed evenly spread and the part of it still inside the sliding window counts.
//!
//! All arithmetic is integral (scaled by `per`), so Lua and Rust agree exactly.
use crate::limit::{Algorithm, Window};

/// A window's bucket counts *before* the request being decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub prev: u64,
    pub curr: u64,
}

/// Index of the bucket holding `now_ms`, and how far into it we are.
pub fn bucket(now_ms: u64, per_ms: u64) -> (u64, u64) {
    let per = per_ms.max(1);
    (now_ms / per, now_ms % per)
}

/// Usage scaled by `per` (so it stays an integer).
fn scaled_usage(w: &Window, c: Counts, elapsed: u64) -> u128 {
    let per = w.per_ms.max(1) as u128;
    match w.algorithm {
        Algorithm::Fixed => c.curr as u128 * per,
        Algorithm::Sliding => c.prev as u128 * (per - elapsed as u128) + c.curr as u128 * per,
    }
}

/// Whether `hits` more requests fit in the window now.
pub fn fits(w: &Window, c: Counts, now_ms: u64, hits: u32) -> bool {
    let (_, elapsed) = bucket(now_ms, w.per_ms);
    let per = w.per_ms.max(1) as u128;
    scaled_usage(
        w,
        Counts {
            curr: c.curr + hits as u64,
            ..c
        },
        elapsed,
    ) <= w.requests as u128 * per
}

/// Requests the window holds at `now_ms` given its counts (rounded up).
pub fn usage(w: &Window, c: Counts, now_ms: u64) -> u64 {
    let (_, elapsed) = bucket(now_ms, w.per_ms);
    let per = w.per_ms.max(1) as u128;
    scaled_usage(w, c, elapsed)
        .div_ceil(per)
        .min(u64::MAX as u128) as u64
}

/// What the response says about one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub over: bool,
    /// Requests still available after this one (0 when over).
    pub remaining: u32,
    /// Until the current bucket closes (fixed: the whole quota returns; sliding: the
    /// current bucket starts to decay). At least `retry_after_ms` when over.
    pub reset_ms: u64,
    /// When over: until `hits` would fit again if nothing else arrives. 0 otherwise.
    pub retry_after_ms: u64,
}

/// The verdict for a window given its counts before the request; `counted` says
/// whether the store added `hits` (it does only when the whole request is admitted).
pub fn evaluate(w: &Window, before: Counts, now_ms: u64, hits: u32, counted: bool) -> Verdict {
    let (_, elapsed) = bucket(now_ms, w.per_ms);
    let per = w.per_ms.max(1);
    let over = !fits(w, before, now_ms, hits);
    let after = if counted {
        Counts {
            curr: before.curr + hits as u64,
            ..before
        }
    } else {
        before
    };
    let used = scaled_usage(w, after, elapsed).div_ceil(per as u128);
    let remaining = (w.requests as u128)
        .saturating_sub(used)
        .min(u32::MAX as u128) as u32;
    let retry_after_ms = if over {
        retry_after(w, before, elapsed, hits)
    } else {
        0
    };
    Verdict {
        over,
        remaining: if over { 0 } else { remaining },
        reset_ms: (per - elapsed).max(retry_after_ms),
        retry_after_ms,
    }
}

/// Milliseconds until `hits` fit, assuming no further traffic.
fn retry_after(w: &Window, c: Counts, elapsed: u64, hits: u32) -> u64 {
    let per = w.per_ms.max(1);
    let limit = w.requests as u64;
    let hits = hits as u64;
    let to_bucket_end = per - elapsed;
    if hits > limit {
        // Never fits; tell the client to come back after a whole window.
        return per;
    }
    match w.algorithm {
        Algorithm::Fixed => to_bucket_end,
        Algorithm::Sliding if c.curr + hits <= limit => {
            // Fits later in this bucket, once enough of the previous bucket slid out:
            // prev·(per − e) ≤ (limit − curr − hits)·per.
            let room = ((limit - c.curr - hits) as u128 * per as u128) / c.prev.max(1) as u128;
            let e = per.saturating_sub(room.min(per as u128) as u64);
            e.saturating_sub(elapsed).max(1)
        }
        Algorithm::Sliding => {
            // Only in the next bucket, where this bucket becomes the previous one:
            // curr·(per − g) ≤ (limit − hits)·per.
            let room = ((limit - hits) as u128 * per as u128) / c.curr.max(1) as u128;
            let g = per.saturating_sub(room.min(per as u128) as u64);
            to_bucket_end + g
        }
    }
}

/// `Retry-After` is whole seconds, rounded up, and at least 1.
pub fn retry_after_secs(retry_after_ms: u64) -> u64 {
    retry_after_ms.div_ceil(1000).max(1)
}

#[cfg(test)]
#[path = "algorithm_tests.rs"]
mod tests;
