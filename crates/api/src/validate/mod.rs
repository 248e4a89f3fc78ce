//! Validation: single-object rules, then cross-object rules (references, conflicts),
//! producing the served [`Model`] and one [`Report`] per object.
//!
//! Every message names the object, the field path and the fix, because the people who
//! read them are service teams applying a manifest, not the platform team.
mod bounds;
mod budget;
mod cross;
mod destinations;
mod names;
mod policy;
pub mod regex;
mod route;
mod service;

pub use bounds::*;
pub use budget::DEFAULT_ROUTE_TABLE_BYTES;
pub use destinations::{Cidr, DestinationRules};

/// Rules that depend on where the control plane runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    pub destinations: DestinationRules,
    /// Bytes the whole route table may take (see `budget`); older Routes first.
    pub route_table_bytes: usize,
}

impl Rules {
    /// File mode (`serve`, `up`, `validate`): loopback destinations allowed.
    pub fn file_mode() -> Self {
        Self {
            destinations: DestinationRules::file_mode(),
            route_table_bytes: DEFAULT_ROUTE_TABLE_BYTES,
        }
    }

    /// Kubernetes mode: no loopback, link-local, unspecified or multicast destination
    /// outside `allowed`.
    pub fn cluster(allowed: Vec<Cidr>) -> Self {
        Self {
            destinations: DestinationRules::cluster(allowed),
            route_table_bytes: DEFAULT_ROUTE_TABLE_BYTES,
        }
    }
}

/// The strict rules: a deployment that forgets to choose gets Kubernetes mode.
impl Default for Rules {
    fn default() -> Self {
        Self::cluster(Vec::new())
    }
}

use std::fmt;

/// `host:port`, `ip:port` or `[v6]:port` → (host, port, host is an IP); the error is the fix.
pub use names::parse_address;

use crate::{
    Condition, Model, ObjectKey, Route, Service,
    status::types::{ACCEPTED, CONFLICTED, RESOLVED_REFS, SHADOWED},
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
    pub conflict: Option<Issue>,
    /// Paths that never match on some hosts (the Route is still served elsewhere).
    pub shadowed: Vec<Shadowed>,
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
    fn new(key: ObjectKey, generation: Option<i64>) -> Self {
        Self {
            key,
            generation,
            errors: vec![],
            warnings: vec![],
            unresolved: vec![],
            conflict: None,
            shadowed: vec![],
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
        self.errors.is_empty() && self.unresolved.is_empty() && self.conflict.is_none()
    }

    /// Some path of this Route is hidden by a Route enforcing weaker authentication.
    pub fn auth_bypassed(&self) -> bool {
        self.shadowed.iter().any(|s| s.auth_bypassed)
    }

    /// Every problem that keeps the object from being served.
    pub fn problems(&self) -> impl Iterator<Item = &Issue> {
        self.errors
            .iter()
            .chain(&self.unresolved)
            .chain(&self.conflict)
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
        let mut out = vec![if self.errors.is_empty() {
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
        out.push(if self.unresolved.is_empty() {
            Condition::new(RESOLVED_REFS, true, "ResolvedRefs", "")
        } else {
            Condition::new(RESOLVED_REFS, false, "RefNotFound", join(&self.unresolved))
        });
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

/// The whole verdict: what to serve, and why each object is or is not served.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub model: Model,
    /// One per input object, sorted by key.
    pub reports: Vec<Report>,
}

impl Outcome {
    pub fn report(&self, key: &ObjectKey) -> Option<&Report> {
        self.reports.iter().find(|r| &r.key == key)
    }

    /// Every problem that keeps an object from being served, in key order.
    pub fn problems(&self) -> impl Iterator<Item = &Issue> {
        self.reports.iter().flat_map(Report::problems)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Issue> {
        self.reports.iter().flat_map(|r| r.warnings.iter())
    }

    /// Every shadowed path; `auth_bypassed` ones make `validate` fail.
    pub fn shadowed(&self) -> impl Iterator<Item = &Shadowed> {
        self.reports.iter().flat_map(|r| r.shadowed.iter())
    }
}

/// Validates every object against the file-mode rules and against each other.
pub fn validate(routes: &[Route], services: &[Service]) -> Outcome {
    validate_with(routes, services, &Rules::file_mode())
}

/// Validates every object against `rules` and against each other.
pub fn validate_with(routes: &[Route], services: &[Service], rules: &Rules) -> Outcome {
    let mut service_reports: Vec<(Report, &Service)> = services
        .iter()
        .map(|s| {
            let key = ObjectKey::new("Service", &s.metadata);
            let mut report = Report::new(key, s.metadata.generation);
            let mut checked = report.clone();
            match crate::isolate::isolate(|| service::check(s, rules, &mut checked)) {
                Ok(()) => report = checked,
                Err(p) => report.internal("validation", &p),
            }
            (report, s)
        })
        .collect();
    let mut route_reports: Vec<(Report, &Route)> = routes
        .iter()
        .map(|r| {
            let key = ObjectKey::new("Route", &r.metadata);
            let mut report = Report::new(key, r.metadata.generation);
            let mut checked = report.clone();
            match crate::isolate::isolate(|| route::check(r, &mut checked)) {
                Ok(()) => report = checked,
                Err(p) => report.internal("validation", &p),
            }
            (report, r)
        })
        .collect();
    cross::duplicates(&mut service_reports);
    cross::duplicates(&mut route_reports);
    let model = cross::resolve(
        &service_reports,
        &mut route_reports,
        rules.route_table_bytes,
    );
    let mut reports: Vec<Report> = service_reports
        .into_iter()
        .map(|(r, _)| r)
        .chain(route_reports.into_iter().map(|(r, _)| r))
        .collect();
    reports.sort_by(|a, b| a.key.cmp(&b.key));
    Outcome { model, reports }
}

#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod precedence_tests;
#[cfg(test)]
mod tests;
