//! The streams' send side: response heads, bodies within the flow-control windows,
//! trailers; and the WINDOW_UPDATEs for what request bodies have read.
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};

use super::{BoxError, Conn, Handler, OUT_HIGH, Output, ResponseBody, Sent, lock};
use crate::frame::{self, Code};
use crate::hpack;

impl<IO, S, B, E> Conn<IO, S, B, E>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: Handler<B>,
    B: ResponseBody,
    E: Clone + Send + Sync + 'static,
{
    /// Credits what bodies read, and runs every stream's send side.
    pub(super) fn poll_streams(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        let half_stream = (self.limits.stream_window / 2) as usize;
        let mut i = 0;
        while i < self.streams.len() {
            let s = &mut self.streams[i];
            let taken = lock(&s.inbox).take_credit(cx.waker());
            self.conn_credit += taken;
            s.recv_credit += taken;
            if s.recv_open && s.recv_credit > 0 && s.recv_credit >= half_stream {
                frame::window_update(&mut self.scratch, s.id, s.recv_credit as u32);
                s.recv_window += s.recv_credit as i64;
                s.recv_credit = 0;
                progress = true;
            }
            match self.poll_send(i, cx) {
                (Sent::Waiting, p) => {
                    progress |= p;
                    i += 1;
                }
                (Sent::Done, _) => {
                    progress = true;
                    let (id, recv_open) = (self.streams[i].id, self.streams[i].recv_open);
                    self.remove_stream(i);
                    if recv_open {
                        // The response is complete: the request's rest is not needed.
                        frame::rst_stream(&mut self.scratch, id, Code::NoError);
                    }
                }
            }
        }
        if self.conn_credit > 0 && self.conn_credit >= (self.limits.connection_window / 2) as usize
        {
            frame::window_update(&mut self.scratch, 0, self.conn_credit as u32);
            self.conn_recv += self.conn_credit as i64;
            self.conn_credit = 0;
            progress = true;
        }
        progress
    }

    /// Runs stream `i`'s send side as far as the windows and the queue allow.
    fn poll_send(&mut self, i: usize, cx: &mut Context<'_>) -> (Sent, bool) {
        let mut progress = false;
        loop {
            let s = &mut self.streams[i];
            let id = s.id;
            match &mut s.send {
                Output::Head(future) => match Pin::new(future).poll(cx) {
                    Poll::Pending => return (Sent::Waiting, progress),
                    Poll::Ready(Err(e)) => {
                        let e: BoxError = e.into();
                        tracing::warn!(stream = id, "service failed: {e}");
                        frame::rst_stream(&mut self.scratch, id, Code::Internal);
                        s.recv_open = false;
                        return (Sent::Done, true);
                    }
                    Poll::Ready(Ok(response)) => {
                        progress = true;
                        let (parts, body) = response.into_parts();
                        let mut block = Vec::new();
                        hpack::encode_response(parts.status, &parts.headers, &mut block);
                        let end = body.is_end_stream();
                        frame::headers(&mut self.scratch, id, &block, end, self.peer_max_frame);
                        if end {
                            return (Sent::Done, true);
                        }
                        s.send = Output::Body { body, chunk: None };
                    }
                },
                Output::Body { body, chunk } => {
                    if let Some(c) = chunk {
                        let room = s
                            .send_window
                            .min(self.conn_send)
                            .min(self.peer_max_frame as i64);
                        if room <= 0 {
                            return (Sent::Waiting, progress);
                        }
                        let piece = c.split_to(c.len().min(room as usize));
                        if c.is_empty() {
                            *chunk = None;
                        }
                        s.send_window -= piece.len() as i64;
                        self.conn_send -= piece.len() as i64;
                        frame::put_head(&mut self.scratch, piece.len(), frame::DATA, 0, id);
                        self.push_out(piece);
                        progress = true;
                        continue;
                    }
                    if self.out_len + self.scratch.len() >= OUT_HIGH {
                        return (Sent::Waiting, progress);
                    }
                    match Pin::new(body).poll_frame(cx) {
                        Poll::Pending => return (Sent::Waiting, progress),
                        Poll::Ready(Some(Ok(f))) => {
                            progress = true;
                            match f.into_data() {
                                Ok(data) => {
                                    if !data.is_empty() {
                                        *chunk = Some(data);
                                    }
                                }
                                Err(f) => {
                                    let trailers = f.into_trailers().unwrap_or_default();
                                    let mut block = Vec::new();
                                    hpack::encode_trailers(&trailers, &mut block);
                                    frame::headers(
                                        &mut self.scratch,
                                        id,
                                        &block,
                                        true,
                                        self.peer_max_frame,
                                    );
                                    return (Sent::Done, true);
                                }
                            }
                        }
                        Poll::Ready(None) => {
                            frame::put_head(
                                &mut self.scratch,
                                0,
                                frame::DATA,
                                frame::END_STREAM,
                                id,
                            );
                            return (Sent::Done, true);
                        }
                        Poll::Ready(Some(Err(e))) => {
                            let e: BoxError = e.into();
                            tracing::debug!(stream = id, "response body failed: {e}");
                            frame::rst_stream(&mut self.scratch, id, Code::Internal);
                            s.recv_open = false;
                            return (Sent::Done, true);
                        }
                    }
                }
            }
        }
    }
}
