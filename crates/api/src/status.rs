//! Status conditions with the schema of Kubernetes' `metav1.Condition` (required
//! fields, status enum, RFC 3339 times, a list keyed by type), so `kubectl wait`,
//! kstatus (Argo CD, Flux) and other tooling read them as they read built-in ones.
//! Written by the controller; computed by the validator.
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Condition types set on every Route and Service.
pub mod types {
    /// Validation passed (single-object and cross-object).
    pub const ACCEPTED: &str = "Accepted";
    /// Every referenced Service (and its endpoints) exists.
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// An older Route owns the same match; this one is not served.
    pub const CONFLICTED: &str = "Conflicted";
    /// Some path of the Route never matches on some hosts: a Route naming the host more
    /// specifically takes its requests (reason `AuthBypassed` when that Route enforces
    /// weaker authentication).
    pub const SHADOWED: &str = "Shadowed";
    /// The Envoy fleet ACKed a configuration containing the object.
    pub const PROGRAMMED: &str = "Programmed";
    /// A Host's certificate expires within 14 days.
    pub const CERTIFICATE_EXPIRING: &str = "CertificateExpiring";
    /// Summary for kstatus-based tools: accepted, references resolved, not conflicted,
    /// no auth bypass, and programmed.
    pub const READY: &str = "Ready";
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

impl Condition {
    pub fn new(type_: &str, ok: bool, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_: type_.into(),
            status: if ok { "True" } else { "False" }.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: None,
            last_transition_time: None,
        }
    }

    pub fn is_true(&self) -> bool {
        self.status == "True"
    }

    /// The `Ready` summary of `conditions`: the first condition that is not as it
    /// should be decides the reason.
    pub fn ready(conditions: &[Condition]) -> Condition {
        use types::*;
        let find = |t: &str| conditions.iter().find(|c| c.type_ == t);
        for (t, want) in [(ACCEPTED, true), (RESOLVED_REFS, true), (CONFLICTED, false)] {
            if let Some(c) = find(t)
                && c.is_true() != want
            {
                return Condition::new(READY, false, &c.reason, c.message.clone());
            }
        }
        if let Some(c) = find(SHADOWED).filter(|c| c.reason == "AuthBypassed") {
            return Condition::new(READY, false, &c.reason, c.message.clone());
        }
        match find(PROGRAMMED) {
            Some(c) if c.is_true() => Condition::new(READY, true, "Ready", ""),
            Some(c) => Condition::new(READY, false, &c.reason, c.message.clone()),
            None => Condition::new(READY, false, "Pending", "not programmed yet"),
        }
    }
}

impl JsonSchema for Condition {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Condition".into()
    }

    fn inline_schema() -> bool {
        true
    }

    /// metav1.Condition's own schema (k8s.io/apimachinery), so the API server holds
    /// status writers to the same rules.
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "description": "A condition of the object, as metav1.Condition.",
            "required": ["type", "status", "reason", "message", "lastTransitionTime"],
            "properties": {
                "type": {
                    "type": "string", "maxLength": 316,
                    "pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
                },
                "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                "reason": {
                    "type": "string", "minLength": 1, "maxLength": 1024,
                    "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
                },
                "message": {"type": "string", "maxLength": 32768},
                "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
                "lastTransitionTime": {"type": "string", "format": "date-time"}
            }
        })
    }
}

/// `conditions` as a list keyed by `type` (server-side apply merges by it).
fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut s = json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "maxItems": 16
    });
    s.insert("items".into(), Condition::json_schema(generator).into());
    s
}

/// The `.status` of both kinds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::{types::*, *};

    #[test]
    fn ready_summarizes_the_first_condition_that_is_not_as_it_should_be() {
        let ok = |t: &str| Condition::new(t, true, t, "");
        let mut all = vec![
            ok(ACCEPTED),
            ok(RESOLVED_REFS),
            Condition::new(CONFLICTED, false, "NoConflict", ""),
            Condition::new(SHADOWED, true, "Shadowed", "hidden on a.example.com"),
            ok(PROGRAMMED),
        ];
        assert!(
            Condition::ready(&all).is_true(),
            "a Shadowed path alone is not a failure"
        );
        all[3].reason = "AuthBypassed".into();
        assert_eq!(Condition::ready(&all).reason, "AuthBypassed");
        all[2] = Condition::new(CONFLICTED, true, "MatchTaken", "owned by x");
        let r = Condition::ready(&all);
        assert_eq!(
            (r.is_true(), r.reason.as_str(), r.message.as_str()),
            (false, "MatchTaken", "owned by x")
        );
        assert_eq!(Condition::ready(&all[..2]).reason, "Pending");
    }
}
