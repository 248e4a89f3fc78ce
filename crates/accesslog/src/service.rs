//! `envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs`: Envoy streams
//! batches of entries and expects no answer; each entry becomes a scrubbed record
//! pushed onto the queue.
use std::{future::Future, sync::Arc};

use envoy_types::pb::envoy::service::accesslog::v3::{
    StreamAccessLogsMessage, StreamAccessLogsResponse,
    access_log_service_server::{AccessLogService, AccessLogServiceServer},
    stream_access_logs_message::LogEntries,
};
use tonic::{Request, Response, Status, Streaming};

use crate::{
    metrics::Metrics,
    queue::Queue,
    record::{AccessRecord, Scrub},
};

#[derive(Clone)]
pub struct Als {
    queue: Queue,
    scrub: Arc<Scrub>,
    metrics: Metrics,
}

impl Als {
    pub fn new(queue: Queue, scrub: Scrub, metrics: Metrics) -> Als {
        Als {
            queue,
            scrub: Arc::new(scrub),
            metrics,
        }
    }
}

/// Keeps the open-stream gauge right however the stream ends.
struct StreamGuard(prometheus::IntGauge);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[tonic::async_trait]
impl AccessLogService for Als {
    async fn stream_access_logs(
        &self,
        request: Request<Streaming<StreamAccessLogsMessage>>,
    ) -> Result<Response<StreamAccessLogsResponse>, Status> {
        self.metrics.streams.inc();
        let _guard = StreamGuard(self.metrics.streams.clone());
        let mut stream = request.into_inner();
        // Envoy names itself in the first message of a stream only.
        let mut node = String::new();
        while let Some(message) = stream.message().await? {
            if let Some(id) = message.identifier {
                node = id.node.map(|n| n.id).unwrap_or_default();
            }
            match message.log_entries {
                Some(LogEntries::HttpLogs(logs)) => {
                    for entry in logs.log_entry {
                        self.queue
                            .push(AccessRecord::from_entry(entry, &node, &self.scrub));
                    }
                }
                Some(LogEntries::TcpLogs(_)) => {
                    tracing::debug!(node, "TCP access log entries are not recorded");
                }
                None => {}
            }
        }
        Ok(Response::new(StreamAccessLogsResponse {}))
    }
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    transport: &portcullis_tls::mtls::Transport,
    service: Als,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(AccessLogServiceServer::new(service))
        .serve_with_incoming_shutdown(
            portcullis_tls::mtls::incoming(listener, transport),
            shutdown,
        )
        .await
}
