use super::*;
use crate::policy::{API_KEY_HEADER, ROUTE, SCOPES, SHADOW};
use crate::request::CheckCall;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};

/// A Check whose context holds `pairs`, in this order, as Envoy would send them.
fn call(pairs: &[(&str, &str)]) -> CheckCall {
    let delimited = |tag: u32, body: &[u8], out: &mut Vec<u8>| {
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(body.len() as u64, out);
        out.extend_from_slice(body);
    };
    let mut attributes = Vec::new();
    for (k, v) in pairs {
        let mut entry = Vec::new();
        delimited(1, k.as_bytes(), &mut entry);
        delimited(2, v.as_bytes(), &mut entry);
        delimited(10, &entry, &mut attributes);
    }
    let mut request = Vec::new();
    delimited(1, &attributes, &mut request);
    CheckCall::decode(request.as_slice()).unwrap()
}

fn read(pairs: &[(&str, &str)]) -> RoutePolicy {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    RoutePolicy::from_context(&map)
}

#[test]
fn one_context_is_read_once_and_every_other_gets_its_own_policy() {
    let policies = Policies::default();
    let orders = [(ROUTE, "shop/orders"), (SCOPES, "orders:read")];
    let first = policies.get(call(&orders).context());
    assert_eq!(*first, read(&orders));
    let again = policies.get(call(&orders).context());
    assert!(Arc::ptr_eq(&first, &again), "read again");
    // Contexts a byte apart, or with a byte moved between a key and its value, or an
    // entry more or less, or a key sent twice: each its own policy, as read.
    let others: [&[(&str, &str)]; 7] = [
        &[(ROUTE, "shop/orderz"), (SCOPES, "orders:read")],
        &[(ROUTE, "shop/orders"), (SCOPES, "orders:read,admin")],
        &[(ROUTE, "shop/orders")],
        &[
            (ROUTE, "shop/orders"),
            (SCOPES, "orders:read"),
            (SHADOW, "true"),
        ],
        &[
            (ROUTE, "shop/orders"),
            (SCOPES, ""),
            (SCOPES, "orders:read"),
        ],
        &[
            (ROUTE, "shop/orders"),
            (SCOPES, "orders:read"),
            (SCOPES, ""),
        ],
        &[("portcullis.routes", "hop/orders"), (SCOPES, "orders:read")],
    ];
    for pairs in others {
        let got = policies.get(call(pairs).context());
        assert!(!Arc::ptr_eq(&got, &first), "{pairs:?}");
        // The last entry of a key wins, as in the map the generated decode builds.
        let last = pairs
            .iter()
            .rev()
            .fold(Vec::<(&str, &str)>::new(), |mut seen, (k, v)| {
                if !seen.iter().any(|(s, _)| s == k) {
                    seen.push((k, v));
                }
                seen
            });
        assert_eq!(*got, read(&last), "{pairs:?}");
    }
    assert_eq!(policies.len(), 1 + others.len());
    // No context: the strictest reading, kept like any other.
    let empty = policies.get(call(&[]).context());
    assert_eq!(*empty, read(&[]));
    assert!(empty.required);
}

#[test]
fn same_compares_every_entry_and_its_boundaries() {
    let policies = Policies::default();
    let key = |pairs: &[(&str, &str)]| {
        let c = call(pairs);
        policies.get(c.context());
        let known = policies.known.read();
        known
            .by_hash
            .values()
            .find(|k| same(&k.context, c.context()))
            .map(|k| k.context.clone())
            .unwrap()
    };
    let ab = key(&[("ab", "c")]);
    assert!(!same(&ab, call(&[("a", "bc")]).context()));
    assert!(!same(&ab, call(&[("ab", "c"), ("", "")]).context()));
    assert!(!same(&ab, call(&[]).context()));
    assert!(!same(&ab, call(&[("ab", "cd")]).context()));
    assert!(same(&ab, call(&[("ab", "c")]).context()));
}

#[test]
fn the_table_is_bounded_in_entries_and_in_bytes() {
    let policies = Policies::default();
    // A context too large to keep is still read, for its call only.
    let big = "s".repeat(MAX_CONTEXT_BYTES);
    let got = policies.get(call(&[(SCOPES, &big)]).context());
    assert_eq!(got.scopes, vec![big.clone()]);
    assert!(policies.is_empty());
    // A flood of distinct contexts (a peer making them up) never holds more than
    // MAX_POLICIES, and each is still read right.
    for i in 0..MAX_POLICIES + 10 {
        let route = format!("ns/r{i}");
        let got = policies.get(call(&[(ROUTE, &route), (API_KEY_HEADER, "X-Key")]).context());
        assert_eq!(
            (got.route.as_str(), got.api_key_header.as_deref()),
            (route.as_str(), Some("x-key"))
        );
        assert!(policies.len() <= MAX_POLICIES);
    }
    assert!(!policies.is_empty());
    // Contexts as large as may be kept fill the byte budget before the entry cap.
    let policies = Policies::default();
    let most = MAX_CONTEXT_BYTES - SCOPES.len() - 2 - 8;
    for i in 0..2 * MAX_TABLE_BYTES / MAX_CONTEXT_BYTES {
        let scopes = format!("{i:08}{}", "s".repeat(most));
        let got = policies.get(call(&[(SCOPES, &scopes)]).context());
        assert_eq!(got.scopes, vec![scopes]);
        assert!(policies.bytes() <= MAX_TABLE_BYTES, "{}", policies.bytes());
        assert!(policies.len() <= MAX_TABLE_BYTES / most);
    }
    assert!(policies.len() > 1);
}
