//! A request's body: the DATA the connection has read for a stream, handed to the
//! service as it asks. What the service takes is credited back to the peer (the
//! connection sends the WINDOW_UPDATEs), so a peer can never have more than one window
//! of unread data waiting here.
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::Frame;

/// Shared by the connection (which fills it) and the [`RecvBody`] (which drains it).
#[derive(Default)]
pub(crate) struct Inbox {
    chunks: VecDeque<Bytes>,
    /// The peer sent END_STREAM.
    ended: bool,
    /// The stream was reset before its end.
    reset: bool,
    /// Bytes taken since the connection last looked: to credit to the peer.
    taken: usize,
    /// The body is gone: whatever arrives is credited back at once.
    dropped: bool,
    body_waker: Option<Waker>,
    conn_waker: Option<Waker>,
}

pub(crate) type SharedInbox = Arc<Mutex<Inbox>>;

pub(crate) fn lock(inbox: &SharedInbox) -> MutexGuard<'_, Inbox> {
    // A panic while holding the lock leaves plain data behind; keep using it.
    inbox.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inbox {
    /// DATA arrived; returns the bytes to credit at once (when nobody will read them).
    pub(crate) fn push(&mut self, data: Bytes, end: bool) -> usize {
        let credit = if self.dropped {
            data.len()
        } else {
            if !data.is_empty() {
                self.chunks.push_back(data);
            }
            0
        };
        self.ended |= end;
        self.wake_body();
        credit
    }

    /// Takes the bytes read since the last call, and asks to be woken on the next read.
    pub(crate) fn take_credit(&mut self, waker: &Waker) -> usize {
        if !self.conn_waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            self.conn_waker = Some(waker.clone());
        }
        std::mem::take(&mut self.taken)
    }

    /// The stream is gone: a body still held ends with an error, and whatever it had
    /// not read, or read since the connection last looked, is returned for crediting.
    /// Later calls return 0.
    pub(crate) fn close(&mut self) -> usize {
        let unread: usize = self.chunks.drain(..).map(|c| c.len()).sum();
        let owed = unread + std::mem::take(&mut self.taken);
        if !self.dropped {
            self.reset = true;
            self.wake_body();
        }
        self.dropped = true;
        owed
    }

    fn wake_body(&mut self) {
        if let Some(w) = self.body_waker.take() {
            w.wake();
        }
    }

    fn wake_conn(&mut self) {
        if let Some(w) = self.conn_waker.take() {
            w.wake();
        }
    }
}

/// Why a request body ended early.
#[derive(Debug)]
pub struct RecvError;

impl std::fmt::Display for RecvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the stream was reset before its request body ended")
    }
}

impl std::error::Error for RecvError {}

/// A request's body as the service reads it.
pub struct RecvBody {
    inbox: SharedInbox,
}

impl RecvBody {
    pub(crate) fn new(inbox: SharedInbox) -> Self {
        RecvBody { inbox }
    }
}

impl http_body::Body for RecvBody {
    type Data = Bytes;
    type Error = RecvError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RecvError>>> {
        let mut inbox = lock(&self.inbox);
        if let Some(chunk) = inbox.chunks.pop_front() {
            inbox.taken += chunk.len();
            inbox.wake_conn();
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if inbox.reset {
            return Poll::Ready(Some(Err(RecvError)));
        }
        if inbox.ended {
            return Poll::Ready(None);
        }
        inbox.body_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        let inbox = lock(&self.inbox);
        inbox.ended && inbox.chunks.is_empty()
    }
}

impl Drop for RecvBody {
    fn drop(&mut self) {
        // What was never read is the connection's to credit, as if it had been.
        let mut inbox = lock(&self.inbox);
        let owed = inbox.close();
        inbox.taken += owed;
        inbox.wake_conn();
    }
}
