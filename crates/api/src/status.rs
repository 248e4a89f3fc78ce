//! Status conditions, shaped like Kubernetes' `metav1.Condition` so `kubectl` and
//! tooling read them as usual. Written by the controller; computed by the validator.
use schemars::JsonSchema;
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
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
}

/// The `.status` of both kinds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
