//! Reporting one decision: a status per request descriptor, the headers of the
//! tightest window, `portcullis_ratelimit_decisions_total` and envoyproxy's per-rule
//! statistics.
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{Code, DescriptorStatus};

use crate::algorithm::{self, Counts, Verdict};
use crate::behaviour::Behaviour;
use crate::limit::FailurePolicy;
use crate::local_cache::{OverLimit, cached_verdict};
use crate::metrics::{Metrics, outcome};
use crate::plan::Planned;
use crate::response::{self, Reported, keep_tightest};
use crate::stats::Tally;
use crate::store::Check;

#[derive(Default)]
struct Slot {
    status: Option<(String, Option<Reported>, bool)>,
    unlimited: bool,
}

pub struct Report<'a> {
    metrics: &'a Metrics,
    behaviour: &'a Behaviour,
    slots: Vec<Slot>,
    /// The window the headers describe: the tightest of the enforcing limits.
    tightest: Option<Reported>,
}

impl<'a> Report<'a> {
    pub fn new(descriptors: usize, metrics: &'a Metrics, behaviour: &'a Behaviour) -> Self {
        Report {
            metrics,
            behaviour,
            slots: (0..descriptors).map(|_| Slot::default()).collect(),
            tightest: None,
        }
    }

    /// A descriptor's status; with several limits on one descriptor (Limitador) the
    /// tightest is shown, an over one first.
    fn status(&mut self, l: &Planned, reported: Option<Reported>, over: bool) {
        let Some(slot) = self.slots.get_mut(l.hit.descriptor) else {
            return;
        };
        let replace = match (&slot.status, reported) {
            (None, _) => true,
            (Some((_, _, was_over)), _) if over != *was_over => over,
            (Some((_, Some(cur), _)), Some(r)) => r.tighter_than(cur),
            (Some((_, None, _)), Some(_)) => true,
            (Some(_), None) => false,
        };
        if replace {
            slot.status = Some((l.hit.limit.name.clone(), reported, over));
        }
    }

    /// An unlimited limit: OK, never counted.
    pub fn passive(&mut self, l: &Planned) {
        self.metrics.decision(l.hit.metric_name(), outcome::OK);
        if let Some(slot) = self.slots.get_mut(l.hit.descriptor) {
            slot.unlimited |= slot.status.is_none();
        }
    }

    /// A limit decided by the store.
    pub fn decided(
        &mut self,
        l: &Planned,
        checks: &[Check],
        verdicts: &[Verdict],
        counts: &[Counts],
        now: u64,
    ) {
        let limit = &l.hit.limit;
        let mut mine: Option<(Reported, usize)> = None;
        let mut over = false;
        for k in l.checks.clone() {
            let r = Reported {
                window: checks[k].window,
                verdict: verdicts[k],
            };
            over |= r.verdict.over;
            if mine.as_ref().is_none_or(|(cur, _)| r.tighter_than(cur)) {
                mine = Some((r, k));
            }
        }
        let label = match (over, limit.shadow) {
            (false, _) => outcome::OK,
            (true, false) => outcome::OVER_LIMIT,
            (true, true) => outcome::SHADOW_OVER_LIMIT,
        };
        self.metrics.decision(l.hit.metric_name(), label);
        let Some((r, k)) = mine else { return };
        let before = algorithm::usage(&r.window, counts[k], now);
        self.metrics.rules.record(
            &l.hit.stat,
            Tally::decided(
                before,
                u64::from(l.hits),
                u64::from(r.window.requests),
                self.behaviour.near_limit_ratio,
                limit.shadow,
            ),
        );
        if !limit.shadow {
            keep_tightest(&mut self.tightest, r);
        }
        self.status(l, Some(r), over && !limit.shadow);
    }

    /// A limit answered from the local over-limit cache.
    pub fn answered_locally(&mut self, l: &Planned, entries: &[OverLimit], now: u64) {
        let mut mine: Option<Reported> = None;
        for e in entries {
            keep_tightest(
                &mut mine,
                Reported {
                    window: e.window,
                    verdict: cached_verdict(e, now),
                },
            );
        }
        self.metrics
            .decision(l.hit.metric_name(), outcome::OVER_LIMIT);
        self.metrics
            .rules
            .record(&l.hit.stat, Tally::from_local_cache(u64::from(l.hits)));
        if let Some(r) = mine {
            keep_tightest(&mut self.tightest, r);
        }
        self.status(l, mine, true);
    }

    /// A limit whose store failed; returns whether its policy refuses.
    pub fn store_failed(&mut self, l: &Planned) -> bool {
        let limit = &l.hit.limit;
        let denies = limit.on_store_failure == FailurePolicy::Deny && !limit.shadow;
        let label = if denies {
            outcome::STORE_FAILURE_DENIED
        } else {
            outcome::STORE_FAILURE_ALLOWED
        };
        self.metrics.decision(l.hit.metric_name(), label);
        self.metrics
            .rules
            .record(&l.hit.stat, Tally::undecided(u64::from(l.hits)));
        self.status(l, None, denies);
        denies
    }

    pub fn finish(&mut self, refused: bool, retry_after_ms: Option<u64>) -> RateLimitResponse {
        let statuses: Vec<DescriptorStatus> = self
            .slots
            .iter()
            .map(|s| match &s.status {
                Some((name, r, over)) => response::descriptor_status(name, r.as_ref(), *over),
                None if s.unlimited => response::unlimited_status(),
                None => response::descriptor_status("", None, false),
            })
            .collect();
        RateLimitResponse {
            overall_code: if refused { Code::OverLimit } else { Code::Ok } as i32,
            statuses,
            response_headers_to_add: response::headers(
                &self.behaviour.headers,
                self.tightest.as_ref(),
                retry_after_ms.filter(|_| refused),
            ),
            ..Default::default()
        }
    }
}
