//! Model → xDS snapshot: translate, wrap each resource as a named `Any`, install the
//! snapshot in the cache, and persist it for the next start. The snapshot holds Envoy's
//! resources and the rate-limit service's `RateLimitConfig`s, so both follow one model
//! version.
use std::{path::PathBuf, time::Instant};

use portcullis_api::{Model, ObjectKey};
use portcullis_translate::{Incremental, Options, Resources};
use portcullis_xds::{Cache, EncodedResource, Resource, Snapshot};
use prometheus::{Histogram, HistogramOpts, IntCounter, Registry};

use crate::state::StateFile;

/// Metrics of the build side of the control plane.
#[derive(Clone)]
pub struct PublishMetrics {
    build_seconds: Histogram,
    publishes: IntCounter,
    expiry: crate::expiry::Expiry,
}

impl PublishMetrics {
    pub fn new(registry: &Registry) -> Self {
        let build_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "portcullis_snapshot_build_seconds",
                "Time to validate, translate and version one snapshot.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .expect("valid histogram");
        let publishes = IntCounter::new(
            "portcullis_snapshot_publishes_total",
            "Snapshots built and installed.",
        )
        .expect("valid counter");
        // Registration fails only for duplicate names, i.e. a second publisher in one
        // registry; the metrics still work unregistered.
        let _ = registry.register(Box::new(build_seconds.clone()));
        let _ = registry.register(Box::new(publishes.clone()));
        let expiry = crate::expiry::Expiry::new();
        let _ = registry.register(Box::new(expiry.clone()));
        Self {
            build_seconds,
            publishes,
            expiry,
        }
    }
}

pub struct Publisher {
    pub cache: Cache,
    pub options: Options,
    pub state: Option<StateFile>,
    metrics: PublishMetrics,
    /// What the last publish translated, so the next re-translates only what changed.
    incremental: std::sync::Mutex<Incremental>,
}

impl Publisher {
    /// Serves the state file's snapshot, if there is a readable one, until the source
    /// has been read; the same in file and Kubernetes mode. Returns the creation times
    /// it kept (file mode's notion of age). An unreadable file is logged and ignored:
    /// the source rebuilds everything from the manifests.
    pub fn restore(&self) -> Option<crate::state::Created> {
        let state = self.state.as_ref()?;
        match state.load() {
            Ok(Some((snapshot, created))) => {
                tracing::info!(
                    version = snapshot.version(),
                    path = %state.path().display(),
                    "serving the saved snapshot until the source has been read"
                );
                self.cache.set_snapshot(snapshot);
                Some(created)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, path = %state.path().display(), "ignoring an unreadable state file");
                None
            }
        }
    }

    pub fn new(
        cache: Cache,
        options: Options,
        state: Option<PathBuf>,
        registry: &Registry,
    ) -> Self {
        Self {
            cache,
            options,
            state: state.map(StateFile::new),
            metrics: PublishMetrics::new(registry),
            incremental: Default::default(),
        }
    }

    /// Translates and installs `model`.
    pub fn publish(&self, model: &Model, created: &crate::state::Created) -> Published {
        let started = Instant::now();
        let resources = self
            .incremental
            .lock()
            // A panic while translating is caught per object, so the memory is whole.
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .translate(model, &self.options);
        for (key, panic) in &resources.failed {
            tracing::error!(object = %key, panic, "translation failed; the object is left out");
        }
        let snapshot = to_snapshot_reusing(&resources, &self.cache.snapshot());
        let version = snapshot.version().to_owned();
        if let Some(state) = &self.state
            && let Err(e) = state.save(&snapshot, created)
        {
            tracing::warn!(error = %e, path = %state.path().display(), "could not persist the snapshot; a restart will wait for the source");
        }
        self.cache.set_snapshot(snapshot);
        self.metrics
            .build_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.publishes.inc();
        self.metrics.expiry.update(model);
        Published {
            version,
            failed: resources.failed,
        }
    }
}

/// What one publish installed.
pub struct Published {
    pub version: String,
    /// Objects left out because translating them panicked (see `Resources::failed`).
    pub failed: Vec<(ObjectKey, String)>,
}

/// `envoy_types::util::pack_any` by reference: the same bytes without first cloning the
/// resource (at 10k Routes the clone of the one RouteConfiguration alone is a deep copy
/// of every route).
fn pack_any<T: prost::Name + prost::Message>(value: &T) -> envoy_types::pb::google::protobuf::Any {
    envoy_types::pb::google::protobuf::Any {
        type_url: T::type_url(),
        value: value.encode_to_vec(),
    }
}

/// Every translated resource as a named xDS resource.
pub fn to_snapshot(res: &Resources) -> Snapshot {
    Snapshot::reusing_encoded(resources(res), encoded(res), None)
}

/// [`to_snapshot`], reusing `previous`'s versions and encodings of unchanged resources
/// (what the incremental translator hands over unchanged is known by its bytes'
/// allocation, without reading them).
pub fn to_snapshot_reusing(res: &Resources, previous: &Snapshot) -> Snapshot {
    Snapshot::reusing_encoded(resources(res), encoded(res), Some(previous))
}

fn resources(res: &Resources) -> impl Iterator<Item = Resource> + '_ {
    let listeners = res
        .listeners
        .iter()
        .map(|l| Resource::new(&l.name, pack_any(l)));
    let routes = res
        .route_configs
        .iter()
        .map(|r| Resource::new(&r.name, pack_any(r)));
    let clusters = res
        .clusters
        .iter()
        .map(|c| Resource::new(&c.name, pack_any(c)));
    let endpoints = res
        .load_assignments
        .iter()
        .map(|e| Resource::new(&e.cluster_name, pack_any(e)));
    let secrets = res
        .secrets
        .iter()
        .map(|s| Resource::new(&s.name, pack_any(s)));
    // Not for Envoy: `portcullis ratelimit` subscribes to this type on the same server.
    let rate_limits = res
        .rate_limit_configs
        .iter()
        .map(|c| Resource::new(&c.name, pack_any(c)));
    listeners
        .chain(routes)
        .chain(clusters)
        .chain(endpoints)
        .chain(secrets)
        .chain(rate_limits)
}

/// What the incremental translator hands over already encoded.
fn encoded(res: &Resources) -> impl Iterator<Item = EncodedResource> + '_ {
    use portcullis_xds::type_url::{CLUSTER, CLUSTER_LOAD_ASSIGNMENT, ROUTE_CONFIGURATION};
    let of = |type_url: &'static str| {
        move |(name, value): &(std::sync::Arc<str>, prost::bytes::Bytes)| EncodedResource {
            type_url,
            name: name.clone(),
            value: value.clone(),
        }
    };
    let routes = res
        .encoded_route_configs
        .iter()
        .map(of(ROUTE_CONFIGURATION));
    let clusters = res.encoded_clusters.iter().map(of(CLUSTER));
    let endpoints = res
        .encoded_load_assignments
        .iter()
        .map(of(CLUSTER_LOAD_ASSIGNMENT));
    routes.chain(clusters).chain(endpoints)
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::{
        cluster::v3::Cluster, endpoint::v3::ClusterLoadAssignment, route::v3::RouteConfiguration,
    };
    use portcullis_xds::type_url;
    use prost::Name;

    #[test]
    fn encoded_resources_are_named_by_their_message_type() {
        // The incremental path names its types by these constants; the full path by
        // the messages themselves. A difference would version one resource twice.
        assert_eq!(type_url::CLUSTER, Cluster::type_url());
        assert_eq!(
            type_url::CLUSTER_LOAD_ASSIGNMENT,
            ClusterLoadAssignment::type_url()
        );
        assert_eq!(
            type_url::ROUTE_CONFIGURATION,
            RouteConfiguration::type_url()
        );
    }
}
