//! Validation: single-object rules, then cross-object rules (references, conflicts),
//! producing the served [`Model`] and one [`Report`] per object.
//!
//! Every message names the object, the field path and the fix, because the people who
//! read them are service teams applying a manifest, not the platform team.
mod bounds;
mod budget;
mod conflicts;
mod cross;
mod destinations;
mod entries;
mod hosts;
mod memo;
mod names;
mod policy;
pub mod regex;
mod report;
mod route;
mod service;
mod upstream_tls;

pub use bounds::*;
pub use budget::DEFAULT_ROUTE_TABLE_BYTES;
pub use destinations::{Cidr, DestinationRules};
pub use memo::Memo;

/// Rules that depend on where the control plane runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    pub destinations: DestinationRules,
    /// Certificates come from Kubernetes Secrets (`tls.secretName`), not files.
    pub certificates_from_secrets: bool,
    /// A Route may name only hostnames some Host owns (`--require-host-ownership`).
    pub require_host_ownership: bool,
    /// Bytes the whole route table may take (see `budget`); older Routes first.
    pub route_table_bytes: usize,
}

impl Rules {
    /// File mode (`serve`, `up`, `validate`): loopback destinations allowed.
    pub fn file_mode() -> Self {
        Self {
            destinations: DestinationRules::file_mode(),
            certificates_from_secrets: false,
            require_host_ownership: false,
            route_table_bytes: DEFAULT_ROUTE_TABLE_BYTES,
        }
    }

    /// Kubernetes mode: no loopback, link-local, unspecified or multicast destination
    /// outside `allowed`.
    pub fn cluster(allowed: Vec<Cidr>) -> Self {
        Self {
            destinations: DestinationRules::cluster(allowed),
            certificates_from_secrets: true,
            require_host_ownership: false,
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

/// `host:port`, `ip:port` or `[v6]:port` → (host, port, host is an IP); the error is the fix.
pub use names::parse_address;
pub use report::{Issue, Report, Shadowed};

use std::sync::Arc;

use crate::{Certificates, Model, ObjectKey, Objects, Route, Service};

/// The whole verdict: what to serve, and why each object is or is not served.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub model: Model,
    /// One per input object, sorted by key.
    pub reports: Vec<Report>,
}

impl Outcome {
    pub fn report(&self, key: &ObjectKey) -> Option<&Report> {
        // Sorted by key: callers look up every object, so a scan would be quadratic.
        // The first of equal keys, as a scan would find (a duplicate's copy follows).
        let i = self.reports.partition_point(|r| r.key < *key);
        self.reports.get(i).filter(|r| &r.key == key)
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

/// Validates every object against the file-mode rules and against each other. Takes
/// objects or shared ones (`Arc`), as sources and tests hold them.
pub fn validate<R, S>(routes: &[R], services: &[S]) -> Outcome
where
    R: Clone + Into<Arc<Route>>,
    S: Clone + Into<Arc<Service>>,
{
    validate_with(routes, services, &Rules::file_mode())
}

/// Validates Routes and Services (no Hosts) against `rules` and against each other.
pub fn validate_with<R, S>(routes: &[R], services: &[S], rules: &Rules) -> Outcome
where
    R: Clone + Into<Arc<Route>>,
    S: Clone + Into<Arc<Service>>,
{
    let objects = Objects {
        routes: routes.iter().cloned().map(Into::into).collect(),
        services: services.iter().cloned().map(Into::into).collect(),
        hosts: Vec::new(),
    };
    validate_objects(&objects, &Certificates::new(), rules)
}

/// One object's single-object rules, isolated: a panic refuses only this object.
fn check_one<T>(
    kind: &'static str,
    obj: &T,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    check: impl FnOnce(&T, &mut Report),
) -> Report {
    let mut report = Report::new(ObjectKey::new(kind, meta), meta.generation);
    let mut checked = report.clone();
    match crate::isolate::isolate(|| check(obj, &mut checked)) {
        Ok(()) => report = checked,
        Err(p) => report.internal("validation", &p),
    }
    report
}

/// Validates every object against `rules` and against each other; `certificates` are
/// the Hosts' certificates and Services' TLS material as the control plane loaded them.
pub fn validate_objects(objects: &Objects, certificates: &Certificates, rules: &Rules) -> Outcome {
    validate_all(objects, certificates, rules, None)
}

impl Memo {
    /// As [`validate_objects`], reusing the single-object reports of the objects this
    /// memo saw last time (the same `Arc`s): what a control plane that validates on
    /// every edit calls. The outcome is the one [`validate_objects`] gives.
    pub fn validate(
        &mut self,
        objects: &Objects,
        certificates: &Certificates,
        rules: &Rules,
    ) -> Outcome {
        validate_all(objects, certificates, rules, Some(self.for_rules(rules)))
    }
}

fn validate_all(
    objects: &Objects,
    certificates: &Certificates,
    rules: &Rules,
    mut memo: Option<&mut Memo>,
) -> Outcome {
    let mut service_reports = memo::check_all(
        &objects.services,
        memo.as_deref_mut().map(|m| &mut m.services),
        |s| {
            check_one("Service", s, &s.metadata, |s, r| {
                service::check(s, rules, r)
            })
        },
    );
    let seed = memo.as_ref().map(|m| m.seed.clone()).unwrap_or_default();
    let mut route_reports = memo::check_all_with(
        &objects.routes,
        memo.as_deref_mut().map(|m| &mut m.routes),
        |r| check_one("Route", r, &r.metadata, route::check),
        |r| memo::derive(r, &seed),
    );
    let mut host_reports = memo::check_all(
        &objects.hosts,
        memo.as_deref_mut().map(|m| &mut m.hosts),
        |h| check_one("Host", h, &h.metadata, |h, r| hosts::check(h, rules, r)),
    );
    cross::duplicates(&mut service_reports);
    let routes_in_key_order = cross::duplicates(&mut route_reports);
    cross::duplicates(&mut host_reports);
    let upstream_tls = upstream_tls::resolve(&mut service_reports, certificates);
    let served_hosts = hosts::resolve(&mut host_reports, certificates);
    // With a memo, each Route beside its kept entry (the memo holds these Routes in
    // this order) and the stamp of the Hosts' ownership.
    let hosts_stamp = memo
        .as_deref_mut()
        .map(|m| m.admission.stamp_for(&served_hosts));
    let admission = hosts_stamp.zip(memo.as_deref_mut().map(|m| &mut m.routes));
    hosts::admit_routes(&mut route_reports, &served_hosts, rules, admission);
    // Without a memo, nothing is kept: every entry is built, every Route derived.
    let mut fresh = entries::KeptEntries::default();
    let fresh_derived: Vec<memo::Derived>;
    let (kept, derived): (_, Vec<&memo::Derived>) = match memo {
        // The memo holds exactly these Routes, in this order, each with its own.
        Some(m) => (&mut m.entries, m.routes.iter().map(|(_, _, d)| d).collect()),
        None => {
            let seed = foldhash::fast::RandomState::default();
            fresh_derived = (route_reports.iter())
                .map(|(_, r)| memo::derive(r, &seed))
                .collect();
            (&mut fresh, fresh_derived.iter().collect())
        }
    };
    let mut model = cross::resolve(
        &service_reports,
        &mut route_reports,
        cross::Order {
            in_key_order: routes_in_key_order,
            derived: &derived,
        },
        served_hosts,
        hosts_stamp,
        rules.route_table_bytes,
        kept,
    );
    model.upstream_tls = upstream_tls;
    // Kinds in key order (Host < Route < Service): sources hand each kind over in key
    // order, so the sort usually finds nothing to move.
    let reports: Vec<Report> = host_reports
        .into_iter()
        .map(|(r, _)| r)
        .chain(route_reports.into_iter().map(|(r, _)| r))
        .chain(service_reports.into_iter().map(|(r, _)| r))
        .collect();
    let reports = sorted_by(reports, |a, b| a.key.cmp(&b.key));
    Outcome { model, reports }
}

/// `items` stably sorted by `cmp`, moving each item once: sorting indices and then
/// placing the items is cheaper than a merge sort moving large structs (reports, route
/// entries) around at 10k Routes.
pub(crate) fn sorted_by<T>(items: Vec<T>, cmp: impl Fn(&T, &T) -> std::cmp::Ordering) -> Vec<T> {
    sorted_by_index(items, |items, a, b| cmp(&items[a], &items[b]))
}

/// As [`sorted_by`], with `cmp` comparing positions in `items` (so it can look at
/// values computed once per item beside them).
pub(crate) fn sorted_by_index<T>(
    items: Vec<T>,
    cmp: impl Fn(&[T], usize, usize) -> std::cmp::Ordering,
) -> Vec<T> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| cmp(&items, a, b));
    placed(items, order)
}

/// `items` moved into `order` (a permutation of their positions), each moved once.
pub(crate) fn placed<T>(items: Vec<T>, order: Vec<usize>) -> Vec<T> {
    // Often already in order (sources hand objects over sorted): nothing to move.
    if order.iter().enumerate().all(|(at, &i)| at == i) {
        return items;
    }
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

#[cfg(test)]
mod host_tests;
#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod precedence_tests;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod upstream_tls_tests;
