//! The verdict on each object: its problems, and the status conditions they become.
use std::fmt;

use crate::{
    Condition, ObjectKey,
    status::types::{ACCEPTED, CERTIFICATE_EXPIRING, CONFLICTED, RESOLVED_REFS, SHADOWED},
};

/// One problem with one field of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    pub object: ObjectKey,
    /// Dotted path such as `spec.match.paths[1].exact`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.object, self.field, self.message)
    }
}

/// The verdict on one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub key: ObjectKey,
    pub generation: Option<i64>,
    /// Single-object errors: the object is not Accepted.
    pub errors: Vec<Issue>,
    /// Worth fixing but served anyway.
    pub warnings: Vec<Issue>,
    /// References that did not resolve: the object is not served.
    pub unresolved: Vec<Issue>,
    /// The older Route that owns one of this Route's matches.
    pub conflict: Option<Box<Issue>>,
    /// Paths that never match on some hosts (the Route is still served elsewhere).
    pub shadowed: Vec<Shadowed>,
    /// Hosts of this Route owned by a Host that does not admit its namespace: the
    /// Route is not served (`Accepted=False`, reason `NotAllowedByHost`).
    pub not_allowed: Vec<Issue>,
    /// A Host's certificate expires soon (condition `CertificateExpiring`).
    pub expiring: Option<Box<Issue>>,
}

/// A path of a Route that a more specific Route hides on some hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shadowed {
    pub issue: Issue,
    /// The Route that takes the requests.
    pub winner: ObjectKey,
    /// The hiding Route enforces weaker authentication: requests meant to be
    /// authenticated are served without it. `validate` fails on it.
    pub auth_bypassed: bool,
}

impl Report {
    pub(super) fn new(key: ObjectKey, generation: Option<i64>) -> Self {
        Self {
            key,
            generation,
            errors: vec![],
            warnings: vec![],
            unresolved: vec![],
            conflict: None,
            shadowed: vec![],
            not_allowed: vec![],
            expiring: None,
        }
    }

    /// Refuses the object because processing it panicked (see [`crate::isolate`]).
    pub fn internal(&mut self, stage: &str, panic: &str) {
        self.errors.push(Issue {
            object: self.key.clone(),
            field: crate::isolate::INTERNAL_FIELD.into(),
            message: crate::isolate::internal_message(stage, panic),
        });
    }

    /// Served by the gateway.
    pub fn is_served(&self) -> bool {
        self.errors.is_empty()
            && self.unresolved.is_empty()
            && self.conflict.is_none()
            && self.not_allowed.is_empty()
    }

    /// Some path of this Route is hidden by a Route enforcing weaker authentication.
    pub fn auth_bypassed(&self) -> bool {
        self.shadowed.iter().any(|s| s.auth_bypassed)
    }

    /// Every problem that keeps the object from being served.
    pub fn problems(&self) -> impl Iterator<Item = &Issue> {
        self.errors
            .iter()
            .chain(&self.not_allowed)
            .chain(&self.unresolved)
            .chain(self.conflict.as_deref())
    }

    /// Status conditions (without Programmed, which needs Envoy's answer).
    pub fn conditions(&self) -> Vec<Condition> {
        let join = |issues: &[Issue]| {
            issues
                .iter()
                .map(|i| format!("{}: {}", i.field, i.message))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let internal = self
            .errors
            .iter()
            .any(|e| e.field == crate::isolate::INTERNAL_FIELD);
        let mut out = vec![if self.errors.is_empty() && !self.not_allowed.is_empty() {
            Condition::new(ACCEPTED, false, "NotAllowedByHost", join(&self.not_allowed))
        } else if self.errors.is_empty() {
            Condition::new(ACCEPTED, true, "Accepted", join(&self.warnings))
        } else if internal {
            Condition::new(ACCEPTED, false, "InternalError", join(&self.errors))
        } else if self.warnings.is_empty() {
            Condition::new(ACCEPTED, false, "Invalid", join(&self.errors))
        } else {
            Condition::new(
                ACCEPTED,
                false,
                "Invalid",
                format!("{}; {}", join(&self.errors), join(&self.warnings)),
            )
        }];
        let host = self.key.kind == "Host";
        out.push(if self.unresolved.is_empty() {
            Condition::new(RESOLVED_REFS, true, "ResolvedRefs", "")
        } else if host {
            Condition::new(
                RESOLVED_REFS,
                false,
                "InvalidCertificate",
                join(&self.unresolved),
            )
        } else {
            Condition::new(RESOLVED_REFS, false, "RefNotFound", join(&self.unresolved))
        });
        if host {
            out.push(match &self.conflict {
                Some(c) => Condition::new(CONFLICTED, true, "HostnameTaken", c.message.clone()),
                None => Condition::new(CONFLICTED, false, "NoConflict", ""),
            });
            out.push(match &self.expiring {
                Some(e) => {
                    Condition::new(CERTIFICATE_EXPIRING, true, "ExpiresSoon", e.message.clone())
                }
                None => Condition::new(CERTIFICATE_EXPIRING, false, "NotExpiring", ""),
            });
        }
        if self.key.kind == "Route" {
            out.push(match &self.conflict {
                Some(c) => Condition::new(CONFLICTED, true, "MatchTaken", c.message.clone()),
                None => Condition::new(CONFLICTED, false, "NoConflict", ""),
            });
            out.push(if self.shadowed.is_empty() {
                Condition::new(SHADOWED, false, "NotShadowed", "")
            } else {
                let reason = if self.auth_bypassed() {
                    "AuthBypassed"
                } else {
                    "Shadowed"
                };
                let issues: Vec<Issue> = self.shadowed.iter().map(|s| s.issue.clone()).collect();
                Condition::new(SHADOWED, true, reason, join(&issues))
            });
        }
        for c in &mut out {
            c.observed_generation = self.generation;
        }
        out
    }
}
