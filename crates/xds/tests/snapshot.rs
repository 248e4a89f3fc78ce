//! Snapshot versioning and persistence through the public API.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::util::pack_any;
use portcullis_xds::type_url::{CLUSTER, LISTENER};
use portcullis_xds::{Resource, Snapshot};

fn cluster(name: &str) -> Resource {
    Resource::new(
        name,
        pack_any(Cluster {
            name: name.into(),
            ..Default::default()
        }),
    )
}

fn listener(name: &str) -> Resource {
    Resource::new(
        name,
        pack_any(Listener {
            name: name.into(),
            ..Default::default()
        }),
    )
}

#[test]
fn equal_content_equal_versions_regardless_of_order() {
    let a = Snapshot::new([cluster("x"), cluster("y"), listener("l")]);
    let b = Snapshot::new([listener("l"), cluster("y"), cluster("x")]);
    assert_eq!(a.version(), b.version());
    assert_eq!(a.type_version(CLUSTER), b.type_version(CLUSTER));
    assert_eq!(a.type_urls().collect::<Vec<_>>(), [CLUSTER, LISTENER]);
    let c = Snapshot::new([cluster("x"), listener("l")]);
    assert_ne!(a.version(), c.version());
    assert_eq!(a.type_version(LISTENER), c.type_version(LISTENER));
    assert_eq!(a.len(), 3);
    assert!(Snapshot::empty().is_empty());
}

#[test]
fn encode_decode_roundtrip() {
    let a = Snapshot::new([cluster("x"), cluster("y"), listener("l")]);
    let b = Snapshot::decode(&a.encode_to_vec()).unwrap();
    assert_eq!(a.version(), b.version());
    assert_eq!(
        a.resources(CLUSTER).collect::<Vec<_>>(),
        b.resources(CLUSTER).collect::<Vec<_>>()
    );
    assert_eq!(b.get(LISTENER, "l"), Some(&listener("l")));
    let empty = Snapshot::decode(&Snapshot::empty().encode_to_vec()).unwrap();
    assert_eq!(empty.version(), Snapshot::empty().version());
    assert!(Snapshot::decode(b"\x0a\xff").is_err());
}
