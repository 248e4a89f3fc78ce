//! The ADS server's per-stream state on request sequences no Envoy would send: a SotW
//! and a delta stream on one cache, fed requests (types, names, versions, nonces, ACKs,
//! NACKs, node ids from the bytes, nonces often echoed from earlier responses) and
//! snapshot changes, through the same step the gRPC stream task takes
//! (`portcullis_xds::{SotwSession, DeltaSession}`). Then the operator views and the
//! state-file codec on bytes.
//!
//! A request past a stream bound closes the stream (as the server does); the target then
//! opens a new one, as Envoy would reconnect. Beyond not panicking: every response is for the type asked or subscribed, nonces
//! increase, a delta response never both updates and removes a name, and every
//! resource sent exists in the current or the previous snapshot.
#![no_main]

use std::collections::BTreeSet;

use arbitrary::{Arbitrary, Result, Unstructured};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status;
use libfuzzer_sys::fuzz_target;
use portcullis_xds::type_url::{CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION};
use portcullis_xds::{Cache, DeltaSession, Resource, Snapshot, SotwSession};

const TYPES: &[&str] = &[
    LISTENER,
    ROUTE_CONFIGURATION,
    CLUSTER,
    CLUSTER_LOAD_ASSIGNMENT,
    "type.googleapis.com/portcullis.ratelimit.v1.RateLimitConfig",
];
const NAMES: &[&str] = &["a", "b", "c", "*", ""];
const MAX_STEPS: usize = 48;

fuzz_target!(|data: &[u8]| {
    let (&mode, rest) = data.split_first().unwrap_or((&0, &[]));
    if mode % 8 == 7 {
        // The state file: decode, and what decodes re-encodes to the same snapshot.
        if let Ok(s) = Snapshot::decode(rest) {
            let again = Snapshot::decode(&s.encode_to_vec()).expect("re-decodes");
            assert_eq!(again.version(), s.version());
        }
        return;
    }
    let _ = run(&mut Unstructured::new(rest));
});

#[derive(Default)]
struct Seen {
    nonces: Vec<String>,
    versions: Vec<String>,
    last_nonce: u64,
}

impl Seen {
    fn nonce(&mut self, nonce: &str) {
        let n: u64 = nonce.parse().expect("numeric nonce");
        assert!(n > self.last_nonce, "nonce {n} after {}", self.last_nonce);
        self.last_nonce = n;
        self.nonces.push(nonce.to_string());
    }

    fn pick(u: &mut Unstructured<'_>, from: &[String]) -> Result<String> {
        Ok(match u.int_in_range(0..=3)? {
            0 => String::new(),
            1 => String::arbitrary(u)?,
            _ if from.is_empty() => String::new(),
            _ => u.choose(from)?.clone(),
        })
    }
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let cache = Cache::new(&prometheus::Registry::new());
    cache.set_snapshot(snapshot(u)?);
    let mut previous = cache.snapshot();
    let mut sotw = SotwSession::open(&cache);
    let mut delta = DeltaSession::open(&cache);
    let (mut seen_sotw, mut seen_delta) = (Seen::default(), Seen::default());
    let exists = |prev: &Snapshot, cur: &Snapshot, t: &str, name: &str| {
        cur.get(t, name).is_some() || prev.get(t, name).is_some()
    };
    for _ in 0..MAX_STEPS {
        if u.is_empty() {
            break;
        }
        match u.int_in_range(0..=4)? {
            0 => {
                previous = cache.snapshot();
                cache.set_snapshot(snapshot(u)?);
                let current = cache.snapshot();
                for r in sotw.snapshot(current.clone()) {
                    seen_sotw.nonce(&r.nonce);
                    seen_sotw.versions.push(r.version_info.clone());
                }
                for r in delta.snapshot(current.clone()) {
                    seen_delta.nonce(&r.nonce);
                    for res in &r.resources {
                        assert!(exists(&previous, &current, &r.type_url, &res.name));
                    }
                }
            }
            1 | 2 => {
                let t = type_url(u)?;
                let req = DiscoveryRequest {
                    type_url: t.clone(),
                    resource_names: names(u)?,
                    version_info: Seen::pick(u, &seen_sotw.versions)?,
                    response_nonce: Seen::pick(u, &seen_sotw.nonces)?,
                    error_detail: nack(u)?,
                    node: node(u)?,
                    ..Default::default()
                };
                let Ok(responses) = sotw.request(req) else {
                    // Past a stream bound: the server closes the stream; Envoy reconnects.
                    sotw = SotwSession::open(&cache);
                    seen_sotw = Seen::default();
                    continue;
                };
                for r in responses {
                    assert_eq!(r.type_url, t);
                    seen_sotw.nonce(&r.nonce);
                    seen_sotw.versions.push(r.version_info.clone());
                    for any in &r.resources {
                        assert_eq!(any.type_url, t, "resource of another type sent");
                    }
                }
            }
            _ => {
                let t = type_url(u)?;
                let req = DeltaDiscoveryRequest {
                    type_url: t.clone(),
                    resource_names_subscribe: names(u)?,
                    resource_names_unsubscribe: names(u)?,
                    initial_resource_versions: names(u)?
                        .into_iter()
                        .map(|n| Ok((n, String::arbitrary(u)?)))
                        .collect::<Result<_>>()?,
                    response_nonce: Seen::pick(u, &seen_delta.nonces)?,
                    error_detail: nack(u)?,
                    node: node(u)?,
                    ..Default::default()
                };
                let current = cache.snapshot();
                let Ok(responses) = delta.request(req) else {
                    delta = DeltaSession::open(&cache);
                    seen_delta = Seen::default();
                    continue;
                };
                for r in responses {
                    assert_eq!(r.type_url, t);
                    seen_delta.nonce(&r.nonce);
                    let updated: BTreeSet<&str> = r.resources.iter().map(|x| x.name.as_str()).collect();
                    assert_eq!(updated.len(), r.resources.len(), "a name twice in one response");
                    for removed in &r.removed_resources {
                        assert!(!updated.contains(removed.as_str()), "{removed} updated and removed");
                    }
                    for res in &r.resources {
                        assert!(exists(&previous, &current, &t, &res.name));
                    }
                }
            }
        }
    }
    let _ = serde_json::to_string(&cache.debug());
    assert_eq!(cache.nodes().len(), 2);
    drop((sotw, delta));
    assert!(cache.nodes().is_empty());
    Ok(())
}

fn type_url(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(if u.ratio(7, 8)? {
        u.choose(TYPES)?.to_string()
    } else {
        String::arbitrary(u)?
    })
}

fn name(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(if u.ratio(7, 8)? {
        u.choose(NAMES)?.to_string()
    } else {
        String::arbitrary(u)?
    })
}

fn names(u: &mut Unstructured<'_>) -> Result<Vec<String>> {
    (0..u.int_in_range(0..=3)?).map(|_| name(u)).collect()
}

fn nack(u: &mut Unstructured<'_>) -> Result<Option<Status>> {
    Ok(if u.ratio(1, 4)? {
        Some(Status {
            code: u.arbitrary()?,
            message: String::arbitrary(u)?,
            ..Default::default()
        })
    } else {
        None
    })
}

fn node(u: &mut Unstructured<'_>) -> Result<Option<Node>> {
    Ok(if u.ratio(1, 4)? {
        Some(Node {
            id: String::arbitrary(u)?,
            cluster: String::arbitrary(u)?,
            ..Default::default()
        })
    } else {
        None
    })
}

fn snapshot(u: &mut Unstructured<'_>) -> Result<Snapshot> {
    let resources = (0..u.int_in_range(0..=6)?)
        .map(|_| {
            Ok(Resource::new(
                name(u)?,
                Any {
                    type_url: type_url(u)?,
                    value: <Vec<u8>>::arbitrary(u)?,
                },
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Snapshot::new(resources))
}
