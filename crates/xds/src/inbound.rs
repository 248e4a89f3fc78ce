//! The requests of an ADS stream, read without tonic's decoder.
//!
//! tonic decodes into a per-stream buffer that keeps the capacity of the largest request
//! for as long as the stream lives. An Envoy's EDS request names every cluster and is
//! sent again with each ACK, so with 2,000 clusters every connected Envoy would pin
//! ~60 KiB. This reader gathers a request's bytes only until it is complete and then
//! lets the buffer go: an idle stream holds none.

use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use http_body::Body;
use prost::Message;
use prost::bytes::{Buf, BufMut, Bytes, BytesMut};
use tonic::Status;
use tonic::codegen::StdError;

/// The gRPC message header: a compression flag and a big-endian length.
const HEADER: usize = 5;

/// The gRPC messages of a request body, decoded as `M`. Ends after the first error.
pub(crate) struct Inbound<B, M> {
    body: Pin<Box<B>>,
    /// Bytes of the message being received; empty and unallocated between messages.
    buf: BytesMut,
    max_message_size: usize,
    done: bool,
    message: PhantomData<fn() -> M>,
}

impl<B, M> Inbound<B, M> {
    pub(crate) fn new(body: B, max_message_size: usize) -> Self {
        Inbound {
            body: Box::pin(body),
            buf: BytesMut::new(),
            max_message_size,
            done: false,
            message: PhantomData,
        }
    }
}

impl<B, M: Message + Default> Inbound<B, M> {
    /// The next complete message in `buf`, if there is one. Refuses what tonic's decoder
    /// refuses, with its statuses: compressed or unknown flags, oversized lengths.
    fn next_message(&mut self) -> Result<Option<M>, Status> {
        let Some(head) = self.buf.get(..HEADER) else {
            return Ok(None);
        };
        match head[0] {
            0 => {}
            1 => {
                // The stream refuses a grpc-encoding header before it gets here.
                return Err(Status::internal(
                    "protocol error: received message with compressed-flag but no grpc-encoding was specified",
                ));
            }
            f => {
                return Err(Status::internal(format!(
                    "protocol error: received message with invalid compression flag: {f} (valid flags are 0 and 1)"
                )));
            }
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > self.max_message_size {
            return Err(Status::out_of_range(format!(
                "Error, decoded message length too large: found {len} bytes, the limit is: {} bytes",
                self.max_message_size
            )));
        }
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        let mut frame = self.buf.split_to(HEADER + len);
        frame.advance(HEADER);
        let message = M::decode(frame).map_err(|e| Status::internal(e.to_string()))?;
        if self.buf.is_empty() {
            // Release the allocation rather than keep its capacity for the next request.
            self.buf = BytesMut::new();
        }
        Ok(Some(message))
    }
}

impl<B, M> Stream for Inbound<B, M>
where
    B: Body,
    B::Error: Into<StdError>,
    M: Message + Default,
{
    type Item = Result<M, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Every field is Unpin (the body is boxed), so the reader may move freely.
        let this = Pin::into_inner(self);
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match this.next_message() {
                Ok(Some(message)) => return Poll::Ready(Some(Ok(message))),
                Ok(None) => {}
                Err(status) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(status)));
                }
            }
            match this.body.as_mut().poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers carry nothing a request needs.
                    if let Ok(mut data) = frame.into_data() {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            this.buf.put_slice(chunk);
                            let n = chunk.len();
                            data.advance(n);
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(Status::from_error(e.into()))));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    if this.buf.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(Status::internal(
                        "Unexpected EOF decoding stream.",
                    ))));
                }
            }
        }
    }
}

/// The requests `chunks` carry, read as the server reads a stream whose HTTP/2 DATA
/// frames are those chunks (the fuzz target's entry; `max_message_size` as the
/// server's bound).
#[doc(hidden)]
pub fn read_requests<M: Message + Default>(
    chunks: Vec<Vec<u8>>,
    max_message_size: usize,
) -> Vec<Result<M, Status>> {
    use futures::StreamExt;
    let body = Chunks(chunks.into_iter().map(|c| Ok(Bytes::from(c))).collect());
    futures::executor::block_on(Inbound::<_, M>::new(body, max_message_size).collect())
}

/// A body that is always ready: each chunk one DATA frame (or a body error), then the end.
struct Chunks(std::collections::VecDeque<Result<Bytes, Status>>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Status;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        Poll::Ready(self.0.pop_front().map(|c| c.map(http_body::Frame::data)))
    }
}

#[cfg(test)]
#[path = "inbound_tests.rs"]
mod tests;
