//! Coalesces the store calls of concurrent requests into one write. Each call puts its
//! command on a bounded queue with a oneshot for its answer; one writer task drains
//! whatever is queued (up to `max_batch`), sends it as one batch (one Redis pipeline:
//! one `write` for the service, one `read` for Redis) and routes the answers back in
//! order. At most `in_flight` batches wait for their answers at once; while they do,
//! new calls queue up and leave together in the next batch.
//!
//! Memory is bounded: a full queue refuses the call at once with
//! [`StoreError::Overloaded`] (the limit's failure policy answers), never grows. Calls
//! whose caller gave up (store timeout) before their batch left are dropped unsent, so
//! an overload does not count requests nobody is waiting for.
use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::StoreError;

/// The answer for each command of a batch, in order; or one error for all of them.
pub type BatchReply<T> = Result<Vec<Result<T, StoreError>>, StoreError>;

struct Job<C, T> {
    cmd: C,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

/// Sizes of the queue and of the batches.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Calls waiting to be sent; one more is refused.
    pub queue: usize,
    /// Commands per batch.
    pub max_batch: usize,
    /// Batches sent and not yet answered.
    pub in_flight: usize,
}

pub struct Batcher<C, T> {
    queue: mpsc::Sender<Job<C, T>>,
}

impl<C, T> Clone for Batcher<C, T> {
    fn clone(&self) -> Self {
        Batcher {
            queue: self.queue.clone(),
        }
    }
}

impl<C: Send + 'static, T: Send + 'static> Batcher<C, T> {
    /// Starts the writer task; it stops when the last `Batcher` clone is dropped.
    /// `send` writes one batch and returns its answers.
    pub fn spawn<F, Fut>(bounds: Bounds, send: F) -> Self
    where
        F: Fn(Vec<C>) -> Fut + Send + 'static,
        Fut: Future<Output = BatchReply<T>> + Send + 'static,
    {
        let (queue, rx) = mpsc::channel(bounds.queue.max(1));
        tokio::spawn(write_loop(rx, bounds, send));
        Batcher { queue }
    }

    /// Queues `cmd` and waits for its answer. Fails at once when the queue is full.
    pub async fn call(&self, cmd: C) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Job { cmd, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => StoreError::NotConnected,
            })?;
        // The writer drops a job only when its batch task died (a panic): say so.
        answer
            .await
            .map_err(|_| StoreError::BadReply("batch writer stopped".into()))?
    }
}

async fn write_loop<C, T, F, Fut>(mut rx: mpsc::Receiver<Job<C, T>>, bounds: Bounds, send: F)
where
    C: Send + 'static,
    T: Send + 'static,
    F: Fn(Vec<C>) -> Fut,
    Fut: Future<Output = BatchReply<T>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(bounds.in_flight.max(1)));
    let max_batch = bounds.max_batch.max(1);
    loop {
        // Take a slot before draining: while every batch is out, calls accumulate.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut jobs = Vec::with_capacity(max_batch.min(rx.len() + 1));
        jobs.push(first);
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        // Nobody waits for these any more (store timeout): do not count them.
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let (cmds, replies): (Vec<C>, Vec<_>) = jobs.into_iter().map(|j| (j.cmd, j.reply)).unzip();
        let sent = send(cmds);
        tokio::spawn(async move {
            route(sent.await, replies);
            drop(slot);
        });
    }
}

fn route<T>(reply: BatchReply<T>, to: Vec<oneshot::Sender<Result<T, StoreError>>>) {
    match reply {
        Ok(answers) if answers.len() == to.len() => {
            for (tx, a) in to.into_iter().zip(answers) {
                let _ = tx.send(a);
            }
        }
        Ok(answers) => {
            let e = format!("{} answers for {} commands", answers.len(), to.len());
            for tx in to {
                let _ = tx.send(Err(StoreError::BadReply(e.clone())));
            }
        }
        Err(e) => {
            for tx in to {
                let _ = tx.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
