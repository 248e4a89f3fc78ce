//! Frames read from the peer: what each kind does to the connection and its streams.
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::{
    Block, Conn, Fail, Handler, Inbox, KEEPALIVE, MAX_EMPTY_DATA, Output, RecvBody, ResponseBody,
    SharedInbox, Stream, lock,
};
use crate::frame::{self, Code, Head};
use crate::hpack::{self, BlockError};

impl<IO, S, B, E> Conn<IO, S, B, E>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: Handler<B>,
    B: ResponseBody,
    E: Clone + Send + Sync + 'static,
{
    pub(super) fn on_frame(
        &mut self,
        head: Head,
        payload: Bytes,
        cx: &mut Context<'_>,
    ) -> Result<(), Fail> {
        if !self.settled && (head.kind != frame::SETTINGS || head.has(frame::ACK)) {
            return Err(Fail::Conn(
                Code::Protocol,
                "the first frame must be SETTINGS",
            ));
        }
        if let Some(block) = &mut self.block {
            if head.kind != frame::CONTINUATION || head.stream != block.stream {
                return Err(Fail::Conn(Code::Protocol, "a header block was interrupted"));
            }
            if block.bytes.len() + payload.len() > self.limits.max_header_list {
                return Err(Fail::Conn(
                    Code::EnhanceYourCalm,
                    "header block over the limit",
                ));
            }
            block.bytes.extend_from_slice(&payload);
            if head.has(frame::END_HEADERS) {
                let block = self.block.take().expect("checked above");
                self.on_headers(block.stream, block.end_stream, &block.bytes, cx)?;
            }
            return Ok(());
        }
        match head.kind {
            frame::DATA => self.on_data(head, payload),
            frame::HEADERS => {
                if head.stream == 0 {
                    return Err(Fail::Conn(Code::Protocol, "HEADERS on stream 0"));
                }
                let block = frame::unpad(&head, payload)
                    .map_err(|code| Fail::Conn(code, "bad HEADERS padding or priority"))?;
                let end_stream = head.has(frame::END_STREAM);
                if head.has(frame::END_HEADERS) {
                    self.on_headers(head.stream, end_stream, &block, cx)
                } else {
                    if block.len() > self.limits.max_header_list {
                        return Err(Fail::Conn(
                            Code::EnhanceYourCalm,
                            "header block over the limit",
                        ));
                    }
                    self.block = Some(Block {
                        stream: head.stream,
                        end_stream,
                        bytes: block.to_vec(),
                    });
                    Ok(())
                }
            }
            frame::PRIORITY => {
                if head.stream == 0 {
                    return Err(Fail::Conn(Code::Protocol, "PRIORITY on stream 0"));
                }
                if payload.len() != 5 {
                    self.reset_stream(head.stream, Code::FrameSize);
                }
                Ok(())
            }
            frame::RST_STREAM => self.on_reset(head, &payload),
            frame::SETTINGS => self.on_settings(head, &payload),
            frame::PUSH_PROMISE => Err(Fail::Conn(Code::Protocol, "a client sent PUSH_PROMISE")),
            frame::PING => {
                if head.stream != 0 {
                    return Err(Fail::Conn(Code::Protocol, "PING on a stream"));
                }
                let Ok(data) = <[u8; 8]>::try_from(&payload[..]) else {
                    return Err(Fail::Conn(Code::FrameSize, "PING is not 8 bytes"));
                };
                if !head.has(frame::ACK) {
                    frame::ping(&mut self.scratch, true, data);
                } else if data == KEEPALIVE && self.ping_out {
                    self.ping_out = false;
                    if !self.going_away {
                        self.timer
                            .as_mut()
                            .reset(Instant::now() + self.limits.keepalive_interval);
                    }
                }
                Ok(())
            }
            frame::GOAWAY => {
                if head.stream != 0 {
                    return Err(Fail::Conn(Code::Protocol, "GOAWAY on a stream"));
                }
                self.peer_gone = true;
                Ok(())
            }
            frame::WINDOW_UPDATE => self.on_window_update(head, &payload),
            frame::CONTINUATION => Err(Fail::Conn(Code::Protocol, "CONTINUATION without HEADERS")),
            // Unknown frame types are ignored (RFC 9113 §4.1).
            _ => Ok(()),
        }
    }

    fn on_settings(&mut self, head: Head, payload: &[u8]) -> Result<(), Fail> {
        if head.stream != 0 {
            return Err(Fail::Conn(Code::Protocol, "SETTINGS on a stream"));
        }
        if head.has(frame::ACK) {
            return if payload.is_empty() {
                Ok(())
            } else {
                Err(Fail::Conn(Code::FrameSize, "SETTINGS ACK with a payload"))
            };
        }
        if !payload.len().is_multiple_of(6) {
            return Err(Fail::Conn(
                Code::FrameSize,
                "SETTINGS length not a multiple of 6",
            ));
        }
        for setting in payload.chunks_exact(6) {
            let id = u16::from_be_bytes([setting[0], setting[1]]);
            let value = u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
            match id {
                frame::SETTINGS_ENABLE_PUSH if value > 1 => {
                    return Err(Fail::Conn(
                        Code::Protocol,
                        "SETTINGS_ENABLE_PUSH not 0 or 1",
                    ));
                }
                frame::SETTINGS_INITIAL_WINDOW_SIZE => {
                    let value = i64::from(value);
                    if value > frame::MAX_WINDOW {
                        return Err(Fail::Conn(
                            Code::FlowControl,
                            "SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1",
                        ));
                    }
                    let delta = value - self.peer_window;
                    self.peer_window = value;
                    for s in &mut self.streams {
                        s.send_window += delta;
                        if s.send_window > frame::MAX_WINDOW {
                            return Err(Fail::Conn(
                                Code::FlowControl,
                                "a stream window over 2^31-1",
                            ));
                        }
                    }
                }
                frame::SETTINGS_MAX_FRAME_SIZE => {
                    if !(frame::MIN_MAX_FRAME_SIZE as u32..=frame::MAX_MAX_FRAME_SIZE)
                        .contains(&value)
                    {
                        return Err(Fail::Conn(
                            Code::Protocol,
                            "SETTINGS_MAX_FRAME_SIZE out of range",
                        ));
                    }
                    self.peer_max_frame = value as usize;
                }
                // Ours is a literal-only encoder: the peer's table size does not matter.
                _ => {}
            }
        }
        frame::settings_ack(&mut self.scratch);
        if !self.settled {
            self.settled = true;
            self.timer
                .as_mut()
                .reset(Instant::now() + self.limits.keepalive_interval);
        }
        Ok(())
    }

    fn on_window_update(&mut self, head: Head, payload: &[u8]) -> Result<(), Fail> {
        let Some(value) = frame::read_u32(payload) else {
            return Err(Fail::Conn(Code::FrameSize, "WINDOW_UPDATE is not 4 bytes"));
        };
        let inc = i64::from(value & 0x7fff_ffff);
        if head.stream == 0 {
            if inc == 0 {
                return Err(Fail::Conn(Code::Protocol, "WINDOW_UPDATE of 0"));
            }
            self.conn_send += inc;
            if self.conn_send > frame::MAX_WINDOW {
                return Err(Fail::Conn(
                    Code::FlowControl,
                    "connection window over 2^31-1",
                ));
            }
            return Ok(());
        }
        match self.find(head.stream) {
            Some(i) => {
                let s = &mut self.streams[i];
                s.send_window += inc;
                if inc == 0 {
                    self.reset_stream(head.stream, Code::Protocol);
                } else if s.send_window > frame::MAX_WINDOW {
                    self.reset_stream(head.stream, Code::FlowControl);
                }
                Ok(())
            }
            None if head.stream > self.last_stream => Err(Fail::Conn(
                Code::Protocol,
                "WINDOW_UPDATE on an idle stream",
            )),
            None => Ok(()),
        }
    }

    fn on_reset(&mut self, head: Head, payload: &[u8]) -> Result<(), Fail> {
        if head.stream == 0 {
            return Err(Fail::Conn(Code::Protocol, "RST_STREAM on stream 0"));
        }
        if payload.len() != 4 {
            return Err(Fail::Conn(Code::FrameSize, "RST_STREAM is not 4 bytes"));
        }
        match self.find(head.stream) {
            Some(i) => {
                self.remove_stream(i);
                self.resets += 1;
                if self.resets > self.limits.max_resets {
                    return Err(Fail::Conn(
                        Code::EnhanceYourCalm,
                        "too many streams reset by the client",
                    ));
                }
                Ok(())
            }
            None if head.stream > self.last_stream => {
                Err(Fail::Conn(Code::Protocol, "RST_STREAM on an idle stream"))
            }
            None => Ok(()),
        }
    }

    fn on_data(&mut self, head: Head, payload: Bytes) -> Result<(), Fail> {
        if head.stream == 0 {
            return Err(Fail::Conn(Code::Protocol, "DATA on stream 0"));
        }
        let len = head.len;
        self.conn_recv -= len as i64;
        if self.conn_recv < 0 {
            return Err(Fail::Conn(
                Code::FlowControl,
                "DATA past the connection window",
            ));
        }
        let data =
            frame::unpad(&head, payload).map_err(|code| Fail::Conn(code, "bad DATA padding"))?;
        let padding = len - data.len();
        let end = head.has(frame::END_STREAM);
        let Some(i) = self.find(head.stream) else {
            if head.stream > self.last_stream {
                return Err(Fail::Conn(Code::Protocol, "DATA on an idle stream"));
            }
            // A stream already closed: frames in flight are dropped and credited.
            self.conn_credit += len;
            return Ok(());
        };
        if data.is_empty() && !end {
            self.empty_data += 1;
            if self.empty_data > MAX_EMPTY_DATA {
                return Err(Fail::Conn(
                    Code::EnhanceYourCalm,
                    "too many empty DATA frames",
                ));
            }
        }
        let s = &mut self.streams[i];
        if !s.recv_open {
            self.conn_credit += len;
            self.reset_stream(head.stream, Code::StreamClosed);
            return Ok(());
        }
        s.recv_window -= len as i64;
        if s.recv_window < 0 {
            self.conn_credit += len;
            self.reset_stream(head.stream, Code::FlowControl);
            return Ok(());
        }
        let dropped = lock(&s.inbox).push(data, end);
        s.recv_credit += padding + dropped;
        self.conn_credit += padding + dropped;
        if end {
            s.recv_open = false;
        }
        Ok(())
    }

    fn on_headers(
        &mut self,
        id: u32,
        end_stream: bool,
        block: &[u8],
        cx: &mut Context<'_>,
    ) -> Result<(), Fail> {
        if id.is_multiple_of(2) {
            return Err(Fail::Conn(
                Code::Protocol,
                "a client opened an even stream id",
            ));
        }
        let decoded = hpack::decode_request(&mut self.decoder, block, self.limits.max_header_list);
        if matches!(decoded, Err(BlockError::Compression)) {
            return Err(Fail::Conn(
                Code::Compression,
                "header block does not decode",
            ));
        }
        if let Some(i) = self.find(id) {
            // Trailers: they must end the stream; their fields are not passed on.
            if !end_stream || !self.streams[i].recv_open {
                self.reset_stream(id, Code::Protocol);
            } else {
                let s = &mut self.streams[i];
                s.recv_open = false;
                lock(&s.inbox).push(Bytes::new(), true);
            }
            return Ok(());
        }
        if id <= self.last_stream {
            // A stream already closed; its block was decoded to keep HPACK in step.
            return Ok(());
        }
        self.last_stream = id;
        if self.going_away
            || self.peer_gone
            || self.streams.len() >= self.limits.max_concurrent_streams as usize
        {
            frame::rst_stream(&mut self.scratch, id, Code::RefusedStream);
            return Ok(());
        }
        let request = match decoded {
            Ok(r) => r,
            Err(BlockError::TooLarge) => {
                let mut block = Vec::new();
                hpack::encode_response(
                    http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    &http::HeaderMap::new(),
                    &mut block,
                );
                frame::headers(&mut self.scratch, id, &block, true, self.peer_max_frame);
                if !end_stream {
                    frame::rst_stream(&mut self.scratch, id, Code::NoError);
                }
                return Ok(());
            }
            Err(e) => {
                tracing::debug!(stream = id, "malformed request: {e:?}");
                frame::rst_stream(&mut self.scratch, id, Code::Protocol);
                return Ok(());
            }
        };
        let inbox = SharedInbox::new(std::sync::Mutex::new(Inbox::default()));
        if end_stream {
            lock(&inbox).push(Bytes::new(), true);
        }
        let mut request = request.map(|()| RecvBody::new(inbox.clone()));
        request.extensions_mut().insert(self.ext.clone());
        if !matches!(self.service.poll_ready(cx), Poll::Ready(Ok(()))) {
            frame::rst_stream(&mut self.scratch, id, Code::RefusedStream);
            return Ok(());
        }
        let future = self.service.call(request);
        self.streams.push(Stream {
            id,
            inbox,
            recv_open: !end_stream,
            recv_window: i64::from(self.limits.stream_window),
            recv_credit: 0,
            send: Output::Head(future),
            send_window: self.peer_window,
        });
        Ok(())
    }
}
