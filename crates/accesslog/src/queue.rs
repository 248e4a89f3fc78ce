//! The bounded queue between Envoy's streams and the sink. Pushing never waits: a
//! full queue drops the record and counts it, so a slow or absent sink costs log
//! records, never request latency (Envoy's own ALS buffer stays drained).
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::{metrics::Metrics, record::AccessRecord, sink::Sink};

/// Records taken from the queue per sink write.
const BATCH: usize = 512;

#[derive(Clone)]
pub struct Queue {
    tx: mpsc::Sender<AccessRecord>,
    metrics: Metrics,
}

pub fn queue(capacity: usize, metrics: Metrics) -> (Queue, mpsc::Receiver<AccessRecord>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (Queue { tx, metrics }, rx)
}

impl Queue {
    pub fn push(&self, record: AccessRecord) {
        self.metrics.received.inc();
        match self.tx.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => {
                self.metrics
                    .dropped
                    .with_label_values(&["queue_full"])
                    .inc();
            }
        }
    }
}

/// Writes batches to `sink` until every [`Queue`] is gone and the queue is empty.
pub async fn drain(mut rx: mpsc::Receiver<AccessRecord>, mut sink: Sink, metrics: Metrics) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        batch.clear();
        if rx.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        metrics.queue_depth.set(rx.len() as i64);
        match sink.write(&batch).await {
            Ok(()) => metrics.written.inc_by(batch.len() as u64),
            Err(e) => {
                metrics.sink_errors.inc();
                metrics
                    .dropped
                    .with_label_values(&["sink_error"])
                    .inc_by(batch.len() as u64);
                tracing::warn!(error = %format!("{e:#}"), records = batch.len(), "access log sink write failed; records dropped");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Scrub;
    use envoy_types::pb::envoy::data::accesslog::v3::HttpAccessLogEntry;

    fn record() -> AccessRecord {
        AccessRecord::from_entry(HttpAccessLogEntry::default(), "n", &Scrub::new([]))
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let metrics = Metrics::new(&prometheus::Registry::new()).unwrap();
        let (q, rx) = queue(2, metrics.clone());
        for _ in 0..5 {
            q.push(record()); // returns at once although nothing drains
        }
        assert_eq!(metrics.received.get(), 5);
        assert_eq!(metrics.dropped.with_label_values(&["queue_full"]).get(), 3);
        // What was queued is written once a sink drains it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let sink = Sink::open(&crate::SinkSpec::File(path.clone()))
            .await
            .unwrap();
        drop(q);
        drain(rx, sink, metrics.clone()).await;
        assert_eq!(metrics.written.get(), 2);
        assert_eq!(std::fs::read_to_string(path).unwrap().lines().count(), 2);
    }

    #[tokio::test]
    async fn an_unreachable_kafka_costs_records_not_the_service() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(); // released again: nothing listens there
        let metrics = Metrics::new(&prometheus::Registry::new()).unwrap();
        let (q, rx) = queue(10, metrics.clone());
        let spec: crate::SinkSpec = format!("kafka://127.0.0.1:{port}/logs").parse().unwrap();
        let sink = Sink::open(&spec).await.unwrap();
        q.push(record());
        drop(q);
        drain(rx, sink, metrics.clone()).await;
        assert_eq!(metrics.sink_errors.get(), 1);
        assert_eq!(metrics.dropped.with_label_values(&["sink_error"]).get(), 1);
        assert_eq!(metrics.written.get(), 0);
    }
}
