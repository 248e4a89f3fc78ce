//! Durations as Kubernetes users write them: `"250ms"`, `"10s"`, `"1m30s"`.
//!
//! A newtype (rather than `std::time::Duration` with a serde adapter) so the CRD schema
//! says "string" and every field gets the same parse errors.
use std::{borrow::Cow, fmt, str::FromStr};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

/// The longest duration any field accepts (731 days: two years of HSTS). Every field
/// has a tighter bound of its own; this one keeps arithmetic on durations (backoff ×
/// 10, windows in milliseconds, Envoy's 32-bit second fields) far from overflow for any
/// input.
pub const MAX: Duration = Duration::from_secs(731 * 24 * 3600);

impl Duration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    pub const fn as_std(self) -> std::time::Duration {
        self.0
    }
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty duration; write it like 250ms, 10s or 1m".into());
        }
        if s.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!(
                "duration {s:?} has no unit; write it like {s}s or {s}ms"
            ));
        }
        let d = humantime::parse_duration(s)
            .map_err(|e| format!("invalid duration {s:?} ({e}); write it like 250ms, 10s or 1m"))?;
        if d > MAX.0 {
            return Err(format!(
                "duration {s:?} is longer than {MAX}, the longest any setting accepts"
            ));
        }
        Ok(Self(d))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let ms = d.as_millis();
        if !d.subsec_nanos().is_multiple_of(1_000_000) {
            write!(f, "{}us", d.as_micros())
        } else if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else if ms.is_multiple_of(86_400_000) && ms >= 2 * 86_400_000 {
            write!(f, "{}d", ms / 86_400_000)
        } else if ms.is_multiple_of(3_600_000) && ms >= 2 * 3_600_000 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) && ms >= 120_000 {
            write!(f, "{}m", ms / 60_000)
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DurationVisitor)
    }
}

/// Accepts strings; numbers get the "add a unit" message instead of serde's type error.
struct DurationVisitor;

impl serde::de::Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as 250ms, 10s or 1m")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Duration, E> {
        s.parse().map_err(E::custom)
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Duration, E> {
        self.visit_str(&n.to_string())
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Duration, E> {
        self.visit_str(&n.to_string())
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Duration, E> {
        self.visit_str(&n.to_string())
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$",
            "description": "A duration such as 250ms, 10s or 1m30s."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_common_forms() {
        for (text, ms) in [
            ("250ms", 250),
            ("10s", 10_000),
            ("1m", 60_000),
            ("1m30s", 90_000),
        ] {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.0.as_millis(), ms, "{text}");
        }
        assert_eq!(Duration::from_millis(1500).to_string(), "1500ms");
        assert_eq!(Duration::from_secs(120).to_string(), "2m");
        assert_eq!(Duration::from_secs(10).to_string(), "10s");
    }

    #[test]
    fn huge_durations_are_refused_at_parse_time() {
        let err = "2000000000000000000s".parse::<Duration>().unwrap_err();
        assert!(err.contains("longer than 731d"), "{err}");
        assert_eq!("731d".parse::<Duration>(), Ok(MAX));
        assert_eq!(Duration::from_secs(86_400).to_string(), "24h");
    }

    #[test]
    fn rejects_missing_unit_with_a_fix() {
        let err = "30".parse::<Duration>().unwrap_err();
        assert!(err.contains("30s"), "{err}");
        assert!("soon".parse::<Duration>().is_err());
    }
}
