//! The lean decode against the generated `CheckRequest` on the same bytes.
use super::*;
use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, attribute_context,
};
use prost::Message;

fn map(rng: &mut fastrand::Rng, keys: &[&str]) -> HashMap<String, String> {
    (0..rng.usize(0..8))
        .map(|i| {
            let key = if rng.bool() {
                keys[rng.usize(..keys.len())].to_string()
            } else {
                format!("k{i}-{}", rng.u16(..))
            };
            let value: String = (0..rng.usize(0..40))
                .map(|_| rng.choice(['a', 'Z', ' ', '=', 'é', '\u{1F600}']).unwrap())
                .collect();
            (key, value)
        })
        .collect()
}

/// A Check as Envoy fills it, including the fields the lean decode skips.
fn check(rng: &mut fastrand::Rng) -> CheckRequest {
    let names = ["x-api-key", "authorization", "x-request-id", "host"];
    let context = [
        "portcullis.route",
        "portcullis.auth.scopes",
        "portcullis.auth.shadow",
    ];
    let headers = map(rng, &names);
    let context_extensions = map(rng, &context);
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(attribute_context::Peer {
                principal: "spiffe://client".into(),
                ..Default::default()
            }),
            request: rng.bool().then(|| attribute_context::Request {
                http: rng.bool().then(|| attribute_context::HttpRequest {
                    id: "123".into(),
                    method: "POST".into(),
                    path: "/a/b?c".into(),
                    host: "api.example.com".into(),
                    body: "x".repeat(rng.usize(0..100)),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            context_extensions,
            ..Default::default()
        }),
    }
}

/// Every key of either decode (and some neither has) looks up the same value.
fn agree(full: &CheckRequest, lean: &CheckCall) {
    let attrs = full.attributes.clone().unwrap_or_default();
    let headers = attrs
        .request
        .and_then(|r| r.http)
        .map(|h| h.headers)
        .unwrap_or_default();
    let context = attrs.context_extensions;
    for (full, lean) in [(&headers, lean.headers()), (&context, lean.context())] {
        let keys = full
            .keys()
            .map(String::as_str)
            .chain(lean.iter().map(|(k, _)| k))
            .chain(["absent", ""]);
        for k in keys {
            assert_eq!(full.value(k), lean.value(k), "{k:?}");
        }
    }
}

#[test]
fn the_lean_decode_reads_what_the_generated_one_reads() {
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..2_000 {
        let full = check(&mut rng);
        let bytes = full.encode_to_vec();
        let lean = CheckCall::decode(bytes.as_slice()).unwrap();
        agree(&CheckRequest::decode(bytes.as_slice()).unwrap(), &lean);
    }
}

/// The request's header map, made if absent.
fn headers_mut(r: &mut CheckRequest) -> &mut HashMap<String, String> {
    let request = r
        .attributes
        .get_or_insert_default()
        .request
        .get_or_insert_default();
    &mut request.http.get_or_insert_default().headers
}

#[test]
fn a_key_sent_twice_reads_as_its_last_value_as_in_a_protobuf_map() {
    // Two encodings back to back are one message whose maps hold both entries.
    let one = |key: &str, route: &str| {
        let mut r = CheckRequest::default();
        headers_mut(&mut r).insert("x-api-key".into(), key.into());
        let a = r.attributes.get_or_insert_default();
        a.context_extensions
            .insert("portcullis.route".into(), route.into());
        r.encode_to_vec()
    };
    let bytes = [one("first", "ns/a"), one("second", "ns/b")].concat();
    let lean = CheckCall::decode(bytes.as_slice()).unwrap();
    assert_eq!(lean.headers().len(), 2);
    assert_eq!(lean.headers().value("x-api-key"), Some("second"));
    assert_eq!(lean.context().value("portcullis.route"), Some("ns/b"));
    agree(&CheckRequest::decode(bytes.as_slice()).unwrap(), &lean);
}

#[test]
fn malformed_maps_are_refused_like_the_generated_decode_refuses_them() {
    let mut rng = fastrand::Rng::with_seed(11);
    let valid = {
        let mut r = check(&mut rng);
        headers_mut(&mut r).insert("x-api-key".into(), "@@@@".into());
        r.encode_to_vec()
    };
    // A header value that is not UTF-8.
    let at = valid.windows(4).position(|w| w == b"@@@@").unwrap();
    let mut bad = valid.clone();
    bad[at] = 0xff;
    assert!(CheckRequest::decode(bad.as_slice()).is_err());
    assert!(CheckCall::decode(bad.as_slice()).is_err());
    // Every cut short of the whole message fails both, or decodes both alike.
    for len in 0..valid.len() {
        let cut = &valid[..len];
        match (CheckRequest::decode(cut), CheckCall::decode(cut)) {
            (Ok(full), Ok(lean)) => agree(&full, &lean),
            (Err(_), Err(_)) => {}
            (full, lean) => panic!("cut at {len}: {full:?} / {lean:?}"),
        }
    }
}

#[test]
fn a_map_entry_with_the_wrong_wire_type_is_refused() {
    // A header entry tagged as a varint (field 3, wire type 0) with an entry's bytes
    // after it. prost's map decoding ignores the wire type and reads it as an entry;
    // the lean decode refuses it (found by the `check_decode` fuzz target).
    let entry = [0x0a, 1, b'k', 0x12, 1, b'v'];
    let http = [&[0x18, 6][..], &entry].concat();
    let request = [&[0x12, http.len() as u8][..], &http].concat();
    let attrs = [&[0x22, request.len() as u8][..], &request].concat();
    let bytes = [&[0x0a, attrs.len() as u8][..], &attrs].concat();
    let full = CheckRequest::decode(bytes.as_slice()).unwrap();
    let headers = full
        .attributes
        .unwrap()
        .request
        .unwrap()
        .http
        .unwrap()
        .headers;
    assert_eq!(headers.get("k").map(String::as_str), Some("v"));
    let e = CheckCall::decode(bytes.as_slice()).unwrap_err();
    assert!(e.to_string().contains("invalid wire type"), "{e}");
    // The same entry with its proper wire type decodes alike.
    let mut good = bytes.clone();
    let at = good.iter().position(|b| *b == 0x18).unwrap();
    good[at] = 0x1a;
    agree(
        &CheckRequest::decode(good.as_slice()).unwrap(),
        &CheckCall::decode(good.as_slice()).unwrap(),
    );
    assert_eq!(
        CheckCall::decode(good.as_slice())
            .unwrap()
            .headers()
            .value("k"),
        Some("v")
    );
}

#[test]
fn the_maps_are_read_in_place_from_the_received_bytes() {
    // tonic hands the message over as shared bytes; a lookup returns a slice of them.
    let mut r = CheckRequest::default();
    headers_mut(&mut r).insert("x-api-key".into(), "k1".into());
    r.attributes
        .get_or_insert_default()
        .context_extensions
        .insert("portcullis.route".into(), "ns/a".into());
    let bytes = prost::bytes::Bytes::from(r.encode_to_vec());
    let lean = CheckCall::decode(bytes.clone()).unwrap();
    let inside = bytes.as_ptr_range();
    for v in [
        lean.headers().value("x-api-key").unwrap(),
        lean.context().value("portcullis.route").unwrap(),
    ] {
        assert!(inside.contains(&v.as_ptr()), "{v:?} was copied");
    }
    assert_eq!((lean.headers().len(), lean.context().len()), (1, 1));
    // Re-encoded, it is the same message.
    assert_eq!(
        CheckRequest::decode(lean.encode_to_vec().as_slice()).unwrap(),
        r
    );
}
