//! `portcullis controller` flags. Every flag has a `PORTCULLIS_…` environment twin
//! (the chart sets those) and a default.
use std::{net::SocketAddr, path::PathBuf};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// ADS (xDS over gRPC) address Envoys connect to.
    #[arg(long, env = "PORTCULLIS_XDS_ADDR", default_value = "0.0.0.0:18000")]
    pub xds_addr: SocketAddr,
    /// mTLS of the xDS port (--tls-cert, --tls-key, --client-ca, --insecure): Envoys
    /// present a client certificate naming their node.
    #[command(flatten)]
    pub tls: portcullis_tls::mtls::MtlsArgs,
    /// Issue the components' mTLS certificates (no cert-manager): a JSON plan of the CA
    /// Secret, this server's xDS names and one Secret per component (docs/tls.md,
    /// "Kubernetes without cert-manager"). Excludes --tls-cert/--tls-key/--client-ca:
    /// the xDS port then serves a certificate from this CA.
    #[arg(long, env = "PORTCULLIS_COMPONENT_CERTS")]
    pub component_certs: Option<String>,
    /// Private directory (emptyDir) for the xDS certificate --component-certs issues.
    #[arg(
        long,
        env = "PORTCULLIS_COMPONENT_CERT_DIR",
        default_value = "/tmp/portcullis-mtls"
    )]
    pub component_cert_dir: PathBuf,
    /// Admin HTTP: /healthz, /readyz, /metrics, /debug/xds, /debug/objects.
    #[arg(long, env = "PORTCULLIS_ADMIN_ADDR", default_value = "0.0.0.0:18001")]
    pub admin_addr: SocketAddr,
    /// HTTPS admission webhook.
    #[arg(long, env = "PORTCULLIS_WEBHOOK_ADDR", default_value = "0.0.0.0:9443")]
    pub webhook_addr: SocketAddr,
    /// Namespaces to watch, comma-separated; empty means all namespaces.
    #[arg(
        long,
        env = "PORTCULLIS_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    pub namespaces: Vec<String>,
    /// Label selector Routes and Services must match (e.g. `gateway=public`); empty: all.
    #[arg(long, env = "PORTCULLIS_LABEL_SELECTOR", default_value = "")]
    pub label_selector: String,
    /// Namespace of the controller itself (the Lease lives here).
    #[arg(
        long,
        env = "PORTCULLIS_POD_NAMESPACE",
        default_value = "portcullis-system"
    )]
    pub pod_namespace: String,
    /// This replica's identity in the Lease (the pod name).
    #[arg(long, env = "PORTCULLIS_POD_NAME", default_value = "portcullis-plane")]
    pub pod_name: String,
    /// This replica's pod UID (downward API): its xDS report ConfigMap is owned by the
    /// pod, so it is deleted with it. Empty: no owner.
    #[arg(long, env = "PORTCULLIS_POD_UID", default_value = "")]
    pub pod_uid: String,
    /// Name of the Lease that elects the one status writer.
    #[arg(
        long,
        env = "PORTCULLIS_LEASE_NAME",
        default_value = "portcullis-plane"
    )]
    pub lease_name: String,
    /// Seconds a Lease holder may go without renewing before a peer takes over.
    #[arg(long, env = "PORTCULLIS_LEASE_SECONDS", default_value_t = 15)]
    pub lease_seconds: u64,
    /// Webhook certificate source: `self-signed` (made at start, caBundle patched into
    /// the ValidatingWebhookConfiguration) or `files` (cert-manager: --webhook-cert-dir).
    #[arg(long, env = "PORTCULLIS_WEBHOOK_CERTS", default_value = "self-signed")]
    pub webhook_certs: String,
    /// Directory with tls.crt and tls.key when --webhook-certs=files.
    #[arg(
        long,
        env = "PORTCULLIS_WEBHOOK_CERT_DIR",
        default_value = "/etc/portcullis/webhook"
    )]
    pub webhook_cert_dir: PathBuf,
    /// DNS name of the webhook Service (the certificate's subject).
    #[arg(
        long,
        env = "PORTCULLIS_WEBHOOK_SERVICE",
        default_value = "portcullis-webhook.portcullis-system.svc"
    )]
    pub webhook_service: String,
    /// ValidatingWebhookConfiguration whose caBundle gets our CA (self-signed mode);
    /// empty: do not patch.
    #[arg(long, env = "PORTCULLIS_WEBHOOK_CONFIG", default_value = "portcullis")]
    pub webhook_config: String,
    /// Destination networks Services may use although they are loopback, link-local,
    /// unspecified or multicast (refused by default: they reach the node itself, Envoy's
    /// admin API or the cloud metadata service). Comma-separated CIDRs.
    #[arg(
        long,
        env = "PORTCULLIS_ALLOW_DESTINATION_CIDRS",
        value_delimiter = ',',
        num_args = 0..
    )]
    pub allow_destination_cidrs: Vec<portcullis_api::validate::Cidr>,
    /// Serve a Route's hostname only when a Host owns it (docs/api.md, "Hosts"); Routes
    /// naming an unowned hostname get Accepted=False, NotAllowedByHost.
    #[arg(long, env = "PORTCULLIS_REQUIRE_HOST_OWNERSHIP")]
    pub require_host_ownership: bool,
    /// Capacity of the status-write queue.
    #[arg(long, env = "PORTCULLIS_STATUS_QUEUE", default_value_t = 256)]
    pub status_queue: usize,
    /// Optional state file (e.g. on an emptyDir), served at once on a container restart.
    #[arg(long, env = "PORTCULLIS_STATE_FILE")]
    pub state_file: Option<PathBuf>,
    #[command(flatten)]
    pub gateway: portcullis_plane::args::GatewayArgs,
    #[command(flatten)]
    pub console: portcullis_plane::console::ConsoleArgs,
}
