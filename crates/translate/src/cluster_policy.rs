//! Service traffic policy → cluster fields: load balancing, circuit breakers and retry
//! budget, connection pool, health checks, outlier detection.
use envoy_types::pb::envoy::{
    config::{
        cluster::v3::{
            CircuitBreakers, Cluster, OutlierDetection, UpstreamConnectionOptions,
            circuit_breakers::{Thresholds, thresholds::RetryBudget},
            cluster::{CommonLbConfig, LbPolicy, common_lb_config},
        },
        core::v3::{
            HealthCheck, Http1ProtocolOptions, Http2ProtocolOptions,
            HttpProtocolOptions as CommonHttpOptions, RoutingPriority, TcpKeepalive, health_check,
        },
    },
    extensions::upstreams::http::v3::{
        HttpProtocolOptions,
        http_protocol_options::{
            ExplicitHttpConfig, UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
        },
    },
    r#type::v3::{CodecClientType, Percent},
};
use portcullis_api::{Protocol, ServiceSpec, policy::LbPolicy as Policy};

use crate::{defaults as d, proto};

pub fn apply(cluster: &mut Cluster, spec: &ServiceSpec) {
    let policy = spec
        .load_balancer
        .as_ref()
        .map(|l| l.policy)
        .unwrap_or_default();
    cluster.lb_policy = match policy {
        Policy::WeightedRandom => LbPolicy::Random,
        Policy::RoundRobin => LbPolicy::RoundRobin,
        Policy::LeastRequest => LbPolicy::LeastRequest,
        Policy::RingHash => LbPolicy::RingHash,
        Policy::Maglev => LbPolicy::Maglev,
    } as i32;
    // Each destination is its own locality (see cluster.rs), so locality weights are the
    // destination weights. Consistent hashing ignores locality weights and uses the
    // endpoint weights, which carry the same numbers.
    if !matches!(policy, Policy::RingHash | Policy::Maglev) {
        cluster.common_lb_config = Some(CommonLbConfig {
            locality_config_specifier: Some(
                common_lb_config::LocalityConfigSpecifier::LocalityWeightedLbConfig(
                    Default::default(),
                ),
            ),
            ..Default::default()
        });
    }
    cluster.circuit_breakers = Some(circuit_breakers(spec));
    cluster.typed_extension_protocol_options = [(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
        proto::any(&protocol_options(spec)),
    )]
    .into();
    let pool = spec.connection_pool.clone().unwrap_or_default();
    let keepalive = pool.tcp_keepalive.unwrap_or_default();
    cluster.upstream_connection_options = Some(UpstreamConnectionOptions {
        tcp_keepalive: Some(TcpKeepalive {
            keepalive_probes: proto::u32v(keepalive.probes.unwrap_or(d::KEEPALIVE_PROBES)),
            keepalive_time: proto::u32v(secs(keepalive.time.map_or(d::KEEPALIVE_TIME, |t| t.0))),
            keepalive_interval: proto::u32v(secs(
                keepalive.interval.map_or(d::KEEPALIVE_INTERVAL, |t| t.0),
            )),
        }),
        ..Default::default()
    });
    if let Some(hc) = &spec.health_check {
        cluster.health_checks = vec![HealthCheck {
            timeout: proto::duration(hc.timeout.map_or(d::HC_TIMEOUT, |t| t.0)),
            interval: proto::duration(hc.interval.map_or(d::HC_INTERVAL, |t| t.0)),
            // Envoy checks a cluster that has not had traffic yet only every 60s, and
            // decides that when it schedules the next check, i.e. right at start-up:
            // a gateway must notice a dead destination at the stated interval.
            no_traffic_interval: proto::duration(hc.interval.map_or(d::HC_INTERVAL, |t| t.0)),
            interval_jitter: proto::duration(hc.jitter.map_or(d::HC_JITTER, |t| t.0)),
            unhealthy_threshold: proto::u32v(
                hc.unhealthy_threshold.unwrap_or(d::HC_UNHEALTHY_THRESHOLD),
            ),
            healthy_threshold: proto::u32v(hc.healthy_threshold.unwrap_or(d::HC_HEALTHY_THRESHOLD)),
            health_checker: Some(health_check::HealthChecker::HttpHealthCheck(
                health_check::HttpHealthCheck {
                    path: hc.path.clone(),
                    codec_client_type: match spec.protocol {
                        Protocol::Http1 => CodecClientType::Http1,
                        Protocol::Http2 => CodecClientType::Http2,
                    } as i32,
                    ..Default::default()
                },
            )),
            ..Default::default()
        }];
    }
    cluster.outlier_detection = outlier_detection(spec);
}

fn secs(d: std::time::Duration) -> u32 {
    d.as_secs().max(1) as u32
}

fn circuit_breakers(spec: &ServiceSpec) -> CircuitBreakers {
    let pool = spec.connection_pool.clone().unwrap_or_default();
    // A retry budget scales with traffic, a fixed max_retries does not; Envoy ignores
    // max_retries when a budget is set, so the budget is used unless the Service asked
    // for max_retries alone.
    let budget = match (&spec.retry_budget, pool.max_retries) {
        (None, Some(_)) => None,
        (b, _) => {
            let b = b.clone().unwrap_or_default();
            Some(RetryBudget {
                budget_percent: Some(Percent {
                    value: b.percent.unwrap_or(d::RETRY_BUDGET_PERCENT),
                }),
                min_retry_concurrency: proto::u32v(
                    b.min_concurrency.unwrap_or(d::RETRY_BUDGET_MIN_CONCURRENCY),
                ),
                ..Default::default()
            })
        }
    };
    CircuitBreakers {
        thresholds: vec![Thresholds {
            priority: RoutingPriority::Default as i32,
            max_connections: proto::u32v(pool.max_connections.unwrap_or(d::MAX_CONNECTIONS)),
            max_pending_requests: proto::u32v(
                pool.max_pending_requests.unwrap_or(d::MAX_PENDING_REQUESTS),
            ),
            max_requests: proto::u32v(pool.max_requests.unwrap_or(d::MAX_REQUESTS)),
            max_retries: pool.max_retries.and_then(proto::u32v),
            retry_budget: budget,
            track_remaining: true,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn protocol_options(spec: &ServiceSpec) -> HttpProtocolOptions {
    let pool = spec.connection_pool.clone().unwrap_or_default();
    let config = match spec.protocol {
        Protocol::Http1 => ProtocolConfig::HttpProtocolOptions(Http1ProtocolOptions::default()),
        Protocol::Http2 => ProtocolConfig::Http2ProtocolOptions(Http2ProtocolOptions::default()),
    };
    HttpProtocolOptions {
        common_http_protocol_options: Some(CommonHttpOptions {
            idle_timeout: proto::duration(
                pool.idle_timeout.map_or(d::UPSTREAM_IDLE_TIMEOUT, |t| t.0),
            ),
            max_requests_per_connection: pool.max_requests_per_connection.and_then(proto::u32v),
            max_connection_duration: pool
                .max_connection_duration
                .and_then(|t| proto::duration(t.0)),
            ..Default::default()
        }),
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(config),
            },
        )),
        ..Default::default()
    }
}

fn outlier_detection(spec: &ServiceSpec) -> Option<OutlierDetection> {
    let od = spec.outlier_detection.clone().unwrap_or_default();
    if od.enabled == Some(false) {
        return None;
    }
    let sr = od.success_rate.as_ref();
    Some(OutlierDetection {
        consecutive_5xx: proto::u32v(od.consecutive_5xx.unwrap_or(d::OD_CONSECUTIVE_5XX)),
        consecutive_gateway_failure: proto::u32v(
            od.consecutive_gateway_failures
                .unwrap_or(d::OD_CONSECUTIVE_GATEWAY),
        ),
        // Envoy enforces gateway-failure ejection 0% of the time unless told otherwise.
        enforcing_consecutive_gateway_failure: proto::u32v(100),
        enforcing_consecutive_5xx: proto::u32v(100),
        enforcing_success_rate: proto::u32v(if sr.is_some() { 100 } else { 0 }),
        success_rate_minimum_hosts: proto::u32v(
            sr.and_then(|s| s.minimum_hosts)
                .unwrap_or(d::OD_SR_MINIMUM_HOSTS),
        ),
        success_rate_request_volume: proto::u32v(
            sr.and_then(|s| s.request_volume)
                .unwrap_or(d::OD_SR_REQUEST_VOLUME),
        ),
        success_rate_stdev_factor: proto::u32v(
            (sr.and_then(|s| s.stdev_factor)
                .unwrap_or(d::OD_SR_STDEV_FACTOR)
                * 1000.0)
                .round() as u32,
        ),
        interval: proto::duration(od.interval.map_or(d::OD_INTERVAL, |t| t.0)),
        base_ejection_time: proto::duration(
            od.base_ejection_time.map_or(d::OD_BASE_EJECTION, |t| t.0),
        ),
        max_ejection_percent: proto::u32v(
            od.max_ejection_percent
                .unwrap_or(d::OD_MAX_EJECTION_PERCENT),
        ),
        ..Default::default()
    })
}
