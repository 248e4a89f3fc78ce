//! Envoy's own `local_ratelimit` filter added to translated resources: the in-process
//! baseline (no network call per request) the rate-limit service is measured against.
use anyhow::Context;
use envoy_types::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use envoy_types::pb::envoy::config::listener::v3::filter;
use envoy_types::pb::envoy::extensions::filters::http::local_ratelimit::v3::LocalRateLimit;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_filter,
};
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, TokenBucket, fractional_percent};
use envoy_types::pb::google::protobuf::{Duration, UInt32Value};
use envoy_types::util::pack_any;
use portcullis_translate::Resources;
use prost::{Message, Name};

pub const FILTER: &str = "envoy.filters.http.local_ratelimit";

fn all_of_it(key: &str) -> Option<RuntimeFractionalPercent> {
    Some(RuntimeFractionalPercent {
        default_value: Some(FractionalPercent {
            numerator: 100,
            denominator: fractional_percent::DenominatorType::Hundred as i32,
        }),
        runtime_key: key.into(),
    })
}

/// Puts the filter before the router (inert where a route does not configure it) and
/// turns it on for routes whose name starts with `route_prefix`, with a bucket so
/// large that nothing is refused: every request pays for a decision, none is limited,
/// as with the service's limits in the same run.
pub fn add(res: &mut Resources, route_prefix: &str) -> anyhow::Result<()> {
    for listener in &mut res.listeners {
        for chain in &mut listener.filter_chains {
            for f in &mut chain.filters {
                let Some(filter::ConfigType::TypedConfig(any)) = &mut f.config_type else {
                    continue;
                };
                if any.type_url != HttpConnectionManager::type_url() {
                    continue;
                }
                let mut hcm = HttpConnectionManager::decode(any.value.as_slice())?;
                let router = hcm
                    .http_filters
                    .iter()
                    .position(|f| f.name == "envoy.filters.http.router")
                    .context("no router filter")?;
                hcm.http_filters.insert(
                    router,
                    HttpFilter {
                        name: FILTER.into(),
                        config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
                            LocalRateLimit {
                                stat_prefix: "bench_local".into(),
                                ..Default::default()
                            },
                        ))),
                        ..Default::default()
                    },
                );
                any.value = hcm.encode_to_vec();
            }
        }
    }
    let per_route = pack_any(LocalRateLimit {
        stat_prefix: "bench_local".into(),
        token_bucket: Some(TokenBucket {
            max_tokens: 1_000_000_000,
            tokens_per_fill: Some(UInt32Value {
                value: 1_000_000_000,
            }),
            fill_interval: Some(Duration {
                seconds: 1,
                nanos: 0,
            }),
        }),
        filter_enabled: all_of_it("bench_local.enabled"),
        filter_enforced: all_of_it("bench_local.enforced"),
        ..Default::default()
    });
    let mut configured = 0;
    for rc in &mut res.route_configs {
        for vh in &mut rc.virtual_hosts {
            for route in vh
                .routes
                .iter_mut()
                .filter(|r| r.name.starts_with(route_prefix))
            {
                route
                    .typed_per_filter_config
                    .insert(FILTER.into(), per_route.clone());
                configured += 1;
            }
        }
    }
    anyhow::ensure!(configured > 0, "no route named {route_prefix}…");
    Ok(())
}
