//! The HTTP/2 response body of an ADS stream, written without tonic's encoder.
//!
//! tonic encodes each message into a per-stream buffer that keeps the capacity of the
//! largest message it has written for as long as the stream lives: with a 1 MiB
//! snapshot, every connected Envoy would pin about 1 MiB. This body hands HTTP/2 the
//! gRPC frames as chunks ([`crate::wire::Framed`]), large resources being the snapshot's
//! own bytes and small ones gathered into ~16 KiB chunks only as HTTP/2 asks for more, so
//! a stream holds at most a chunk in flight and an idle one no buffer at all.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use http_body::Frame;
use prost::bytes::Bytes;
use tonic::Status;
use tonic::codegen::http::HeaderMap;

use crate::wire::{Chunks, Framed};

/// Writes a stream's responses as gRPC frames, then its closing status (or OK once it
/// ends) as trailers.
pub(crate) struct FramedBody<St, R> {
    /// `None` once the trailers are written: the stream and its state are gone then.
    responses: Option<St>,
    /// The response being written and its next piece.
    current: Option<(R, usize)>,
    chunks: Chunks,
    max_message_size: usize,
}

impl<St, R> FramedBody<St, R> {
    pub(crate) fn new(responses: St, max_message_size: usize) -> Self {
        FramedBody {
            responses: Some(responses),
            current: None,
            chunks: Chunks::default(),
            max_message_size,
        }
    }
}

fn trailers(status: &Status) -> Frame<Bytes> {
    let mut map = HeaderMap::new();
    if let Err(bad) = status.add_header(&mut map) {
        // Only a status whose message cannot be a header value gets here.
        tracing::warn!(status = %bad, "could not write the gRPC status as trailers");
        map.insert(Status::GRPC_STATUS, (tonic::Code::Internal as i32).into());
    }
    Frame::trailers(map)
}

impl<St, R> http_body::Body for FramedBody<St, R>
where
    St: Stream<Item = Result<R, Status>> + Unpin,
    R: Framed + Unpin,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        loop {
            if let Some(chunk) = this.chunks.pop() {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            // Fill the next chunk only now that HTTP/2 asks for it.
            if let Some((resp, next)) = &mut this.current {
                if *next < resp.pieces() {
                    resp.piece(*next, &mut this.chunks);
                    *next += 1;
                } else {
                    this.chunks.flush();
                    this.current = None;
                }
                continue;
            }
            let Some(responses) = &mut this.responses else {
                return Poll::Ready(None);
            };
            let status = match responses.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(resp))) => {
                    let len = resp.encoded_len();
                    if len <= this.max_message_size {
                        this.chunks.start(len);
                        this.current = Some((resp, 0));
                        continue;
                    }
                    // What tonic's encoder answers for an oversized message.
                    Status::out_of_range(format!(
                        "Error, encoded message length too large: found {len} bytes, the limit is: {} bytes",
                        this.max_message_size
                    ))
                }
                Poll::Ready(Some(Err(status))) => status,
                Poll::Ready(None) => Status::ok(""),
            };
            this.responses = None;
            return Poll::Ready(Some(Ok(trailers(&status))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.responses.is_none() && self.current.is_none()
    }
}
