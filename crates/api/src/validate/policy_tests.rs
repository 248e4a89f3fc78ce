//! One test per refused traffic-policy value, asserting the message (field + fix).
use super::validate;

/// Validates a Service spec and a Route spec (flow YAML); returns every message.
fn messages(service_spec: &str, route_spec: &str) -> Vec<String> {
    let yaml = format!(
        "apiVersion: portcullis.dev/v1alpha1\nkind: Service\nmetadata: {{name: s}}\nspec: {service_spec}\n---\napiVersion: portcullis.dev/v1alpha1\nkind: Route\nmetadata: {{name: r}}\nspec: {route_spec}\n"
    );
    let objects = crate::Objects::parse(&yaml).expect("parses");
    validate(&objects.routes, &objects.services)
        .problems()
        .map(ToString::to_string)
        .collect()
}

const DEST: &str = "destinations: [{name: a, address: '10.0.0.1:80'}]";
const ROUTE: &str = "match: {paths: [{prefix: /}]}, backends: [{service: s}]";

fn service_refused(extra: &str, expected: &str) {
    let m = messages(&format!("{{{DEST}, {extra}}}"), &format!("{{{ROUTE}}}"));
    assert!(
        m.iter()
            .any(|m| m.starts_with("Service default/s: ") && m.contains(expected)),
        "{expected:?} not in {m:#?}"
    );
}

fn route_refused(extra: &str, expected: &str) {
    let m = messages(&format!("{{{DEST}}}"), &format!("{{{ROUTE}, {extra}}}"));
    assert!(
        m.iter()
            .any(|m| m.starts_with("Route default/r: ") && m.contains(expected)),
        "{expected:?} not in {m:#?}"
    );
}

#[test]
fn defaults_and_a_full_policy_are_accepted() {
    assert!(messages(&format!("{{{DEST}}}"), &format!("{{{ROUTE}}}")).is_empty());
    let full_service = format!(
        "{{{DEST}, loadBalancer: {{policy: ringHash, hashOn: {{header: x-user}}}}, connectionPool: {{maxConnections: 10, maxPendingRequests: 5, maxRequests: 10, maxRetries: 2, maxRequestsPerConnection: 100, idleTimeout: 60s, maxConnectionDuration: 10m, tcpKeepalive: {{time: 30s, interval: 5s, probes: 3}}}}, retryBudget: {{percent: 25, minConcurrency: 5}}, healthCheck: {{path: /health, interval: 5s, timeout: 1s, unhealthyThreshold: 3, healthyThreshold: 2, jitter: 500ms}}, outlierDetection: {{consecutive5xx: 5, consecutiveGatewayFailures: 3, successRate: {{minimumHosts: 3, requestVolume: 50, stdevFactor: 1.9}}, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50}}}}"
    );
    let full_route = format!(
        "{{{ROUTE}, timeout: 5s, idleTimeout: 30s, retry: {{attempts: 2, perTryTimeout: 300ms, on: [5xx, reset], statusCodes: [503], backoff: {{base: 25ms, max: 250ms}}}}, hedge: {{onPerTryTimeout: true}}}}"
    );
    assert_eq!(messages(&full_service, &full_route), Vec::<String>::new());
}

#[test]
fn idle_timeout_that_churns_connections() {
    service_refused(
        "connectionPool: {idleTimeout: 200ms}",
        "spec.connectionPool.idleTimeout: 200ms closes idle connections so fast",
    );
    service_refused("connectionPool: {idleTimeout: 200ms}", "TIME_WAIT");
}

#[test]
fn zero_pool_limits() {
    for field in [
        "maxConnections",
        "maxPendingRequests",
        "maxRequests",
        "maxRequestsPerConnection",
    ] {
        service_refused(
            &format!("connectionPool: {{{field}: 0}}"),
            &format!("spec.connectionPool.{field}: 0 would refuse every request"),
        );
    }
}

#[test]
fn short_connection_lifetimes_and_keepalives() {
    service_refused(
        "connectionPool: {maxConnectionDuration: 500ms}",
        "spec.connectionPool.maxConnectionDuration: 500ms recycles",
    );
    service_refused(
        "connectionPool: {tcpKeepalive: {time: 100ms}}",
        "spec.connectionPool.tcpKeepalive.time: keepalive works in whole seconds",
    );
    service_refused(
        "connectionPool: {tcpKeepalive: {probes: 0}}",
        "spec.connectionPool.tcpKeepalive.probes: 0",
    );
}

#[test]
fn hashing_needs_a_key_and_only_hashing_policies_take_one() {
    service_refused(
        "loadBalancer: {policy: ringHash}",
        "spec.loadBalancer.hashOn: ringHash and maglev need a key",
    );
    service_refused(
        "loadBalancer: {policy: roundRobin, hashOn: {header: x}}",
        "spec.loadBalancer.hashOn: only ringHash and maglev hash",
    );
    service_refused(
        "loadBalancer: {policy: maglev, hashOn: {header: x, cookie: c}}",
        "set exactly one of header, cookie and sourceIP",
    );
}

#[test]
fn retry_budget_percentage() {
    service_refused(
        "retryBudget: {percent: 150}",
        "spec.retryBudget.percent: 150 is not a percentage",
    );
}

#[test]
fn health_check_values() {
    service_refused(
        "healthCheck: {path: /h, interval: 100ms}",
        "spec.healthCheck.interval: 100ms would flood",
    );
    service_refused(
        "healthCheck: {path: /h, interval: 2s, timeout: 2s}",
        "spec.healthCheck.timeout: must be shorter than the interval",
    );
    service_refused(
        "healthCheck: {path: /h, interval: 2s, jitter: 3s}",
        "spec.healthCheck.jitter: must be shorter than the interval",
    );
    service_refused(
        "healthCheck: {path: /h, unhealthyThreshold: 0}",
        "spec.healthCheck.unhealthyThreshold: 0 is out of range; use 1 to 10",
    );
    service_refused(
        "healthCheck: {path: h}",
        "spec.healthCheck.path: \"h\" does not start with /",
    );
}

#[test]
fn outlier_detection_values() {
    service_refused(
        "outlierDetection: {maxEjectionPercent: 0}",
        "spec.outlierDetection.maxEjectionPercent: 0 is out of range",
    );
    service_refused(
        "outlierDetection: {consecutive5xx: 0}",
        "spec.outlierDetection.consecutive5xx: 0",
    );
    service_refused(
        "outlierDetection: {interval: 10ms}",
        "spec.outlierDetection.interval: use 100ms or more",
    );
    service_refused(
        "outlierDetection: {successRate: {stdevFactor: 0}}",
        "spec.outlierDetection.successRate.stdevFactor: must be above 0",
    );
}

#[test]
fn every_destination_failover() {
    let m = messages(
        "{destinations: [{name: a, address: '10.0.0.1:80', failover: true}]}",
        &format!("{{{ROUTE}}}"),
    );
    assert!(
        m.iter()
            .any(|m| m.contains("spec.destinations[].failover: every destination is a failover")),
        "{m:#?}"
    );
}

#[test]
fn retry_values() {
    route_refused(
        "retry: {attempts: 9}",
        "spec.retry.attempts: 9 retries multiply load",
    );
    route_refused(
        "retry: {on: [sometimes]}",
        "spec.retry.on[0]: unknown condition \"sometimes\"; use one of connect-failure",
    );
    route_refused(
        "retry: {statusCodes: [999]}",
        "spec.retry.statusCodes[0]: 999 is not an HTTP status code",
    );
    route_refused(
        "retry: {backoff: {base: 0s}}",
        "spec.retry.backoff.base: 0s retries in a tight loop",
    );
    route_refused(
        "retry: {backoff: {base: 100ms, max: 10ms}}",
        "spec.retry.backoff.max: 10ms is below base (100ms)",
    );
    route_refused(
        "timeout: 1s, retry: {perTryTimeout: 2s}",
        "spec.retry.perTryTimeout: 2s is not below spec.timeout (1s)",
    );
    route_refused(
        "retry: {perTryTimeout: 0s}",
        "spec.retry.perTryTimeout: 0s is not a timeout",
    );
}

#[test]
fn hedging_needs_per_try_timeout_and_a_retry() {
    route_refused(
        "hedge: {onPerTryTimeout: true}",
        "spec.hedge.onPerTryTimeout: hedging fires a parallel try",
    );
    route_refused(
        "hedge: {onPerTryTimeout: true}, retry: {attempts: 0, perTryTimeout: 100ms}",
        "set retry.perTryTimeout and retry.attempts",
    );
}

#[test]
fn route_idle_timeout() {
    route_refused(
        "idleTimeout: 10ms",
        "spec.idleTimeout: 10ms resets requests that pause briefly",
    );
}

#[test]
fn identity_dimensions_need_authentication() {
    route_refused(
        "rateLimits: [{name: per-user, by: [user], limits: [{requests: 10, per: 1s}]}]",
        "spec.rateLimits[0].by[0]: user comes from authentication, but this Route does not require it; add auth: {required: true}",
    );
    let m = messages(
        &format!("{{{DEST}}}"),
        &format!(
            "{{{ROUTE}, auth: {{scopes: [read]}}, rateLimits: [{{name: k, by: [apiKey, route], limits: [{{requests: 5, per: 1s}}, {{requests: 20, per: 1m}}]}}]}}"
        ),
    );
    assert!(m.is_empty(), "{m:#?}");
}

#[test]
fn rate_limit_values() {
    route_refused(
        "rateLimits: [{name: x, by: [planet], limits: [{requests: 1, per: 1s}]}]",
        "spec.rateLimits[0].by[0]: unknown dimension \"planet\"",
    );
    route_refused(
        "rateLimits: [{name: x, by: [], limits: [{requests: 1, per: 1s}]}]",
        "spec.rateLimits[0].by: no dimensions",
    );
    route_refused(
        "rateLimits: [{name: x, by: [clientIP], limits: []}]",
        "spec.rateLimits[0].limits: no windows",
    );
    route_refused(
        "rateLimits: [{name: x, by: [clientIP], limits: [{requests: 0, per: 1s}]}]",
        "spec.rateLimits[0].limits[0].requests: 0 refuses every request",
    );
    route_refused(
        "rateLimits: [{name: x, by: [clientIP], limits: [{requests: 1, per: 100ms}]}]",
        "spec.rateLimits[0].limits[0].per: 100ms is out of range; use 1s to 24h",
    );
    route_refused(
        "rateLimits: [{name: x, by: [clientIP], limits: [{requests: 1, per: 1s}]}, {name: x, by: [route], limits: [{requests: 1, per: 1s}]}]",
        "spec.rateLimits[1].name: \"x\" is used twice",
    );
    route_refused(
        "auth: {scopes: ['a b']}",
        "spec.auth.scopes[0]: \"a b\" is not a scope",
    );
}

#[test]
fn tracing_sampling_is_a_percentage() {
    route_refused(
        "tracing: {samplingPercent: 150}",
        "spec.tracing.samplingPercent: 150 is not a percentage; use 0 to 100",
    );
    route_refused(
        "tracing: {samplingPercent: -1}",
        "spec.tracing.samplingPercent: -1 is not a percentage",
    );
    let m = messages(
        &format!("{{{DEST}}}"),
        &format!("{{{ROUTE}, tracing: {{samplingPercent: 0.5}}}}"),
    );
    assert!(m.is_empty(), "{m:#?}");
}

/// Found by the "validated ⇒ served" property test: the message computed `attempts + 1`
/// in u32 and overflowed (the object was refused as InternalError instead).
#[test]
fn the_largest_attempts_value_is_refused_with_a_message() {
    route_refused(
        "retry: {attempts: 4294967295}",
        "spec.retry.attempts: 4294967295 retries multiply load 4294967296×",
    );
}

/// Found by the property test: Envoy NACKs an empty header prefix or regex
/// (StringMatcher min length 1), which validation accepted.
#[test]
fn empty_header_prefix_and_regex_are_refused() {
    let m = messages(
        &format!("{{{DEST}}}"),
        "{match: {paths: [{prefix: /}], headers: [{name: x-a, prefix: ''}, {name: x-b, regex: ''}]}, backends: [{service: s}]}",
    );
    for want in [
        "spec.match.headers[0].prefix: empty prefix matches every value",
        "spec.match.headers[1].regex: empty regex",
    ] {
        assert!(m.iter().any(|m| m.contains(want)), "{want:?} not in {m:#?}");
    }
}
