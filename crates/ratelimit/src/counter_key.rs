//! Counter keys: `<prefix>prl:{<hash>}:<window ms>` where the hash identifies the
//! domain and the descriptor entries (or a limit's own counter identity).
//!
//! Descriptor values come from clients (headers, addresses, API keys), so the hash is
//! keyed: HMAC-SHA256 truncated to 128 bits, over length-prefixed fields (no separator
//! a value could contain). Without the key nobody can pick values whose keys collide
//! and share — or exhaust — someone else's counter.
//!
//! - Memory store: a random key per process (counters are per process anyway).
//! - Redis: every replica must derive the same key names, so the key comes from a
//!   configured secret. Without one a fixed, public key is used: collisions then still
//!   cost about 2^64 HMAC evaluations (the birthday bound of 128 bits), but anyone
//!   reading Redis could test guesses of low-entropy values (an IP address) against
//!   the key names. The secret closes that too.
use ring::hmac;

/// The fixed key used for shared stores when no secret is configured.
const PUBLIC_KEY: &[u8] = b"portcullis-ratelimit counter keys (no secret configured)";

#[derive(Debug)]
pub struct CounterKeys {
    key: hmac::Key,
    prefix: String,
}

impl CounterKeys {
    /// A key from `secret`, or a random one.
    pub fn new(secret: Option<&[u8]>, prefix: &str) -> CounterKeys {
        let key = match secret {
            Some(s) => hmac::Key::new(hmac::HMAC_SHA256, s),
            None => {
                let random: [u8; 32] = std::array::from_fn(|_| fastrand::u8(..));
                hmac::Key::new(hmac::HMAC_SHA256, &random)
            }
        };
        CounterKeys {
            key,
            prefix: prefix.to_string(),
        }
    }

    /// The key shared stores use when no secret is configured (see module docs).
    pub fn public(prefix: &str) -> CounterKeys {
        CounterKeys {
            key: hmac::Key::new(hmac::HMAC_SHA256, PUBLIC_KEY),
            prefix: prefix.to_string(),
        }
    }

    /// `<prefix>prl:{<32 hex>}`: the part of the key common to every window of one
    /// counter. The `{…}` hash tag keeps those windows in one Redis Cluster slot.
    pub fn base<'a>(
        &self,
        domain: &str,
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        field(&mut ctx, domain.as_bytes());
        for (k, v) in entries {
            field(&mut ctx, k.as_bytes());
            field(&mut ctx, v.as_bytes());
        }
        let tag = ctx.sign();
        // Room for the window suffix `:<per_ms>` the caller appends (no regrowth).
        let mut out = String::with_capacity(self.prefix.len() + 64);
        out.push_str(&self.prefix);
        out.push_str("prl:{");
        push_hex(&mut out, &tag.as_ref()[..16]);
        out.push('}');
        out
    }
}

/// Lowercase hex without a `format!` (and its String) per byte: this runs on every
/// request (a profile of the memory store showed those small allocations).
fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
}

fn field(ctx: &mut hmac::Context, bytes: &[u8]) {
    ctx.update(&(bytes.len() as u64).to_le_bytes());
    ctx.update(bytes);
}

/// A short content digest for configuration versions (not a secret).
pub fn digest_hex(parts: &[&[u8]]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_le_bytes());
        ctx.update(p);
    }
    let mut out = String::with_capacity(16);
    push_hex(&mut out, &ctx.finish().as_ref()[..8]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_what_format_wrote_so_existing_redis_keys_still_match() {
        let all: Vec<u8> = (0..=255).collect();
        let mut out = String::new();
        push_hex(&mut out, &all);
        let want: String = all.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(out, want);
    }

    #[test]
    fn every_entry_counts_and_separators_cannot_be_forged() {
        let k = CounterKeys::new(Some(b"s"), "");
        let a = k.base("d", [("k", "v"), ("u", "1")]);
        assert_ne!(a, k.base("d", [("k", "v"), ("u", "2")]));
        assert_ne!(a, k.base("d", [("kv", ""), ("u", "1")]));
        // Values holding what a separator-joined encoding would use.
        assert_ne!(
            k.base("d", [("k", "v\u{1f}u\u{1e}1")]),
            k.base("d", [("k", "v"), ("u", "1")])
        );
        assert_ne!(k.base("d", [("a", "b")]), k.base("da", [("", "b")]));
        assert!(a.starts_with("prl:{") && a.ends_with('}') && a.len() == 5 + 32 + 1);
    }

    #[test]
    fn the_secret_decides_the_key_and_replicas_with_one_secret_agree() {
        let e = [("user", "alice")];
        assert_eq!(
            CounterKeys::new(Some(b"s1"), "").base("d", e),
            CounterKeys::new(Some(b"s1"), "").base("d", e)
        );
        assert_ne!(
            CounterKeys::new(Some(b"s1"), "").base("d", e),
            CounterKeys::new(Some(b"s2"), "").base("d", e)
        );
        assert_ne!(
            CounterKeys::new(None, "").base("d", e),
            CounterKeys::new(None, "").base("d", e),
            "no secret: a random key per process"
        );
        assert_eq!(
            CounterKeys::public("").base("d", e),
            CounterKeys::public("").base("d", e)
        );
        assert!(
            CounterKeys::public("rl_")
                .base("d", e)
                .starts_with("rl_prl:{")
        );
    }
}
