//! Bytes → Envoy `HTTPAccessLogEntry` (protobuf) → scrubbed record → JSON, as the access
//! log service does for every entry Envoy streams. Beyond not panicking: no scrubbed
//! header's value and no query string reaches the record.
#![no_main]

use envoy_types::pb::envoy::data::accesslog::v3::HttpAccessLogEntry;
use libfuzzer_sys::fuzz_target;
use portcullis_accesslog::record::SCRUBBED;
use portcullis_accesslog::{AccessRecord, Scrub};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(entry) = HttpAccessLogEntry::decode(data) else {
        return;
    };
    let scrub = Scrub::new(Scrub::DEFAULT.iter().copied().chain(["x-custom-secret"]));
    let scrubbed: Vec<String> = entry
        .request
        .iter()
        .flat_map(|r| r.request_headers.keys())
        .map(|k| k.to_ascii_lowercase())
        .filter(|k| Scrub::DEFAULT.contains(&k.as_str()) || k == "x-custom-secret")
        .collect();
    let record = AccessRecord::from_entry(entry, "node-1", &scrub);
    for name in &scrubbed {
        assert_eq!(record.headers.get(name).map(String::as_str), Some(SCRUBBED));
    }
    assert!(!record.path.contains('?'), "query string kept: {}", record.path);
    serde_json::to_vec(&record).expect("a record serializes");
});
