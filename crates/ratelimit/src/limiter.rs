//! The decision: request descriptors → matched limits → (local over-limit cache |
//! one store call, bounded by the store timeout) → statuses, headers, metrics.
//!
//! A request is admitted only if every enforcing window of every matched limit has
//! room; it is then counted in all of them (shadow limits included), else in none.
//! A store that fails or is slower than the store timeout never leaves Envoy waiting:
//! each matched limit follows its failure policy.
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};

use crate::algorithm::{self, Verdict};
use crate::clock::{Clock, SystemClock};
use crate::limit::FailurePolicy;
use crate::local_cache::LocalCache;
use crate::metrics::{Metrics, outcome};
use crate::response::{self, Reported, keep_tightest};
use crate::store::{Check, MemoryStore, Store};
use crate::table::{self, LimitTable, Matched};

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
}

/// Builds a [`Limiter`]; everything but the table has a default (memory store, wall
/// clock, 20 ms store timeout, local cache on, unregistered metrics).
pub struct LimiterBuilder {
    table: Arc<LimitTable>,
    store: Option<Arc<dyn Store>>,
    clock: Arc<dyn Clock>,
    local_cache: bool,
    metrics: Option<Metrics>,
    store_timeout: Duration,
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
        self.local_cache = on;
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
    pub fn build(self) -> Limiter {
        Limiter {
            table: self.table,
            store: self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
            clock: self.clock,
            cache: self.local_cache.then(LocalCache::default),
            metrics: self.metrics.unwrap_or_else(Metrics::unregistered),
            store_timeout: self.store_timeout,
        }
    }
}

/// One matched, counted descriptor of the request being decided. Borrows the match so
/// deciding a request does not copy limit definitions.
struct Counted<'m> {
    matched: &'m Matched,
    /// Indices into the request's checks.
    checks: std::ops::Range<usize>,
}

impl Limiter {
    pub fn builder(table: Arc<LimitTable>) -> LimiterBuilder {
        LimiterBuilder {
            table,
            store: None,
            clock: Arc::new(SystemClock),
            local_cache: true,
            metrics: None,
            store_timeout: DEFAULT_STORE_TIMEOUT,
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
        let hits = req.hits_addend.max(1);
        let (generation, limits) = self.table.generation_snapshot();

        // Match every descriptor, then drop the ones another match replaces.
        let entries: Vec<Vec<table::Entry<'_>>> = req
            .descriptors
            .iter()
            .map(|d| {
                d.entries
                    .iter()
                    .map(|e| (e.key.as_str(), e.value.as_str()))
                    .collect()
            })
            .collect();
        let mut matched: Vec<Option<Matched>> = entries
            .iter()
            .map(|e| limits.resolve(&req.domain, e))
            .collect();
        let replaced: HashSet<String> = matched
            .iter()
            .flatten()
            .flat_map(|m| m.replaces.iter().cloned())
            .collect();
        if !replaced.is_empty() {
            for m in matched.iter_mut() {
                if m.as_ref()
                    .and_then(|m| m.replaceable_as.as_ref())
                    .is_some_and(|n| replaced.contains(n))
                {
                    *m = None;
                }
            }
        }

        let mut checks = Vec::new();
        let mut counted: Vec<Option<Counted<'_>>> = Vec::with_capacity(matched.len());
        for (m, e) in matched.iter().zip(&entries) {
            match m {
                Some(m) if !m.limit.unlimited => {
                    let base = table::counter_base(&req.domain, e);
                    let start = checks.len();
                    for w in &m.limit.windows {
                        checks.push(Check {
                            key: format!("{base}:{}", w.per_ms),
                            window: *w,
                            enforce: !m.limit.shadow,
                        });
                    }
                    counted.push(Some(Counted {
                        matched: m,
                        checks: start..checks.len(),
                    }));
                }
                _ => counted.push(None),
            }
        }

        if let Some(resp) =
            self.answer_from_local_cache(now, generation, &checks, &counted, &matched)
        {
            return resp;
        }
        if checks.is_empty() {
            return self.respond_unlimited_or_unmatched(&matched);
        }

        let started = Instant::now();
        let result = tokio::time::timeout(
            self.store_timeout,
            self.store.check_and_count(now, hits, &checks),
        )
        .await;
        self.metrics
            .store_latency
            .with_label_values(&[self.store.name()])
            .observe(started.elapsed().as_secs_f64());
        let reply = match result {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                return self.on_store_failure(&e.to_string(), e.kind(), &matched, &counted);
            }
            Err(_) => return self.on_store_failure("timed out", "timeout", &matched, &counted),
        };

        let verdicts: Vec<Verdict> = checks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                algorithm::evaluate(&c.window, reply.counts[i], now, hits, reply.counted[i])
            })
            .collect();

        let mut resp = RateLimitResponse::default();
        let mut tightest: Option<Reported> = None;
        let mut refused_retry: Option<u64> = None;
        for (i, c) in counted.iter().enumerate() {
            let Some(c) = c else {
                resp.statuses.push(self.passive_status(matched[i].as_ref()));
                continue;
            };
            let limit = &c.matched.limit;
            let mut mine: Option<Reported> = None;
            let mut over = false;
            for k in c.checks.clone() {
                let r = Reported {
                    window: checks[k].window,
                    verdict: verdicts[k],
                };
                over |= r.verdict.over;
                keep_tightest(&mut mine, r);
                if r.verdict.over && !limit.shadow {
                    refused_retry = Some(refused_retry.unwrap_or(0).max(r.verdict.retry_after_ms));
                    if let Some(cache) = &self.cache {
                        cache.insert(
                            &checks[k].key,
                            r.window,
                            now + r.verdict.retry_after_ms,
                            now + r.verdict.reset_ms,
                            now,
                            generation,
                        );
                    }
                }
            }
            let label = match (over, limit.shadow) {
                (false, _) => outcome::OK,
                (true, false) => outcome::OVER_LIMIT,
                (true, true) => outcome::SHADOW_OVER_LIMIT,
            };
            self.metrics.decision(&c.matched.metric_name, label);
            if let (false, Some(r)) = (limit.shadow, mine) {
                keep_tightest(&mut tightest, r);
            }
            resp.statuses.push(response::descriptor_status(
                &limit.name,
                mine.as_ref(),
                over && !limit.shadow,
            ));
        }
        resp.overall_code = if refused_retry.is_some() {
            Code::OverLimit
        } else {
            Code::Ok
        } as i32;
        resp.response_headers_to_add = response::headers(tightest.as_ref(), refused_retry);
        resp
    }

    /// Status for a descriptor that is not counted: unmatched, replaced or unlimited.
    fn passive_status(
        &self,
        m: Option<&Matched>,
    ) -> envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::DescriptorStatus {
        match m {
            Some(m) => {
                self.metrics.decision(&m.metric_name, outcome::OK);
                response::unlimited_status()
            }
            None => response::descriptor_status("", None, false),
        }
    }

    fn respond_unlimited_or_unmatched(&self, matched: &[Option<Matched>]) -> RateLimitResponse {
        RateLimitResponse {
            overall_code: Code::Ok as i32,
            statuses: matched
                .iter()
                .map(|m| self.passive_status(m.as_ref()))
                .collect(),
            ..Default::default()
        }
    }

    /// OVER_LIMIT without a store call when an enforcing window is remembered over.
    fn answer_from_local_cache(
        &self,
        now: u64,
        generation: u64,
        checks: &[Check],
        counted: &[Option<Counted<'_>>],
        matched: &[Option<Matched>],
    ) -> Option<RateLimitResponse> {
        let cache = self.cache.as_ref()?;
        let mut hit = false;
        let mut resp = RateLimitResponse::default();
        let mut tightest: Option<Reported> = None;
        let mut retry = 0;
        for (i, c) in counted.iter().enumerate() {
            let Some(c) = c else {
                resp.statuses
                    .push(response::descriptor_status("", None, false));
                continue;
            };
            let mut mine: Option<Reported> = None;
            for k in c.checks.clone() {
                if !checks[k].enforce {
                    continue;
                }
                if let Some(e) = cache.get(&checks[k].key, now, generation) {
                    let retry_after_ms = e.until_ms - now;
                    let verdict = Verdict {
                        over: true,
                        remaining: 0,
                        reset_ms: e.reset_at_ms.saturating_sub(now).max(retry_after_ms),
                        retry_after_ms,
                    };
                    retry = retry.max(retry_after_ms);
                    keep_tightest(
                        &mut mine,
                        Reported {
                            window: e.window,
                            verdict,
                        },
                    );
                }
            }
            let over = mine.is_some();
            if over {
                hit = true;
                self.metrics
                    .local_cache_hits
                    .with_label_values(&[&c.matched.metric_name])
                    .inc();
                self.metrics
                    .decision(&c.matched.metric_name, outcome::OVER_LIMIT);
                keep_tightest(&mut tightest, mine.unwrap_or_else(|| unreachable!()));
            }
            let name = matched[i].as_ref().map_or("", |m| m.limit.name.as_str());
            resp.statuses
                .push(response::descriptor_status(name, mine.as_ref(), over));
        }
        if !hit {
            return None;
        }
        resp.overall_code = Code::OverLimit as i32;
        resp.response_headers_to_add = response::headers(tightest.as_ref(), Some(retry));
        Some(resp)
    }

    fn on_store_failure(
        &self,
        error: &str,
        kind: &str,
        matched: &[Option<Matched>],
        counted: &[Option<Counted<'_>>],
    ) -> RateLimitResponse {
        self.metrics.store_errors.with_label_values(&[kind]).inc();
        tracing::warn!(
            store = self.store.name(),
            error,
            "rate-limit store failed; applying failure policies"
        );
        let mut resp = RateLimitResponse::default();
        let mut deny = false;
        for (i, c) in counted.iter().enumerate() {
            let Some(c) = c else {
                resp.statuses.push(self.passive_status(matched[i].as_ref()));
                continue;
            };
            let limit = &c.matched.limit;
            let denies = limit.on_store_failure == FailurePolicy::Deny && !limit.shadow;
            deny |= denies;
            let label = if denies {
                outcome::STORE_FAILURE_DENIED
            } else {
                outcome::STORE_FAILURE_ALLOWED
            };
            self.metrics.decision(&c.matched.metric_name, label);
            resp.statuses
                .push(response::descriptor_status(&limit.name, None, denies));
        }
        resp.overall_code = if deny { Code::OverLimit } else { Code::Ok } as i32;
        if deny {
            resp.response_headers_to_add = response::headers(None, Some(STORE_FAILURE_RETRY_MS));
        }
        resp
    }
}

#[cfg(test)]
#[path = "limiter_tests.rs"]
mod tests;
