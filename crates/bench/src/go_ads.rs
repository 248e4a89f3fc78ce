//! `go-ads` (crates/bench/go-ads), the per-client memory baseline of bench-xds: an ADS
//! server on grpc-go, the gRPC stack go-control-plane serves xDS with. It is built by
//! `make go-ads` into `tools/go-ads` for the benchmark only.
use std::path::{Path, PathBuf};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryResponse, DiscoveryResponse, Resource as DeltaResource,
};
use portcullis_xds::{Snapshot, type_url};
use prost::Message;

/// `$GO_ADS_BIN`, else `tools/go-ads/go-ads` above this crate; `None` when neither exists.
pub fn find() -> Option<PathBuf> {
    crate::find_tool("GO_ADS_BIN", "tools/go-ads/go-ads")
}

/// Writes into `dir` what `go-ads` answers each subscription of
/// [`crate::ads_clients`] with: per type they subscribe, `N.sotw` and `N.delta`, the encoded responses
/// holding the resources those clients subscribe (every one; of RouteConfigurations,
/// `route_config` only).
pub fn write_responses(dir: &Path, snapshot: &Snapshot, route_config: &str) -> anyhow::Result<()> {
    for (i, &t) in crate::ads_clients::TYPES.iter().enumerate() {
        let wanted: Vec<_> = snapshot
            .resources(t)
            .filter(|r| t != type_url::ROUTE_CONFIGURATION || r.name == route_config)
            .collect();
        anyhow::ensure!(
            !wanted.is_empty(),
            "the snapshot has no {t} the clients subscribe"
        );
        let version = snapshot.type_version(t).unwrap_or_default().to_owned();
        let sotw = DiscoveryResponse {
            version_info: version.clone(),
            resources: wanted.iter().map(|r| r.body.clone()).collect(),
            type_url: t.to_owned(),
            nonce: "1".into(),
            ..Default::default()
        };
        let delta = DeltaDiscoveryResponse {
            system_version_info: version,
            resources: wanted
                .iter()
                .map(|r| DeltaResource {
                    name: r.name.clone(),
                    version: snapshot
                        .resource_version(t, &r.name)
                        .unwrap_or_default()
                        .to_owned(),
                    resource: Some(r.body.clone()),
                    ..Default::default()
                })
                .collect(),
            type_url: t.to_owned(),
            nonce: "1".into(),
            ..Default::default()
        };
        std::fs::write(dir.join(format!("{i}.sotw")), sotw.encode_to_vec())?;
        std::fs::write(dir.join(format!("{i}.delta")), delta.encode_to_vec())?;
    }
    Ok(())
}
