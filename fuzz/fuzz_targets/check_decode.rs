//! authz's lean `CheckRequest` decode (`CheckCall`, what the gRPC server reads)
//! against the generated message, on the same bytes: whatever the generated decode
//! accepts, the lean one accepts too, and every header and context key looks up the
//! same value in both (the last one sent, as a protobuf map keeps). The lean decode
//! may accept more (it skips the fields it does not read). It refuses one thing the
//! generated decode takes: a map entry sent with a wire type other than
//! length-delimited, which prost's map decoding reads as if it were one (found here at
//! once; `a_map_entry_with_the_wrong_wire_type_is_refused` keeps it).
#![no_main]

use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use libfuzzer_sys::fuzz_target;
use portcullis_authz::{CheckCall, Pairs};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let lean = CheckCall::decode(data);
    let Ok(full) = CheckRequest::decode(data) else {
        return;
    };
    let lean = match lean {
        Ok(lean) => lean,
        Err(e) if e.to_string().contains("invalid wire type") => return,
        Err(e) => panic!("the generated decode accepted what the lean one refused: {e}"),
    };
    let attrs = full.attributes.unwrap_or_default();
    let headers = attrs
        .request
        .and_then(|r| r.http)
        .map(|h| h.headers)
        .unwrap_or_default();
    for (full, lean) in [
        (&headers, lean.headers()),
        (&attrs.context_extensions, lean.context()),
    ] {
        assert_eq!(
            full.len(),
            lean.iter()
                .map(|(k, _)| k)
                .collect::<std::collections::HashSet<_>>()
                .len()
        );
        for k in full.keys().map(String::as_str).chain(lean.iter().map(|(k, _)| k)) {
            assert_eq!(full.value(k), lean.value(k), "{k:?}");
        }
    }
});
