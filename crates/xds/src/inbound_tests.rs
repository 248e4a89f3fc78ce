use std::collections::VecDeque;

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use futures::StreamExt;
use prost::bytes::Bytes;

use super::*;

fn request(i: usize, names: usize) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: format!("type/{i}"),
        resource_names: (0..names).map(|n| format!("team-{i}/svc-{n}")).collect(),
        ..Default::default()
    }
}

fn framed(m: &DiscoveryRequest) -> Vec<u8> {
    let body = m.encode_to_vec();
    let mut out = vec![0];
    out.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn reader(frames: Vec<Vec<u8>>, max: usize) -> Inbound<Chunks, DiscoveryRequest> {
    Inbound::new(
        Chunks(frames.into_iter().map(|f| Ok(Bytes::from(f))).collect()),
        max,
    )
}

async fn all(mut r: Inbound<Chunks, DiscoveryRequest>) -> Vec<Result<DiscoveryRequest, Status>> {
    let mut out = Vec::new();
    while let Some(m) = r.next().await {
        out.push(m);
    }
    out
}

#[tokio::test]
async fn messages_decode_however_the_bytes_are_split() {
    let sent: Vec<DiscoveryRequest> = (0..4).map(|i| request(i, 50 * i)).collect();
    let wire: Vec<u8> = sent.iter().flat_map(framed).collect();
    // One frame for everything, a frame per byte, and uneven frames across boundaries.
    for size in [wire.len(), 1, 7, 4096] {
        let frames = wire.chunks(size).map(<[u8]>::to_vec).collect();
        let got: Vec<DiscoveryRequest> = all(reader(frames, 1 << 20))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, sent, "frames of {size} bytes");
    }
}

#[tokio::test]
async fn an_idle_stream_holds_no_buffer() {
    let big = framed(&request(1, 2000));
    let mut r = reader(big.chunks(16 * 1024).map(<[u8]>::to_vec).collect(), 1 << 20);
    assert_eq!(r.next().await.unwrap().unwrap().resource_names.len(), 2000);
    assert_eq!(r.buf.capacity(), 0, "the request's buffer outlived it");
    // A message that ends mid-frame keeps only what the next one needs.
    let mut two = framed(&request(2, 10));
    two.extend_from_slice(&framed(&request(3, 10))[..3]);
    let mut r = reader(vec![two], 1 << 20);
    assert_eq!(r.next().await.unwrap().unwrap().type_url, "type/2");
    assert_eq!(r.buf.len(), 3);
}

#[tokio::test]
async fn an_oversized_length_is_refused_before_its_bytes_arrive() {
    // Only the header: the declared length alone ends the stream.
    let head = [0u8, 0, 0x10, 0, 1].to_vec();
    let got = all(reader(vec![head], 1 << 20)).await;
    assert_eq!(got.len(), 1);
    let status = got[0].as_ref().unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange);
    assert!(status.message().contains("1048577"), "{}", status.message());
}

#[tokio::test]
async fn compressed_and_unknown_flags_are_refused() {
    for (flag, says) in [(1u8, "compressed-flag"), (7, "invalid compression flag: 7")] {
        let mut m = framed(&request(1, 1));
        m[0] = flag;
        // The error ends the stream: what follows is never read.
        let got = all(reader(vec![m, framed(&request(2, 1))], 1 << 20)).await;
        assert_eq!(got.len(), 1, "flag {flag}");
        let status = got[0].as_ref().unwrap_err();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(status.message().contains(says), "{}", status.message());
    }
}

#[tokio::test]
async fn truncated_and_malformed_messages_end_the_stream() {
    let whole = framed(&request(1, 5));
    let got = all(reader(vec![whole[..whole.len() - 1].to_vec()], 1 << 20)).await;
    let status = got[0].as_ref().unwrap_err();
    assert!(status.message().contains("Unexpected EOF"), "{status}");

    // A length-delimited field (tag 1, type_url) claiming more bytes than the message has.
    let garbage = vec![0, 0, 0, 0, 2, 0x0a, 0x7f];
    let got = all(reader(vec![garbage], 1 << 20)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].as_ref().unwrap_err().code(), tonic::Code::Internal);

    let failing = Chunks(VecDeque::from([Err(Status::cancelled("peer reset"))]));
    let got: Vec<_> = Inbound::<_, DiscoveryRequest>::new(failing, 1 << 20)
        .collect()
        .await;
    assert_eq!(got.len(), 1);
    assert!(
        got[0]
            .as_ref()
            .unwrap_err()
            .message()
            .contains("peer reset")
    );
}
