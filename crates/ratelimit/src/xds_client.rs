//! Limits from the control plane: a State-of-the-World ADS client subscribed
//! (wildcard) to [`TYPE_URL`]. Every response is a full set: it is validated and
//! swapped in as a whole and ACKed, or NACKed with the reason while the previous set
//! stays in force. When the control plane is away the last applied set keeps serving
//! and the client reconnects with exponential backoff and jitter.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::backoff::Backoff;
use crate::limit::Defaults;
use crate::metrics::Metrics;
use crate::pb;
use crate::portcullis_config::TYPE_URL;
use crate::table::{LimitTable, apply_rate_limit_configs};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;
/// google.rpc.Code INVALID_ARGUMENT, for NACKs.
const INVALID_ARGUMENT: i32 = 3;

#[derive(Debug, Clone)]
pub struct XdsClientConfig {
    /// The control plane's ADS address, e.g. `http://127.0.0.1:18000`.
    pub addr: String,
    pub node_id: String,
    pub defaults: Defaults,
    /// First reconnect delay; doubles up to `max_backoff` (with jitter).
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Client certificate and CA for an `https://` address.
    pub tls: Option<portcullis_tls::mtls::ClientTls>,
}

/// The xDS client's TLS from `--xds-tls-cert`, `--xds-tls-key` and `--xds-ca`: all three
/// for an `https://` address, none for `http://`.
pub fn client_tls(
    args: &crate::Args,
    addr: &str,
) -> anyhow::Result<Option<portcullis_tls::mtls::ClientTls>> {
    let files = (&args.xds_tls_cert, &args.xds_tls_key, &args.xds_ca);
    let https = addr.starts_with("https://");
    match files {
        (Some(cert), Some(key), Some(ca)) if https => portcullis_tls::mtls::ClientTls::load(
            cert,
            key,
            ca,
            ["--xds-tls-cert", "--xds-tls-key", "--xds-ca"],
        )
        .map(Some)
        .map_err(anyhow::Error::msg),
        (None, None, None) if !https => Ok(None),
        _ if https => anyhow::bail!(
            "--xds-addr {addr} is https://: give --xds-tls-cert, --xds-tls-key and --xds-ca \
             (the control plane requires a client certificate naming --node-id)"
        ),
        _ => anyhow::bail!(
            "--xds-tls-cert/--xds-tls-key/--xds-ca need an https:// --xds-addr (got {addr})"
        ),
    }
}

impl XdsClientConfig {
    pub fn new(addr: impl Into<String>, node_id: impl Into<String>, defaults: Defaults) -> Self {
        XdsClientConfig {
            addr: addr.into(),
            node_id: node_id.into(),
            defaults,
            base_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            tls: None,
        }
    }
}

/// Runs until `shutdown` resolves.
pub async fn run_xds_client(
    cfg: XdsClientConfig,
    table: Arc<LimitTable>,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut backoff = Backoff::new(cfg.base_backoff, cfg.max_backoff);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            r = session(&cfg, &table, &metrics, &mut backoff) => match r {
                Ok(()) => tracing::info!(addr = %cfg.addr, "control plane closed the ADS stream"),
                Err(e) => tracing::warn!(addr = %cfg.addr, error = %e, "ADS stream failed; keeping the last applied limits"),
            },
        }
        let wait = backoff.next_delay();
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One ADS stream, from connect to its end.
async fn session(
    cfg: &XdsClientConfig,
    table: &LimitTable,
    metrics: &Metrics,
    backoff: &mut Backoff,
) -> anyhow::Result<()> {
    let endpoint = tonic::transport::Endpoint::from_shared(cfg.addr.clone())?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    let channel = match &cfg.tls {
        Some(tls) => portcullis_tls::mtls::channel(endpoint, tls).await?,
        None => endpoint.connect().await?,
    };
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_SIZE);
    let (tx, rx) = mpsc::channel(4);
    // Saying which version we hold lets a control plane with the same content skip
    // re-sending it after a reconnect.
    let mut accepted = table.version().unwrap_or_default();
    tx.send(request(cfg, &accepted, "", None)).await?;
    let mut stream = client
        .stream_aggregated_resources(ReceiverStream::new(rx))
        .await?
        .into_inner();
    tracing::info!(addr = %cfg.addr, node = %cfg.node_id, "ADS stream open");
    while let Some(resp) = stream.message().await? {
        backoff.reset();
        if resp.type_url != TYPE_URL {
            continue;
        }
        let reply = match apply(&resp, table, cfg.defaults) {
            Ok(limits) => {
                accepted = resp.version_info.clone();
                metrics.config_applied("xds", &accepted, limits);
                tracing::info!(version = %accepted, limits, "rate-limit config applied");
                request(cfg, &accepted, &resp.nonce, None)
            }
            Err(message) => {
                metrics.config_refused("xds");
                tracing::warn!(version = %resp.version_info, %message, "rate-limit config refused (NACK)");
                request(cfg, &accepted, &resp.nonce, Some(message))
            }
        };
        tx.send(reply).await?;
    }
    Ok(())
}

fn apply(
    resp: &DiscoveryResponse,
    table: &LimitTable,
    defaults: Defaults,
) -> Result<usize, String> {
    let mut configs = Vec::with_capacity(resp.resources.len());
    for any in &resp.resources {
        if any.type_url != TYPE_URL {
            return Err(format!(
                "resource of type {} in a {TYPE_URL} response",
                any.type_url
            ));
        }
        configs.push(
            pb::RateLimitConfig::decode(any.value.as_slice())
                .map_err(|e| format!("decoding RateLimitConfig: {e}"))?,
        );
    }
    apply_rate_limit_configs(table, &configs, &resp.version_info, defaults)
        .map_err(|e| e.to_string())?;
    Ok(configs.len())
}

fn request(
    cfg: &XdsClientConfig,
    version: &str,
    nonce: &str,
    error: Option<String>,
) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: version.to_string(),
        node: Some(Node {
            id: cfg.node_id.clone(),
            cluster: "portcullis-ratelimit".into(),
            ..Default::default()
        }),
        type_url: TYPE_URL.to_string(),
        response_nonce: nonce.to_string(),
        error_detail: error.map(|message| RpcStatus {
            code: INVALID_ARGUMENT,
            message,
            details: vec![],
        }),
        ..Default::default()
    }
}
