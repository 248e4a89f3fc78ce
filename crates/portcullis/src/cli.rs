//! Command-line interface: one binary, one subcommand per component.
use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};

use crate::bootstrap::Bootstrap;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Envoy xDS control plane and filter services"
)]
pub struct Cli {
    /// Log filter (RUST_LOG syntax) [default: info; `ratelimit` also reads LOG_LEVEL]
    #[arg(long, env = "PORTCULLIS_LOG", global = true)]
    log: Option<String>,
    /// Log as JSON lines.
    #[arg(long, env = "PORTCULLIS_LOG_JSON", global = true)]
    log_json: bool,
    /// Export spans over OTLP/gRPC to this collector (e.g. http://127.0.0.1:4317).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", global = true)]
    otlp_endpoint: Option<String>,
    /// Threads serving requests [default: one per CPU the process may use]. 1 runs
    /// everything on one thread, with no hand-offs between threads: the fastest
    /// choice for a filter service given one CPU or sharing a small node.
    #[arg(long, env = "PORTCULLIS_WORKER_THREADS", global = true,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    worker_threads: Option<u16>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Control plane with a directory of manifests as the source (watched).
    Serve(Box<ServeArgs>),
    /// Kubernetes mode: watch Route/Service CRDs and EndpointSlices, serve xDS, write
    /// status, serve the admission webhook.
    Controller(Box<portcullis_kube::Args>),
    /// Envoy rate-limit service (envoy.service.ratelimit.v3.RateLimitService).
    Ratelimit(Box<portcullis_ratelimit::Args>),
    /// Envoy ext_authz service (envoy.service.auth.v3.Authorization): API keys and
    /// tokens to identities.
    Authz(Box<portcullis_authz::Args>),
    /// Envoy gRPC access log service (envoy.service.accesslog.v3): scrubbed JSON
    /// records to stdout, a file or Kafka.
    Accesslog(Box<portcullis_accesslog::Args>),
    /// Everything on this machine: control plane, demo backends and Envoy.
    Up(Box<crate::up::UpArgs>),
    /// Which Route serves a request, and why: the precedence steps, the Routes that
    /// matched but lost, and the policy the request gets.
    Explain(crate::explain_cmd::ExplainArgs),
    /// Check manifests offline, with the same rules the control plane applies.
    Validate {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Apply the Kubernetes-mode rules (no loopback destinations, as the admission
        /// webhook) instead of file mode's.
        #[arg(long)]
        cluster: bool,
        /// Refuse Routes naming a hostname no Host owns, as a control plane run with
        /// --require-host-ownership does.
        #[arg(long)]
        require_host_ownership: bool,
    },
    /// Print the CustomResourceDefinitions.
    Crds,
    /// Take an Envoy out of service without dropping requests: fail its health checks,
    /// drain its connections, wait until they are closed (the chart's Envoy pods run
    /// it as a sidecar with --on-signal).
    Drain(crate::drain::DrainArgs),
    /// Print an Envoy bootstrap pointing at a control plane.
    Bootstrap(BootstrapArgs),
    /// Run the demo echo backend.
    Echo {
        #[arg(long, env = "PORTCULLIS_ECHO_ADDR", default_value = "127.0.0.1:18080")]
        addr: SocketAddr,
        #[arg(long, env = "PORTCULLIS_ECHO_NAME", default_value = "echo")]
        name: String,
    },
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Directory (or file) of Route and Service manifests.
    #[arg(long, env = "PORTCULLIS_CONFIG")]
    pub config: PathBuf,
    #[arg(long, env = "PORTCULLIS_XDS_ADDR", default_value = "127.0.0.1:18000")]
    pub xds_addr: SocketAddr,
    /// mTLS of the xDS port (--tls-cert, --tls-key, --client-ca, --insecure).
    #[command(flatten)]
    pub tls: portcullis_tls::mtls::MtlsArgs,
    #[arg(long, env = "PORTCULLIS_ADMIN_ADDR", default_value = "127.0.0.1:18001")]
    pub admin_addr: SocketAddr,
    /// Where the last published snapshot is kept, and served from on start.
    #[arg(long, env = "PORTCULLIS_STATE_FILE")]
    pub state_file: Option<PathBuf>,
    #[command(flatten)]
    pub gateway: portcullis_plane::args::GatewayArgs,
    #[command(flatten)]
    pub console: portcullis_plane::console::ConsoleArgs,
    /// Serve a Route's hostname only when a Host owns it (docs/api.md, "Hosts"): a team
    /// can then no longer claim a hostname nobody registered.
    #[arg(long, env = "PORTCULLIS_REQUIRE_HOST_OWNERSHIP")]
    pub require_host_ownership: bool,
    /// How often the config directory is checked for changes, in milliseconds.
    #[arg(long, env = "PORTCULLIS_POLL_MS", default_value_t = 200)]
    pub poll_ms: u64,
    /// Write the bound addresses here as JSON ({"xds": .., "admin": ..}) once listening,
    /// so supervisors and tests can use port 0.
    #[arg(long, env = "PORTCULLIS_ADDR_FILE")]
    pub addr_file: Option<PathBuf>,
}

impl ServeArgs {
    pub fn into_config(self) -> anyhow::Result<portcullis_plane::serve::ServeConfig> {
        let Self {
            config,
            xds_addr: _,
            tls: _,
            admin_addr: _,
            state_file,
            gateway,
            console,
            require_host_ownership,
            poll_ms,
            addr_file: _,
        } = self;
        Ok(portcullis_plane::serve::ServeConfig {
            config_dir: config,
            state_file,
            options: gateway.into_options()?,
            poll_interval: Duration::from_millis(poll_ms),
            console,
            extra: Vec::new(),
            require_host_ownership,
        })
    }
}

#[derive(clap::Args)]
struct BootstrapArgs {
    #[arg(long, env = "PORTCULLIS_XDS_ADDR", default_value = "127.0.0.1:18000")]
    xds_addr: String,
    #[arg(long, env = "PORTCULLIS_NODE_ID", default_value = "envoy")]
    node_id: String,
    /// HTTP listener port (recorded in node metadata; the control plane's
    /// `--listen-port` decides the listener).
    #[arg(long, default_value_t = 10000)]
    port: u16,
    #[arg(long, default_value_t = 9901)]
    admin_port: u16,
    /// Use incremental (Delta) xDS.
    #[arg(long)]
    delta: bool,
    /// Envoy's client certificate (PEM file, read by Envoy) for mTLS to the control
    /// plane, authz, ratelimit and accesslog; it names the node (URI SAN
    /// spiffe://portcullis/node/<node-id>). With --client-key and --server-ca.
    #[arg(long, requires_all = ["client_key", "server_ca"])]
    client_cert: Option<PathBuf>,
    /// Private key (PEM file) of --client-cert.
    #[arg(long, requires_all = ["client_cert", "server_ca"])]
    client_key: Option<PathBuf>,
    /// CA (PEM file) that signed the Portcullis servers' certificates.
    #[arg(long, requires_all = ["client_cert", "client_key"])]
    server_ca: Option<PathBuf>,
}

pub fn main() -> ExitCode {
    let (args, renamed) =
        crate::renamed::rewrite(std::env::args_os().collect(), |k| std::env::var_os(k));
    let cli = Cli::parse_from(args);
    let Cli {
        log,
        log_json,
        otlp_endpoint,
        worker_threads,
        command,
    } = cli;
    match command {
        Command::Validate {
            paths,
            cluster,
            require_host_ownership,
        } => {
            let mut rules = if cluster {
                portcullis_api::validate::Rules::cluster(Vec::new())
            } else {
                portcullis_api::validate::Rules::file_mode()
            };
            rules.require_host_ownership = require_host_ownership;
            return crate::validate_cmd::run(&paths, &rules);
        }
        Command::Crds => {
            print!("{}", portcullis_api::crds::to_yaml());
            return ExitCode::SUCCESS;
        }
        Command::Bootstrap(BootstrapArgs {
            xds_addr,
            node_id,
            port,
            admin_port,
            delta,
            client_cert,
            client_key,
            server_ca,
        }) => {
            let mut b = Bootstrap::new(xds_addr, node_id);
            b.listen_port = port;
            b.admin_port = admin_port;
            b.delta = delta;
            if let (Some(cert), Some(key), Some(ca)) = (client_cert, client_key, server_ca) {
                b.mtls = Some(crate::bootstrap::ClientFiles { cert, key, ca });
            }
            return match b.to_yaml() {
                Ok(y) => {
                    print!("{y}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
        Command::Explain(args) => {
            // A one-shot client: no logging set-up, one thread.
            return match runtime(Some(1)) {
                Ok(rt) => rt.block_on(crate::explain_cmd::run(args)),
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    // envoyproxy/ratelimit's LOG_LEVEL and LOG_FORMAT, so its Deployments keep their
    // logging when they switch to `portcullis ratelimit`.
    let (envoy_level, envoy_json) = match &command {
        Command::Ratelimit(_) => {
            portcullis_ratelimit::EnvoyEnv::log_settings(|k| std::env::var(k).ok())
        }
        _ => (None, false),
    };
    let log = log.or(envoy_level).unwrap_or_else(|| "info".to_string());
    let log_json = log_json || envoy_json;
    let service = match &command {
        Command::Authz(_) => "portcullis-authz",
        Command::Ratelimit(_) => "portcullis-ratelimit",
        Command::Accesslog(_) => "portcullis-accesslog",
        Command::Echo { .. } => "portcullis-echo",
        Command::Drain(_) => "portcullis-drain",
        _ => "portcullis-control-plane",
    };
    let runtime = match runtime(worker_threads) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let tracing = match portcullis_process::init_tracing(
            &log,
            log_json,
            otlp_endpoint.as_deref(),
            service,
        ) {
            Ok(t) => t,
            Err(e) => return Err(e.context("--otlp-endpoint")),
        };
        for warning in &renamed {
            tracing::warn!("{warning}");
        }
        let result = run_command(command).await;
        tracing.shutdown().await;
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_command(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve(*args).await,
        Command::Up(args) => crate::up::run(*args).await,
        Command::Controller(args) => {
            portcullis_kube::run(*args, crate::signals::shutdown_signal()).await
        }
        Command::Ratelimit(args) => {
            portcullis_ratelimit::run_bound(*args, crate::signals::shutdown_signal()).await
        }
        Command::Authz(args) => {
            portcullis_authz::run_bound(*args, crate::signals::shutdown_signal()).await
        }
        Command::Accesslog(args) => {
            portcullis_accesslog::run_bound(*args, crate::signals::shutdown_signal()).await
        }
        Command::Drain(args) => crate::drain::run(args, crate::signals::shutdown_signal()).await,
        Command::Echo { addr, name } => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tracing::info!(%addr, name, "echo backend listening");
            crate::echo::serve(listener, name, crate::signals::shutdown_signal()).await?;
            Ok(())
        }
        Command::Validate { .. } | Command::Crds | Command::Bootstrap(_) | Command::Explain(_) => {
            unreachable!("handled above")
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (xds_addr, admin_addr, addr_file) =
        (args.xds_addr, args.admin_addr, args.addr_file.clone());
    let xds_transport = args.tls.transport(xds_addr, "--xds-addr")?;
    let config = args.into_config()?;
    let xds = portcullis_process::bind(xds_addr, "--xds-addr").await?;
    let admin = portcullis_process::bind(admin_addr, "--admin-addr").await?;
    if let Some(path) = &addr_file {
        let addrs = serde_json::json!({"xds": xds.local_addr()?, "admin": admin.local_addr()?});
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, addrs.to_string())?;
        std::fs::rename(&tmp, path)?;
    }
    portcullis_plane::serve::run_with(
        config,
        xds_transport,
        xds,
        admin,
        crate::signals::shutdown_signal(),
    )
    .await
}

/// The async runtime for `--worker-threads`: one thread runs everything on the calling
/// thread (no work stealing, no wake-ups across threads); more, or none given, a pool.
pub fn runtime(worker_threads: Option<u16>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match worker_threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    if let Some(n) = worker_threads.filter(|&n| n > 1) {
        builder.worker_threads(n.into());
    }
    builder.enable_all().build()
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use tokio::runtime::RuntimeFlavor;

    use super::*;

    #[test]
    fn worker_threads_choose_the_runtime() {
        let one = runtime(Some(1)).unwrap();
        assert_eq!(one.handle().runtime_flavor(), RuntimeFlavor::CurrentThread);
        let three = runtime(Some(3)).unwrap();
        assert_eq!(three.handle().runtime_flavor(), RuntimeFlavor::MultiThread);
        assert_eq!(three.metrics().num_workers(), 3);
        let default = runtime(None).unwrap();
        assert_eq!(
            default.handle().runtime_flavor(),
            RuntimeFlavor::MultiThread
        );
    }

    #[test]
    fn worker_threads_refuses_zero_and_absurd_counts() {
        for bad in ["0", "1025", "many"] {
            let err = Cli::try_parse_from(["portcullis", "--worker-threads", bad, "ratelimit"])
                .err()
                .unwrap_or_else(|| panic!("{bad} was taken"));
            assert!(err.to_string().contains("worker-threads"), "{err}");
        }
        assert!(
            Cli::try_parse_from(["portcullis", "--worker-threads", "-1", "ratelimit"]).is_err()
        );
        assert!(Cli::try_parse_from(["portcullis", "ratelimit", "--worker-threads", "1"]).is_ok());
    }
}

#[cfg(test)]
#[path = "renamed_tests.rs"]
mod renamed_tests;
