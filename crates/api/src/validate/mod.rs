//! Validation: single-object rules, then cross-object rules (references, conflicts),
//! producing the served [`Model`] and one [`Report`] per object.
//!
//! Every message names the object, the field path and the fix, because the people who
//! read them are service teams applying a manifest, not the platform team.
mod cross;
mod names;
mod policy;
mod route;
mod service;

use std::fmt;

/// `host:port`, `ip:port` or `[v6]:port` → (host, port, host is an IP); the error is the fix.
pub use names::parse_address;

use crate::{
    Condition, Model, ObjectKey, Route, Service,
    status::types::{ACCEPTED, CONFLICTED, RESOLVED_REFS},
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
        }
    }

    /// Served by the gateway.
    pub fn is_served(&self) -> bool {
        self.errors.is_empty() && self.unresolved.is_empty() && self.conflict.is_none()
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
        let mut out = vec![if self.errors.is_empty() {
            Condition::new(ACCEPTED, true, "Accepted", join(&self.warnings))
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
}

/// Validates every object against the rules and against each other.
pub fn validate(routes: &[Route], services: &[Service]) -> Outcome {
    let mut service_reports: Vec<(Report, &Service)> = services
        .iter()
        .map(|s| {
            let key = ObjectKey::new("Service", &s.metadata);
            let mut report = Report::new(key, s.metadata.generation);
            service::check(s, &mut report);
            (report, s)
        })
        .collect();
    let mut route_reports: Vec<(Report, &Route)> = routes
        .iter()
        .map(|r| {
            let key = ObjectKey::new("Route", &r.metadata);
            let mut report = Report::new(key, r.metadata.generation);
            route::check(r, &mut report);
            (report, r)
        })
        .collect();
    cross::duplicates(&mut service_reports);
    cross::duplicates(&mut route_reports);
    let model = cross::resolve(&service_reports, &mut route_reports);
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
mod tests;
