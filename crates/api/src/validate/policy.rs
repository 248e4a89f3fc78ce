//! Rules for the traffic-policy fields. Dangerous values are refused with the reason:
//! these are the knobs that turn a slow upstream into an outage.
use super::Report;
use crate::{
    Duration, Route, Service,
    policy::{LbPolicy, RETRY_ON},
};

const SEC: Duration = Duration::from_secs(1);

/// A count that must not be 0 (absent means the default); `why` says what 0 would do.
fn nonzero(report: &mut Report, field: &str, v: Option<u32>, why: &str) {
    if v == Some(0) {
        report.error(
            field,
            format!("0 {why}; use at least 1 or leave it out for the default"),
        );
    }
}

fn at_least_one(report: &mut Report, field: &str, v: Option<u32>) {
    nonzero(report, field, v, "would refuse every request");
}

fn positive_count(report: &mut Report, field: &str, v: Option<u32>) {
    nonzero(report, field, v, "is not a count");
}

pub(super) fn check_service(svc: &Service, report: &mut Report) {
    let spec = &svc.spec;
    let primaries = spec
        .destinations
        .iter()
        .filter(|d| !d.failover.unwrap_or(false) && d.weight() > 0)
        .count();
    if !spec.destinations.is_empty() && primaries == 0 {
        report.error(
            "spec.destinations[].failover",
            "every destination is a failover; mark at least one as primary (remove failover: true) so traffic has somewhere to go first".into(),
        );
    }
    if let Some(lb) = &spec.load_balancer {
        let hashing = matches!(lb.policy, LbPolicy::RingHash | LbPolicy::Maglev);
        match (&lb.hash_on, hashing) {
            (None, true) => report.error(
                "spec.loadBalancer.hashOn",
                "ringHash and maglev need a key; set hashOn to {header: <name>}, {cookie: <name>} or {sourceIP: true}".into(),
            ),
            (Some(_), false) => report.error(
                "spec.loadBalancer.hashOn",
                "only ringHash and maglev hash; set policy: ringHash or remove hashOn".into(),
            ),
            (Some(h), true) => {
                let set = [h.header.is_some(), h.cookie.is_some(), h.source_ip == Some(true)];
                if set.iter().filter(|b| **b).count() != 1 {
                    report.error("spec.loadBalancer.hashOn", "set exactly one of header, cookie and sourceIP: true".into());
                }
            }
            (None, false) => {}
        }
    }
    if let Some(pool) = &spec.connection_pool {
        let f = "spec.connectionPool";
        at_least_one(report, &format!("{f}.maxConnections"), pool.max_connections);
        at_least_one(
            report,
            &format!("{f}.maxPendingRequests"),
            pool.max_pending_requests,
        );
        at_least_one(report, &format!("{f}.maxRequests"), pool.max_requests);
        at_least_one(
            report,
            &format!("{f}.maxRequestsPerConnection"),
            pool.max_requests_per_connection,
        );
        if let Some(t) = pool.idle_timeout
            && t < SEC
        {
            report.error(
                &format!("{f}.idleTimeout"),
                format!("{t} closes idle connections so fast that bursty traffic reopens them constantly, filling the host with TIME_WAIT sockets and exhausting ephemeral ports; use 60s or more (default 300s)"),
            );
        }
        if let Some(t) = pool.max_connection_duration
            && t < SEC
        {
            report.error(
                &format!("{f}.maxConnectionDuration"),
                format!("{t} recycles connections constantly; use 1m or more"),
            );
        }
        if let Some(k) = &pool.tcp_keepalive {
            positive_count(report, &format!("{f}.tcpKeepalive.probes"), k.probes);
            for (name, v) in [("time", k.time), ("interval", k.interval)] {
                if v.is_some_and(|t| t < SEC) {
                    report.error(
                        &format!("{f}.tcpKeepalive.{name}"),
                        "keepalive works in whole seconds; use 1s or more".into(),
                    );
                }
            }
        }
    }
    if let Some(b) = &spec.retry_budget
        && let Some(p) = b.percent
        && !(p > 0.0 && p <= 100.0)
    {
        report.error(
            "spec.retryBudget.percent",
            format!("{p} is not a percentage; use a value above 0 and at most 100 (default 20)"),
        );
    }
    if let Some(hc) = &spec.health_check {
        let f = "spec.healthCheck";
        if let Err(e) = super::names::check_path(&hc.path) {
            report.error(&format!("{f}.path"), e);
        }
        let interval = hc.interval.unwrap_or(Duration::from_secs(5));
        if interval < Duration::from_millis(500) {
            report.error(&format!("{f}.interval"), format!("{interval} would flood every destination with checks from every Envoy; use 500ms or more"));
        }
        if hc.timeout.unwrap_or(Duration::from_secs(2)) >= interval {
            report.error(
                &format!("{f}.timeout"),
                format!("must be shorter than the interval ({interval}) so checks do not overlap"),
            );
        }
        if hc.jitter.is_some_and(|j| j >= interval) {
            report.error(
                &format!("{f}.jitter"),
                format!("must be shorter than the interval ({interval})"),
            );
        }
        for (name, v) in [
            ("unhealthyThreshold", hc.unhealthy_threshold),
            ("healthyThreshold", hc.healthy_threshold),
        ] {
            if let Some(v) = v
                && !(1..=10).contains(&v)
            {
                report.error(
                    &format!("{f}.{name}"),
                    format!("{v} is out of range; use 1 to 10"),
                );
            }
        }
    }
    if let Some(od) = &spec.outlier_detection {
        let f = "spec.outlierDetection";
        at_least_one(report, &format!("{f}.consecutive5xx"), od.consecutive_5xx);
        at_least_one(
            report,
            &format!("{f}.consecutiveGatewayFailures"),
            od.consecutive_gateway_failures,
        );
        if let Some(p) = od.max_ejection_percent
            && !(1..=100).contains(&p)
        {
            report.error(
                &format!("{f}.maxEjectionPercent"),
                format!(
                    "{p} is out of range; use 1 to 100 (set enabled: false to turn ejection off)"
                ),
            );
        }
        if od.interval.is_some_and(|t| t < Duration::from_millis(100)) {
            report.error(&format!("{f}.interval"), "use 100ms or more".into());
        }
        if od
            .base_ejection_time
            .is_some_and(|t| t < Duration::from_millis(100))
        {
            report.error(&format!("{f}.baseEjectionTime"), "use 100ms or more".into());
        }
        if let Some(sr) = &od.success_rate
            && sr.stdev_factor.is_some_and(|s| s <= 0.0)
        {
            report.error(
                &format!("{f}.successRate.stdevFactor"),
                "must be above 0 (default 1.9)".into(),
            );
        }
    }
}

pub(super) fn check_route(route: &Route, report: &mut Report) {
    check_auth_and_limits(route, report);
    check_tracing(route, report);
    let spec = &route.spec;
    if let Some(t) = spec.idle_timeout
        && t < SEC
    {
        report.error(
            "spec.idleTimeout",
            format!("{t} resets requests that pause briefly; use 1s or more (default 300s)"),
        );
    }
    let retry = spec.retry.as_ref();
    if let Some(r) = retry {
        let f = "spec.retry";
        if let Some(a) = r.attempts
            && a > 5
        {
            report.error(
                &format!("{f}.attempts"),
                format!(
                    "{a} retries multiply load {}× during an incident; use at most 5",
                    u64::from(a) + 1
                ),
            );
        }
        if let Some(t) = r.per_try_timeout {
            if t.0.is_zero() {
                report.error(
                    &format!("{f}.perTryTimeout"),
                    "0s is not a timeout; remove it or set e.g. 300ms".into(),
                );
            } else if let Some(total) = spec.timeout
                && t >= total
            {
                report.error(
                    &format!("{f}.perTryTimeout"),
                    format!("{t} is not below spec.timeout ({total}), so no retry could ever start; lower it"),
                );
            }
        }
        for (i, on) in r.on.iter().enumerate() {
            if !RETRY_ON.contains(&on.as_str()) {
                report.error(
                    &format!("{f}.on[{i}]"),
                    format!(
                        "unknown condition {on:?}; use one of {}",
                        RETRY_ON.join(", ")
                    ),
                );
            }
        }
        for (i, code) in r.status_codes.iter().enumerate() {
            if !(100..=599).contains(code) {
                report.error(
                    &format!("{f}.statusCodes[{i}]"),
                    format!("{code} is not an HTTP status code"),
                );
            }
        }
        if let Some(b) = &r.backoff {
            if b.base.is_some_and(|t| t.0.is_zero()) {
                report.error(
                    &format!("{f}.backoff.base"),
                    "0s retries in a tight loop; use e.g. 25ms".into(),
                );
            }
            for (name, v) in [("base", b.base), ("max", b.max)] {
                if let Some(t) = v
                    && t > crate::service::MAX_TIMEOUT
                {
                    report.error(
                        &format!("{f}.backoff.{name}"),
                        format!("{t} is over {}, the longest request timeout, so no retry would ever start; use e.g. 25ms to 1s", crate::service::MAX_TIMEOUT),
                    );
                }
            }
            if let (Some(base), Some(max)) = (b.base, b.max)
                && max < base
            {
                report.error(
                    &format!("{f}.backoff.max"),
                    format!("{max} is below base ({base}); raise it"),
                );
            }
        }
    }
    if let Some(h) = &spec.hedge
        && h.on_per_try_timeout
    {
        let per_try = retry.and_then(|r| r.per_try_timeout).is_some();
        let attempts = retry.and_then(|r| r.attempts).unwrap_or(1) >= 1;
        if !per_try || !attempts {
            report.error(
                "spec.hedge.onPerTryTimeout",
                "hedging fires a parallel try when a try exceeds its per-try timeout; set retry.perTryTimeout and retry.attempts ≥ 1".into(),
            );
        }
    }
}

pub(super) fn check_tracing(route: &Route, report: &mut Report) {
    if let Some(t) = &route.spec.tracing {
        let p = t.sampling_percent;
        if !(0.0..=100.0).contains(&p) {
            report.error(
                "spec.tracing.samplingPercent",
                format!("{p} is not a percentage; use 0 to 100, e.g. 100 to trace every request"),
            );
        }
    }
}

pub(super) fn check_auth_and_limits(route: &Route, report: &mut Report) {
    let spec = &route.spec;
    if let Some(auth) = &spec.auth {
        for (i, scope) in auth.scopes.iter().enumerate() {
            if scope.is_empty() || scope.contains([',', ' ']) {
                report.error(
                    &format!("spec.auth.scopes[{i}]"),
                    format!(
                        "{scope:?} is not a scope; scopes are single words such as droplet:write"
                    ),
                );
            }
        }
    }
    let authenticated = spec.auth.as_ref().is_some_and(|a| a.required());
    let mut names = std::collections::BTreeSet::new();
    for (i, limit) in spec.rate_limits.iter().enumerate() {
        let f = format!("spec.rateLimits[{i}]");
        if let Err(e) = super::names::check_name(&limit.name) {
            report.error(&format!("{f}.name"), e);
        } else if !names.insert(limit.name.as_str()) {
            report.error(
                &format!("{f}.name"),
                format!(
                    "{:?} is used twice; give each limit its own name",
                    limit.name
                ),
            );
        }
        if limit.by.is_empty() {
            report.error(
                &format!("{f}.by"),
                "no dimensions; add what requests are counted by, e.g. [clientIP] or [apiKey]"
                    .into(),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for (j, dim) in limit.by.iter().enumerate() {
            let field = format!("{f}.by[{j}]");
            let known = portcullis_contract::ratelimit::is_dimension(dim);
            if !known {
                report.error(&field, format!("unknown dimension {dim:?}; use apiKey, user, clientIP, route, method or header:<name>"));
            } else if !seen.insert(dim.as_str()) {
                report.error(&field, format!("{dim:?} is listed twice"));
            } else if portcullis_contract::ratelimit::IDENTITY_DIMENSIONS.contains(&dim.as_str())
                && !authenticated
            {
                report.error(
                    &field,
                    format!("{dim} comes from authentication, but this Route does not require it; add auth: {{required: true}} or limit by clientIP"),
                );
            }
        }
        if limit.limits.is_empty() {
            report.error(
                &format!("{f}.limits"),
                "no windows; add e.g. {requests: 100, per: 1m}".into(),
            );
        }
        let mut pers = std::collections::BTreeSet::new();
        for (j, w) in limit.limits.iter().enumerate() {
            let field = format!("{f}.limits[{j}]");
            if w.requests == 0 {
                report.error(
                    &format!("{field}.requests"),
                    "0 refuses every request; to block a path, remove its Route".into(),
                );
            }
            if w.per < SEC || w.per > Duration::from_secs(86_400) {
                report.error(
                    &format!("{field}.per"),
                    format!("{} is out of range; use 1s to 24h", w.per),
                );
            } else if !pers.insert(w.per) {
                report.error(
                    &format!("{field}.per"),
                    format!("two windows of {}; keep the stricter one", w.per),
                );
            }
        }
    }
}
