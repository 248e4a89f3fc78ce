//! The decision: request descriptors → limits that apply (`table`) → checks (`plan`)
//! → (local over-limit cache | one store call, bounded by the store timeout) →
//! statuses, headers, metrics (`report`).
//!
//! By default a request is admitted only if every enforcing window of every limit has
//! room; it is then counted in all of them (shadow limits included), else in none.
//! [`Behaviour`] restores envoyproxy/ratelimit's choices where they differ. A store
//! that fails or is slower than the store timeout never leaves Envoy waiting: each
//! limit follows its failure policy.
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};

use crate::algorithm::{self, Verdict};
use crate::behaviour::Behaviour;
use crate::clock::{Clock, SystemClock};
use crate::counter_key::CounterKeys;
use crate::local_cache::{LocalCache, OverLimit, cached_verdict};
use crate::log_throttle::LogThrottle;
use crate::metrics::Metrics;
use crate::plan::{Plan, drop_replaced, plan};
use crate::report::Report;
use crate::store::{Counting, MemoryStore, Store, admits};
use crate::table::LimitTable;

/// Default bound on one store call.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_millis(20);
/// `Retry-After` when a limit denies because its store failed.
const STORE_FAILURE_RETRY_MS: u64 = 1000;

pub struct Limiter {
    table: Arc<LimitTable>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cache: Option<LocalCache>,
    metrics: Metrics,
    store_timeout: Duration,
    keys: CounterKeys,
    behaviour: Behaviour,
    /// Store failures are logged once a second at most (the metrics count each).
    failure_log: LogThrottle,
}

/// Builds a [`Limiter`]; everything but the table has a default (memory store, wall
/// clock, 20 ms store timeout, local cache on, counter keys hashed with a random key,
/// or the public one for a shared store, Portcullis behaviour, unregistered metrics).
pub struct LimiterBuilder {
    table: Arc<LimitTable>,
    store: Option<Arc<dyn Store>>,
    clock: Arc<dyn Clock>,
    local_cache: Option<usize>,
    metrics: Option<Metrics>,
    store_timeout: Duration,
    keys: Option<CounterKeys>,
    behaviour: Behaviour,
}

impl LimiterBuilder {
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    pub fn local_cache(mut self, on: bool) -> Self {
        self.local_cache = on.then_some(crate::local_cache::DEFAULT_MAX_ENTRIES);
        self
    }
    /// The local over-limit cache holding at most `entries` keys (0: off).
    pub fn local_cache_entries(mut self, entries: usize) -> Self {
        self.local_cache = (entries > 0).then_some(entries);
        self
    }
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }
    pub fn counter_keys(mut self, keys: CounterKeys) -> Self {
        self.keys = Some(keys);
        self
    }
    pub fn behaviour(mut self, behaviour: Behaviour) -> Self {
        self.behaviour = behaviour;
        self
    }
    pub fn build(self) -> Limiter {
        let store = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        // A shared store needs keys every process derives alike (see counter_key).
        let keys = self.keys.unwrap_or_else(|| {
            if store.shared() {
                CounterKeys::public("")
            } else {
                CounterKeys::new(None, "")
            }
        });
        Limiter {
            table: self.table,
            store,
            clock: self.clock,
            cache: self.local_cache.map(LocalCache::with_max_entries),
            metrics: self.metrics.unwrap_or_else(Metrics::unregistered),
            store_timeout: self.store_timeout,
            keys,
            behaviour: self.behaviour,
            failure_log: LogThrottle::new(Duration::from_secs(1)),
        }
    }
}

impl Limiter {
    pub fn builder(table: Arc<LimitTable>) -> LimiterBuilder {
        LimiterBuilder {
            table,
            store: None,
            clock: Arc::new(SystemClock),
            local_cache: Some(crate::local_cache::DEFAULT_MAX_ENTRIES),
            metrics: None,
            store_timeout: DEFAULT_STORE_TIMEOUT,
            keys: None,
            behaviour: Behaviour::default(),
        }
    }

    pub fn table(&self) -> &Arc<LimitTable> {
        &self.table
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub async fn should_rate_limit(&self, req: &RateLimitRequest) -> RateLimitResponse {
        let now = self.clock.now_ms();
        let (generation, limits) = self.table.generation_snapshot();
        let mut hits = limits.resolve(&req.domain, &req.descriptors);
        drop_replaced(&mut hits);
        let mut p = plan(req, hits, &self.keys, self.behaviour.global_quota);
        let mut report = Report::new(req.descriptors.len(), &self.metrics, &self.behaviour);
        let counting = if self.behaviour.global_shadow {
            Counting::All
        } else {
            self.behaviour.counting
        };

        let cached = self.cached(now, generation, &p);
        if cached.iter().any(Option::is_some) {
            if counting == Counting::Admitted {
                return self.answer_from_local_cache(now, &p, &cached, &mut report);
            }
            // Counting everything (envoyproxy): windows remembered over are not sent
            // hits, the others are counted as usual.
            for (c, e) in p.checks.iter_mut().zip(&cached) {
                if e.is_some() {
                    c.hits = 0;
                }
            }
        }
        if p.checks.is_empty() {
            for l in &p.limits {
                report.passive(l);
            }
            return report.finish(false, None);
        }

        let started = Instant::now();
        let result = tokio::time::timeout(
            self.store_timeout,
            self.store.check_and_count(now, &p.checks, counting),
        )
        .await;
        self.metrics
            .store_latency
            .with_label_values(&[self.store.name()])
            .observe(started.elapsed().as_secs_f64());
        let reply = match result {
            Ok(Ok(reply)) if reply.counts.len() == p.checks.len() => reply,
            Ok(Ok(reply)) => {
                let e = format!(
                    "{} counts for {} checks",
                    reply.counts.len(),
                    p.checks.len()
                );
                return self.on_store_failure(&e, "bad_reply", &p, report);
            }
            Ok(Err(e)) => return self.on_store_failure(&e.to_string(), e.kind(), &p, report),
            Err(_) => return self.on_store_failure("timed out", "timeout", &p, report),
        };

        let verdicts: Vec<Verdict> = p
            .checks
            .iter()
            .enumerate()
            .map(|(i, c)| match &cached[i] {
                Some(e) => cached_verdict(e, now),
                None => {
                    algorithm::evaluate(&c.window, reply.counts[i], now, c.hits, reply.counted[i])
                }
            })
            .collect();
        let over: Vec<bool> = verdicts.iter().map(|v| v.over).collect();
        let refused = !admits(&p.checks, &over);
        if refused && self.behaviour.global_shadow {
            self.metrics.global_shadow_mode.inc();
        }
        let refused = refused && !self.behaviour.global_shadow;

        let mut retry: Option<u64> = None;
        for l in &p.limits {
            if l.checks.is_empty() {
                report.passive(l);
                continue;
            }
            for k in l.checks.clone() {
                let (c, v) = (&p.checks[k], &verdicts[k]);
                if !(v.over && c.enforce) {
                    continue;
                }
                if refused {
                    retry = Some(retry.unwrap_or(0).max(v.retry_after_ms));
                }
                // Only windows that refuse on their own are remembered (a quota window
                // refuses only with the others), and only while a single hit would not
                // fit: a request refused for its large `hits_addend` says nothing
                // about the next one.
                if let (Some(cache), 0, false, None) = (
                    &self.cache,
                    c.quota_group,
                    self.behaviour.global_shadow,
                    &cached[k],
                ) {
                    let mut after = reply.counts[k];
                    if reply.counted[k] {
                        after.curr += u64::from(c.hits);
                    }
                    let one = algorithm::evaluate(&c.window, after, now, 1, false);
                    if one.over {
                        cache.insert(
                            &c.key,
                            c.window,
                            now + one.retry_after_ms,
                            now + one.reset_ms,
                            now,
                            generation,
                        );
                    }
                }
            }
            report.decided(l, &p.checks, &verdicts, &reply.counts, now);
        }
        report.finish(refused, retry)
    }

    /// Per check, the local cache's entry when the window is remembered over and
    /// refuses on its own (quota windows refuse only together with the others).
    fn cached(&self, now: u64, generation: u64, p: &Plan) -> Vec<Option<OverLimit>> {
        let cache = match &self.cache {
            Some(c) if !self.behaviour.global_shadow => c,
            _ => return vec![None; p.checks.len()],
        };
        p.checks
            .iter()
            .map(|c| {
                (c.enforce && c.quota_group == 0)
                    .then(|| cache.get(&c.key, now, generation))
                    .flatten()
            })
            .collect()
    }

    /// OVER_LIMIT without a store call.
    fn answer_from_local_cache(
        &self,
        now: u64,
        p: &Plan,
        cached: &[Option<OverLimit>],
        report: &mut Report<'_>,
    ) -> RateLimitResponse {
        let mut retry = 0;
        for l in &p.limits {
            let mine: Vec<OverLimit> = l.checks.clone().filter_map(|k| cached[k]).collect();
            if mine.is_empty() {
                continue;
            }
            for e in &mine {
                retry = retry.max(e.until_ms - now);
            }
            self.metrics
                .local_cache_hits
                .with_label_values(&[self.metrics.limit_label(l.hit.metric_name())])
                .inc();
            report.answered_locally(l, &mine, now);
        }
        report.finish(true, Some(retry))
    }

    fn on_store_failure(
        &self,
        error: &str,
        kind: &str,
        p: &Plan,
        mut report: Report<'_>,
    ) -> RateLimitResponse {
        self.metrics.store_errors.with_label_values(&[kind]).inc();
        if let Some(skipped) = self.failure_log.admit() {
            tracing::warn!(
                store = self.store.name(),
                error,
                skipped,
                "rate-limit store failed; applying failure policies (logged once a second at most: `skipped` failures since the last line; portcullis_ratelimit_store_errors_total counts each)"
            );
        }
        let mut deny = false;
        for l in &p.limits {
            if l.checks.is_empty() {
                report.passive(l);
            } else {
                deny |= report.store_failed(l);
            }
        }
        let deny = deny && !self.behaviour.global_shadow;
        let mut resp = report.finish(deny, deny.then_some(STORE_FAILURE_RETRY_MS));
        if !deny {
            resp.overall_code = Code::Ok as i32;
        }
        resp
    }
}

#[cfg(test)]
#[path = "limiter_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "limiter_compat_tests.rs"]
mod compat_tests;
