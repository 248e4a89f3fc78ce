//! How the ADS server reads a stream's requests (`portcullis_xds::read_requests`, the
//! reader the server uses instead of tonic's decoder) on bytes from the network: gRPC
//! message frames of any flags and lengths, split into HTTP/2 DATA frames anywhere.
//!
//! Beyond not panicking: the result does not depend on where the bytes were split
//! (the same bytes in one frame read the same), a stream ends at its first error, and
//! no message decodes from a frame declaring more than the bound.
#![no_main]

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use libfuzzer_sys::fuzz_target;
use portcullis_xds::read_requests;

/// Small, so oversized lengths are reachable; the server's is 4 MiB.
const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let (&cuts, bytes) = data.split_first().unwrap_or((&0, &[]));
    // Split points from the first byte: every `step` bytes, the first chunk shorter.
    let step = usize::from(cuts % 31) + 1;
    let mut chunks = Vec::new();
    let mut rest = bytes;
    let mut first = usize::from(cuts / 31) % step + 1;
    while !rest.is_empty() {
        let n = first.min(rest.len());
        chunks.push(rest[..n].to_vec());
        rest = &rest[n..];
        first = step;
    }
    let split = read_requests::<DiscoveryRequest>(chunks, MAX);
    let whole = read_requests::<DiscoveryRequest>(vec![bytes.to_vec()], MAX);
    let show = |r: &[Result<DiscoveryRequest, tonic::Status>]| -> Vec<Result<DiscoveryRequest, (tonic::Code, String)>> {
        r.iter()
            .map(|x| x.clone().map_err(|s| (s.code(), s.message().to_owned())))
            .collect()
    };
    assert_eq!(show(&split), show(&whole), "the split changed what was read");
    if let Some(i) = split.iter().position(Result::is_err) {
        assert_eq!(i + 1, split.len(), "a message was read after an error");
    }
    // Each message read came from a frame within the bound.
    let mut offset = 0;
    for m in split.iter().filter_map(|r| r.as_ref().ok()) {
        let len = u32::from_be_bytes(bytes[offset + 1..offset + 5].try_into().unwrap()) as usize;
        assert!(len <= MAX, "a message of {len} bytes was read");
        let _ = m;
        offset += 5 + len;
    }
});
