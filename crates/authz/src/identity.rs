//! Who a credential belongs to, and the digest the service keys everything by (the raw
//! credential is hashed on arrival and never stored, logged or forwarded).
use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

/// An authenticated caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub account: String,
    pub scopes: Vec<String>,
    /// A public id of the credential (the key's id, or a digest prefix): what the
    /// rate limiter's `apiKey` dimension and the logs see instead of the key.
    pub key_id: String,
    /// Further claims a store returned (JWT claims, introspection fields).
    pub claims: BTreeMap<String, String>,
    /// When the credential itself stops being valid (a JWT's `exp`): a cached identity
    /// is never served past it.
    pub expires_at: Option<SystemTime>,
    /// This identity's encoded "allowed" answer, made on its first allowed Check and
    /// shared by the later ones while the identity stays cached (not part of what the
    /// identity is: it compares equal and clones empty).
    pub answer: crate::answer::AnswerMemo,
}

impl Identity {
    /// Every scope in `wanted` that this identity lacks.
    pub fn missing_scopes<'a>(&self, wanted: &'a [String]) -> Vec<&'a str> {
        wanted
            .iter()
            .filter(|w| !self.scopes.iter().any(|s| s == *w))
            .map(String::as_str)
            .collect()
    }
}

/// SHA-256 of a credential.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn of(secret: &[u8]) -> Digest {
        let d = ring::digest::digest(&ring::digest::SHA256, secret);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Digest(out)
    }

    /// Lower-case hex, the form key files and database rows hold.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(s: &str) -> Option<Digest> {
        let s = s.strip_prefix("sha256:").unwrap_or(s);
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Digest(out))
    }

    /// A short public id for logs and rate-limit counters: not enough to recover or
    /// brute-force the key from (12 hex digits of a SHA-256 of a high-entropy key).
    pub fn short_id(&self) -> String {
        self.hex()[..12].to_string()
    }

    /// Comparison whose time does not depend on where the digests differ.
    pub fn ct_eq(&self, other: &Digest) -> bool {
        let diff = self
            .0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.short_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips_through_hex_and_compares() {
        let d = Digest::of(b"secret");
        assert_eq!(
            d.hex(),
            "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
        );
        assert_eq!(Digest::from_hex(&d.hex()), Some(d));
        assert_eq!(Digest::from_hex(&format!("sha256:{}", d.hex())), Some(d));
        assert_eq!(Digest::from_hex("abc"), None);
        assert_eq!(Digest::from_hex(&"zz".repeat(32)), None);
        assert!(d.ct_eq(&Digest::of(b"secret")));
        assert!(!d.ct_eq(&Digest::of(b"secreT")));
    }

    #[test]
    fn missing_scopes_lists_only_absent_ones() {
        let id = Identity {
            scopes: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        let want = vec!["a".to_string(), "c".to_string()];
        assert_eq!(id.missing_scopes(&want), vec!["c"]);
        assert!(id.missing_scopes(&[]).is_empty());
    }
}

/// A token's `exp` (seconds since the epoch) as a time; none when it is past what the
/// clock can represent (`exp: 18446744073709551615`), which then counts as no expiry of
/// its own — the cache TTL still bounds how long the identity is kept. Adding it
/// unchecked panicked on such a token (found by the credentials fuzz target).
pub fn expiry_at(exp_secs: u64) -> Option<std::time::SystemTime> {
    std::time::SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(exp_secs))
}

#[cfg(test)]
mod expiry_tests {
    #[test]
    fn an_unrepresentable_exp_is_no_expiry_not_a_panic() {
        assert_eq!(super::expiry_at(u64::MAX), None);
        let t = super::expiry_at(2_000_000_000).unwrap();
        assert_eq!(
            t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
            2_000_000_000
        );
    }
}
