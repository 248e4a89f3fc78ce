//! Portcullis access log service: Envoy's gRPC access log stream (ALS) in, one
//! scrubbed JSON record per request out, to stdout, a file or Kafka.
//!
//! Request flow: [`service::Als`] turns each `HTTPAccessLogEntry` into an
//! [`AccessRecord`] (scrubbing there, before anything is queued) and pushes it onto
//! a bounded [`queue`] that drops and counts rather than waits; one task drains the
//! queue in batches into the [`sink`].
#![forbid(unsafe_code)]

mod kafka;
mod metrics;
pub mod queue;
pub mod record;
pub mod service;
pub mod sink;

use std::{future::Future, net::SocketAddr};

use anyhow::Context;
use prometheus::Registry;

pub use metrics::Metrics;
pub use record::{AccessRecord, Scrub};
pub use sink::{Sink, SinkSpec};

#[derive(clap::Parser, Clone, Debug)]
pub struct Args {
    /// gRPC address Envoy streams access logs to. Formerly PORTCULLIS_ACCESSLOG_ADDR
    /// (still read, with a warning; on the control plane that name now points at
    /// this service, like PORTCULLIS_AUTHZ_ADDR).
    #[arg(
        long,
        env = "PORTCULLIS_ACCESSLOG_GRPC_ADDR",
        default_value = "0.0.0.0:18090"
    )]
    pub grpc_addr: SocketAddr,
    /// mTLS of the gRPC port (--tls-cert, --tls-key, --client-ca, --insecure).
    #[command(flatten)]
    pub tls: portcullis_tls::mtls::MtlsArgs,
    /// `/metrics` and `/healthz`.
    #[arg(
        long,
        env = "PORTCULLIS_ACCESSLOG_METRICS_ADDR",
        default_value = "0.0.0.0:18091"
    )]
    pub metrics_addr: SocketAddr,
    /// `stdout`, `file:PATH` or `kafka://HOST:PORT[,HOST:PORT…]/TOPIC`.
    #[arg(long, env = "PORTCULLIS_ACCESSLOG_SINK", default_value = "stdout")]
    pub sink: SinkSpec,
    /// Records held for the sink; beyond this they are dropped (and counted).
    #[arg(long, env = "PORTCULLIS_ACCESSLOG_QUEUE", default_value_t = 10_000)]
    pub queue: usize,
    /// Headers whose values are replaced by `[scrubbed]`, comma-separated; added to
    /// authorization, proxy-authorization, cookie, set-cookie and x-api-key.
    #[arg(
        long,
        env = "PORTCULLIS_ACCESSLOG_SCRUB",
        value_delimiter = ',',
        default_value = ""
    )]
    pub scrub: Vec<String>,
}

/// Serves until `shutdown`, then writes what is queued and returns.
pub async fn run(
    args: Args,
    grpc: tokio::net::TcpListener,
    metrics_http: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let transport = args.tls.transport(grpc.local_addr()?, "--grpc-addr")?;
    let registry = Registry::new();
    let metrics = Metrics::new(&registry)?;
    let sink = Sink::open(&args.sink).await?;
    let scrub = Scrub::new(
        Scrub::DEFAULT.iter().copied().chain(
            args.scrub
                .iter()
                .map(String::as_str)
                .filter(|s| !s.is_empty()),
        ),
    );
    let (queue, rx) = queue::queue(args.queue, metrics.clone());
    let drain = tokio::spawn(queue::drain(rx, sink, metrics.clone()));
    let stop = portcullis_process::Shutdown::new(shutdown);
    tracing::info!(grpc = ?grpc.local_addr().ok(), sink = ?args.sink, ?transport, "access log service serving");
    let (g, h) = tokio::join!(
        service::serve(
            grpc,
            &transport,
            service::Als::new(queue, scrub, metrics),
            stop.signal()
        ),
        portcullis_process::serve_metrics(metrics_http, registry, stop.signal()),
    );
    g.context("gRPC server")?;
    h.context("HTTP server")?;
    // The server and its streams are gone, and with them every sender: the drain
    // finishes what is queued.
    drain.await.context("access log writer")?;
    Ok(())
}

/// [`run`] on the addresses in `args`.
pub async fn run_bound(
    args: Args,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grpc = portcullis_process::bind(args.grpc_addr, "--grpc-addr").await?;
    let http = portcullis_process::bind(args.metrics_addr, "--metrics-addr").await?;
    run(args, grpc, http, shutdown).await
}
