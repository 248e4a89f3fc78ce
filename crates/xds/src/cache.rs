//! Shared state between the producer of snapshots and the ADS streams.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::metrics::{Metrics, short_type};
use crate::nodes::{Event, NodeStatus, Protocol, Record};
use crate::snapshot::Snapshot;

/// Current snapshot plus the status of every open stream. Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    snapshot: watch::Sender<Arc<Snapshot>>,
    streams: Mutex<BTreeMap<u64, Record>>,
    status: watch::Sender<u64>,
    pub(crate) metrics: Metrics,
    next_stream_id: AtomicU64,
    pub(crate) nacks_total: AtomicU64,
    /// type URL → (its version in the current snapshot, when that version arrived),
    /// for push latency.
    installed: Mutex<BTreeMap<String, (String, Instant)>>,
    /// Benchmark baseline: each response gets its own copy of its resources.
    copy_per_stream: AtomicBool,
}

impl Cache {
    /// Create an empty cache; its metrics are registered in `registry`.
    pub fn new(registry: &prometheus::Registry) -> Cache {
        Cache {
            inner: Arc::new(Inner {
                snapshot: watch::Sender::new(Arc::new(Snapshot::empty())),
                streams: Mutex::new(BTreeMap::new()),
                status: watch::Sender::new(0),
                metrics: Metrics::new(registry),
                next_stream_id: AtomicU64::new(1),
                nacks_total: AtomicU64::new(0),
                installed: Mutex::default(),
                copy_per_stream: AtomicBool::new(false),
            }),
        }
    }

    /// Install a new snapshot. Streams are only woken when the version
    /// differs, so re-publishing identical content pushes nothing.
    pub fn set_snapshot(&self, snapshot: Snapshot) {
        let gauge = &self.inner.metrics.snapshot_resources;
        let mut previous_types = Vec::new();
        let changed = self.inner.snapshot.send_if_modified(|current| {
            if current.version() == snapshot.version() {
                return false;
            }
            previous_types = current.type_urls().map(str::to_owned).collect();
            *current = Arc::new(snapshot);
            true
        });
        if !changed {
            return;
        }
        self.inner.metrics.snapshot_updates.inc();
        let current = self.snapshot();
        // Types that vanished must read 0 rather than their stale count.
        for t in &previous_types {
            gauge.with_label_values(&[short_type(t)]).set(0);
        }
        let now = Instant::now();
        let mut installed = self.inner.installed.lock();
        for t in current.type_urls() {
            gauge
                .with_label_values(&[short_type(t)])
                .set(current.type_len(t) as i64);
            if let Some(v) = current.type_version(t)
                && installed.get(t).is_none_or(|(old, _)| old != v)
            {
                installed.insert(t.to_owned(), (v.to_owned(), now));
            }
        }
        drop(installed);
        tracing::info!(
            version = current.version(),
            resources = current.len(),
            "installed xDS snapshot"
        );
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.snapshot.borrow().clone()
    }

    /// Receiver of snapshot changes (what each ADS stream watches).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.inner.snapshot.subscribe()
    }

    /// Status of every open stream, ordered by stream id.
    pub fn nodes(&self) -> Vec<NodeStatus> {
        let streams = self.inner.streams.lock();
        streams.iter().map(|(id, r)| r.status(*id)).collect()
    }

    /// Changes whenever any node ACKs or NACKs.
    pub fn status_rx(&self) -> watch::Receiver<u64> {
        self.inner.status.subscribe()
    }

    /// Benchmark switch: give every response its own copy of the resources it carries,
    /// as every stream did before responses shared the snapshot's encodings. Only
    /// `bench-xds` turns it on, to measure that baseline in the same run.
    #[doc(hidden)]
    pub fn set_copy_per_stream(&self, on: bool) {
        self.inner.copy_per_stream.store(on, Ordering::Relaxed);
    }

    pub(crate) fn copies_per_stream(&self) -> bool {
        self.inner.copy_per_stream.load(Ordering::Relaxed)
    }

    /// Total NACKs received since start.
    pub fn nacks_total(&self) -> u64 {
        self.inner.nacks_total.load(Ordering::Relaxed)
    }

    pub(crate) fn open_stream(&self, protocol: Protocol, peer: Option<SocketAddr>) -> StreamHandle {
        let stream_id = self.inner.next_stream_id.fetch_add(1, Ordering::Relaxed);
        self.inner
            .metrics
            .connected_streams
            .with_label_values(&[protocol.as_str()])
            .inc();
        self.inner
            .streams
            .lock()
            .insert(stream_id, Record::new(protocol, peer));
        StreamHandle {
            cache: self.clone(),
            stream_id,
            protocol,
            node_id: String::new(),
            opened: Instant::now(),
        }
    }
}

/// A stream's link to the shared table; removes the entry when dropped so
/// disconnected nodes disappear however the stream ends.
pub(crate) struct StreamHandle {
    cache: Cache,
    pub(crate) stream_id: u64,
    protocol: Protocol,
    pub(crate) node_id: String,
    opened: Instant,
}

impl StreamHandle {
    /// Record the node identity (sent on the first request, usually only then).
    pub(crate) fn set_node(&mut self, id: &str, cluster: &str) {
        if id.is_empty() || id == self.node_id {
            return;
        }
        self.node_id = id.to_owned();
        if let Some(s) = self.cache.inner.streams.lock().get_mut(&self.stream_id) {
            s.id = id.to_owned();
            // Kept for every connected Envoy: a client does not choose its size.
            s.cluster = crate::limits::truncate(cluster, crate::limits::MAX_NODE_ID_LEN).to_owned();
        }
    }

    /// The node sent a request: it is alive and connected.
    pub(crate) fn seen(&self) {
        if let Some(s) = self.cache.inner.streams.lock().get_mut(&self.stream_id) {
            s.last_seen = SystemTime::now();
        }
    }

    pub(crate) fn apply(&self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        let inner = &self.cache.inner;
        let mut status_changed = false;
        for event in events {
            match event {
                Event::Sent {
                    type_url,
                    version,
                    resources,
                } => {
                    inner
                        .metrics
                        .responses
                        .with_label_values(&[short_type(type_url)])
                        .inc();
                    tracing::debug!(
                        node = %self.node_id, stream = self.stream_id, type_url, version,
                        resources, "sent xDS response"
                    );
                }
                Event::Ack { type_url, version } => {
                    status_changed = true;
                    inner
                        .metrics
                        .acks
                        .with_label_values(&[short_type(type_url)])
                        .inc();
                    tracing::debug!(
                        node = %self.node_id, stream = self.stream_id, type_url, version,
                        "xDS ACK"
                    );
                }
                Event::Nack {
                    type_url,
                    version,
                    message,
                } => {
                    status_changed = true;
                    inner.nacks_total.fetch_add(1, Ordering::Relaxed);
                    inner
                        .metrics
                        .nacks
                        .with_label_values(&[short_type(type_url)])
                        .inc();
                    tracing::warn!(
                        node = %self.node_id, stream = self.stream_id, type_url, version,
                        error = %message, "Envoy rejected xDS configuration (NACK)"
                    );
                }
            }
        }
        // One pass under the table's lock: which ACKs are this node's first of their
        // version (for push latency), and whether it started or stopped rejecting
        // something (the NACKed-streams gauge moves by the difference).
        let mut first_acks = Vec::new();
        if let Some(s) = inner.streams.lock().get_mut(&self.stream_id) {
            let had_nack = s.has_nack();
            for event in events {
                if let Event::Ack { type_url, version } = event
                    && s.acked(type_url) != Some(version)
                {
                    first_acks.push((type_url, version));
                }
                s.apply(event);
            }
            inner
                .metrics
                .nacked_streams
                .add(i64::from(s.has_nack()) - i64::from(had_nack));
        }
        for (type_url, version) in first_acks {
            self.observe_push(type_url, version);
        }
        if status_changed {
            inner.status.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Push latency: from the version arriving in a snapshot (or this stream opening,
    /// when later) to this node's first ACK of it. Versions from older snapshots are
    /// not counted.
    fn observe_push(&self, type_url: &str, version: &str) {
        let inner = &self.cache.inner;
        let since = match inner.installed.lock().get(type_url) {
            Some((v, at)) if v == version => (*at).max(self.opened),
            _ => return,
        };
        let elapsed = since.elapsed();
        inner
            .metrics
            .push_seconds
            .with_label_values(&[short_type(type_url)])
            .observe(elapsed.as_secs_f64());
        if let Some(s) = inner.streams.lock().get_mut(&self.stream_id) {
            s.set_push_ms(type_url, elapsed.as_millis().try_into().unwrap_or(u64::MAX));
        }
    }
}

impl Drop for StreamHandle {
    fn drop(&mut self) {
        let inner = &self.cache.inner;
        if inner
            .streams
            .lock()
            .remove(&self.stream_id)
            .is_some_and(|s| s.has_nack())
        {
            inner.metrics.nacked_streams.dec();
        }
        inner
            .metrics
            .connected_streams
            .with_label_values(&[self.protocol.as_str()])
            .dec();
        // A disconnect also changes what status reporting would say.
        inner.status.send_modify(|n| *n = n.wrapping_add(1));
    }
}
