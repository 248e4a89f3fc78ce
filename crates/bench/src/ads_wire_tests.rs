use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use envoy_types::pb::google::protobuf::Any;

use super::*;

fn framed(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        grpc(&mut out, m);
    }
    out
}

fn read_in_pieces(bytes: &[u8], piece: usize) -> anyhow::Result<Vec<Answer>> {
    let mut r = Responses::default();
    let mut out = Vec::new();
    for chunk in bytes.chunks(piece) {
        r.feed(chunk, &mut out)?;
    }
    Ok(out)
}

fn sotw(version: &str, nonce: &str, resources: usize) -> DiscoveryResponse {
    DiscoveryResponse {
        version_info: version.into(),
        resources: (0..resources)
            .map(|i| Any {
                type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
                value: vec![i as u8; 300 + i],
            })
            .collect(),
        canary: true,
        type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
        nonce: nonce.into(),
        ..Default::default()
    }
}

#[test]
fn reads_sotw_responses_however_the_bytes_are_cut() {
    let a = sotw("v7", "n1", 40);
    let b = sotw("", "n2", 0);
    let bytes = framed(&[a.encode_to_vec(), b.encode_to_vec(), Vec::new()]);
    let want = vec![
        Answer {
            version: "v7".into(),
            type_url: a.type_url.clone(),
            nonce: "n1".into(),
        },
        Answer {
            version: String::new(),
            type_url: b.type_url.clone(),
            nonce: "n2".into(),
        },
        Answer::default(),
    ];
    for piece in [1, 2, 3, 5, 7, 64, 1000, 16_384, bytes.len()] {
        assert_eq!(
            read_in_pieces(&bytes, piece).unwrap(),
            want,
            "pieces of {piece}"
        );
    }
}

#[test]
fn reads_delta_responses() {
    let d = DeltaDiscoveryResponse {
        system_version_info: "sys".into(),
        resources: vec![Resource {
            name: "team-1/svc-1".into(),
            version: "3".into(),
            resource: Some(Any {
                type_url: "t".into(),
                value: vec![1; 5000],
            }),
            ..Default::default()
        }],
        type_url: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment".into(),
        removed_resources: vec!["gone".into()],
        nonce: "42".into(),
        ..Default::default()
    };
    let got = read_in_pieces(&framed(&[d.encode_to_vec()]), 3).unwrap();
    assert_eq!(
        got,
        [Answer {
            version: "sys".into(),
            type_url: d.type_url,
            nonce: "42".into(),
        }]
    );
}

#[test]
fn refuses_what_no_server_should_send() {
    let mut compressed = framed(&[sotw("v", "n", 1).encode_to_vec()]);
    compressed[0] = 1;
    assert!(read_in_pieces(&compressed, 9).is_err());
    // A message claiming a gigabyte.
    assert!(read_in_pieces(&[0, 0x40, 0, 0, 0], 5).is_err());
    // A field longer than its message: key 1 (bytes), length 100, in 3 bytes.
    assert!(read_in_pieces(&framed(&[vec![0x0a, 100, 0]]), 1).is_err());
    // Wire type 3 (a group).
    assert!(read_in_pieces(&framed(&[vec![0x0b, 0]]), 1).is_err());
    // A key whose varint never ends before eleven bytes.
    assert!(read_in_pieces(&framed(&[vec![0xff; 12]]), 1).is_err());
    // A message that ends inside a key.
    assert!(read_in_pieces(&framed(&[vec![0x80]]), 1).is_err());
}

#[test]
fn skips_a_nonce_too_long_to_keep() {
    let long = "x".repeat(KEPT_MAX + 1);
    let got = read_in_pieces(&framed(&[sotw("v", &long, 1).encode_to_vec()]), 100).unwrap();
    assert_eq!(got[0].nonce, "");
    assert_eq!(got[0].version, "v");
}

#[test]
fn reads_varint_and_fixed_fields_it_skips() {
    // Field 9 varint 300, field 10 fixed64, field 11 fixed32, then the nonce.
    let mut m = vec![0x48, 0xac, 0x02, 0x51];
    m.extend_from_slice(&[0; 8]);
    m.push(0x5d);
    m.extend_from_slice(&[0; 4]);
    bytes_field(&mut m, 5, b"n");
    let got = read_in_pieces(&framed(&[m]), 1).unwrap();
    assert_eq!(got[0].nonce, "n");
}

fn unframe(bytes: &[u8]) -> &[u8] {
    assert_eq!(bytes[0], 0);
    let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
    assert_eq!(len, bytes.len() - 5);
    &bytes[5..]
}

fn names() -> Vec<(&'static str, Vec<String>)> {
    vec![(
        "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
        vec!["team-0/svc-0".into(), "team-1/svc-1".into()],
    )]
}

#[test]
fn writes_the_sotw_requests_envoy_would() {
    let r = Requests::new(false, &names());
    let eds = names()[0].0;
    let node = Node {
        id: "storm-3".into(),
        ..Default::default()
    };
    let mut out = Vec::new();
    r.first(&mut out, eds, Some(&node));
    let first = DiscoveryRequest::decode(unframe(&out)).unwrap();
    assert_eq!(first.node, Some(node));
    assert_eq!(first.type_url, eds);
    assert_eq!(first.resource_names, names()[0].1);
    out.clear();
    let answer = Answer {
        version: "v9".into(),
        type_url: eds.into(),
        nonce: "n4".into(),
    };
    r.ack(&mut out, &answer);
    let ack = DiscoveryRequest::decode(unframe(&out)).unwrap();
    assert_eq!(
        ack,
        DiscoveryRequest {
            version_info: "v9".into(),
            resource_names: names()[0].1.clone(),
            type_url: eds.into(),
            response_nonce: "n4".into(),
            ..Default::default()
        }
    );
    // A type without names asks for all of them.
    out.clear();
    r.first(
        &mut out,
        "type.googleapis.com/envoy.config.cluster.v3.Cluster",
        None,
    );
    let cds = DiscoveryRequest::decode(unframe(&out)).unwrap();
    assert!(cds.resource_names.is_empty() && cds.node.is_none());
}

#[test]
fn writes_the_delta_requests_envoy_would() {
    let r = Requests::new(true, &names());
    let eds = names()[0].0;
    let mut out = Vec::new();
    r.first(&mut out, eds, Some(&Node::default()));
    let first = DeltaDiscoveryRequest::decode(unframe(&out)).unwrap();
    assert_eq!(first.node, Some(Node::default()));
    assert_eq!(first.resource_names_subscribe, names()[0].1);
    out.clear();
    r.ack(
        &mut out,
        &Answer {
            version: "ignored".into(),
            type_url: eds.into(),
            nonce: "n1".into(),
        },
    );
    assert_eq!(
        DeltaDiscoveryRequest::decode(unframe(&out)).unwrap(),
        DeltaDiscoveryRequest {
            type_url: eds.into(),
            response_nonce: "n1".into(),
            ..Default::default()
        }
    );
}
