//! `portcullis up`: the whole stack on one machine. The file-mode control plane on a
//! directory of manifests (the shipped examples by default), the demo echo backends
//! they point at, and a stock Envoy child process bootstrapped to the control plane.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context;

use crate::{bootstrap::Bootstrap, envoy::Envoy};
use portcullis_process::bind;

/// The shipped demo, used when no `--config` is given and `./examples` is absent.
const EMBEDDED_DEMO: &str = include_str!("../../../examples/demo/demo.yaml");
/// Its API keys (digests only), used when no `--keys-file` is given.
const EMBEDDED_KEYS: &str = include_str!("../../../examples/authz/demo-keys.yaml");

#[derive(clap::Args)]
pub struct UpArgs {
    /// Directory of manifests [default: ./examples/demo, else the embedded demo].
    #[arg(long, env = "PORTCULLIS_CONFIG")]
    config: Option<PathBuf>,
    /// Port of Envoy's HTTP listener.
    #[arg(long, env = "PORTCULLIS_PORT", default_value_t = 10000)]
    port: u16,
    /// Port of Envoy's HTTPS listener (127.0.0.1), serving the demo hostname
    /// (api.localhost) with a certificate from the local CA (0: a free port).
    #[arg(long, env = "PORTCULLIS_HTTPS_PORT", default_value_t = 10443)]
    https_port: u16,
    #[arg(long, env = "PORTCULLIS_XDS_ADDR", default_value = "127.0.0.1:18000")]
    xds_addr: SocketAddr,
    #[arg(long, env = "PORTCULLIS_ADMIN_ADDR", default_value = "127.0.0.1:18001")]
    admin_addr: SocketAddr,
    /// Envoy's admin port (127.0.0.1).
    #[arg(long, default_value_t = 9901)]
    envoy_admin_port: u16,
    /// Snapshot kept between runs [default: .portcullis/state.json].
    #[arg(long, env = "PORTCULLIS_STATE_FILE")]
    state_file: Option<PathBuf>,
    /// Demo backends to run, as name=addr pairs.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "echo=127.0.0.1:18080,echo-canary=127.0.0.1:18081"
    )]
    demo: Vec<String>,
    /// Use Delta xDS between Envoy and the control plane.
    #[arg(long)]
    delta: bool,
    /// Plaintext between the components (xDS, authz, ratelimit, accesslog), as before
    /// mTLS. By default a CA made at start signs a certificate for each, kept in a
    /// private temporary directory removed on exit.
    #[arg(long)]
    insecure: bool,
    /// gRPC address of the authz service (ext_authz).
    #[arg(long, default_value = "127.0.0.1:18082")]
    authz_addr: SocketAddr,
    /// Hashed API keys for authz [default: the embedded demo keys].
    #[arg(long, env = "PORTCULLIS_AUTHZ_KEYS_FILE")]
    keys_file: Option<PathBuf>,
    /// gRPC address of the rate-limit service (port 0: any free port; only Envoy calls it).
    #[arg(long, default_value = "127.0.0.1:0")]
    ratelimit_addr: SocketAddr,
    #[command(flatten)]
    headers: portcullis_plane::args::HeaderArgs,
    /// The console's signals: this Envoy's admin stats are sampled unless
    /// --prometheus-url is given; more Envoys with --envoy-admin.
    #[command(flatten)]
    console: portcullis_plane::console::ConsoleArgs,
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let UpArgs {
        config,
        port,
        https_port,
        xds_addr,
        admin_addr,
        envoy_admin_port,
        state_file,
        demo,
        delta,
        insecure,
        authz_addr,
        keys_file,
        ratelimit_addr,
        headers,
        mut console,
    } = args;
    let (api_key_header, identity_headers) = headers.resolve()?;
    let key_header = api_key_header.clone();
    // The console samples this Envoy's admin stats, so its port is fixed before Envoy
    // starts (port 0: a free one, chosen now).
    let envoy_admin_port = match envoy_admin_port {
        0 => portcullis_process::port::free_loopback_port()?,
        p => p,
    };
    console
        .envoy_admin
        .push(format!("127.0.0.1:{envoy_admin_port}"));
    // Printed in the banner, so chosen before Envoy binds it.
    let https_port = match https_port {
        0 => portcullis_process::port::free_loopback_port()?,
        p => p,
    };
    let shutdown = crate::signals::shutdown_signal();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = portcullis_process::Shutdown::new(async {
        let _ = stop_rx.await;
    });
    let stopped = || stop.signal();

    let _embedded;
    let config = match config {
        Some(c) => c,
        None if PathBuf::from("examples/demo").is_dir() => PathBuf::from("examples/demo"),
        None => {
            let dir = tempfile::tempdir()?;
            std::fs::write(dir.path().join("demo.yaml"), EMBEDDED_DEMO)?;
            let path = dir.path().to_path_buf();
            _embedded = dir;
            path
        }
    };

    // The local CA signs the HTTPS certificate always, and the components'
    // certificates unless --insecure.
    let local = LocalTls::generate()?;
    let tls = (!insecure).then_some(&local);
    let server_tls = tls.map(|t| t.server.clone()).unwrap_or_default();
    let server_flags = server_tls.to_args();

    let mut tasks = tokio::task::JoinSet::new();
    for pair in &demo {
        let (name, addr) = pair
            .split_once('=')
            .with_context(|| format!("--demo {pair:?}: write name=host:port"))?;
        let addr: SocketAddr = addr
            .parse()
            .with_context(|| format!("--demo {pair:?}: bad address"))?;
        let listener = bind(addr, "--demo").await?;
        let name = name.to_owned();
        let shutdown = stopped();
        tasks.spawn(async move {
            crate::echo::serve(listener, name, shutdown)
                .await
                .map_err(anyhow::Error::from)
        });
    }

    // The authz service, on the demo keys unless told otherwise.
    let keys_file = match keys_file {
        Some(k) => k,
        None => {
            let path = PathBuf::from(".portcullis/demo-keys.yaml");
            std::fs::create_dir_all(".portcullis")?;
            std::fs::write(&path, EMBEDDED_KEYS)?;
            path
        }
    };
    let authz_args = <portcullis_authz::Args as clap::Parser>::try_parse_from(
        ["authz", "--keys-file", &keys_file.to_string_lossy()]
            .into_iter()
            .map(String::from)
            .chain(server_flags.iter().cloned()),
    )?;
    let authz_grpc = bind(authz_addr, "--authz-addr").await?;
    let authz_http = bind("127.0.0.1:0".parse()?, "authz metrics").await?;
    tasks.spawn(portcullis_authz::run(
        authz_args,
        authz_grpc,
        authz_http,
        stopped(),
    ));

    let xds = bind(xds_addr, "--xds-addr").await?;
    let admin = bind(admin_addr, "--admin-addr").await?;
    let admin_addr = admin.local_addr()?;

    // The rate-limit service: counters in memory, the Routes' limits from this control
    // plane over ADS (the same server Envoy uses).
    let ratelimit_grpc = bind(ratelimit_addr, "--ratelimit-addr").await?;
    let ratelimit_addr = ratelimit_grpc.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut ratelimit_flags: Vec<String> = [
        "ratelimit",
        "--store",
        "memory",
        "--xds-addr",
        &format!("{scheme}://{}", xds.local_addr()?),
        "--node-id",
        RATELIMIT_NODE,
    ]
    .into_iter()
    .map(String::from)
    .chain(server_flags.iter().cloned())
    .collect();
    if let Some(t) = &tls {
        for (flag, path) in [
            ("--xds-tls-cert", &t.ratelimit_client.cert),
            ("--xds-tls-key", &t.ratelimit_client.key),
            ("--xds-ca", &t.ratelimit_client.ca),
        ] {
            ratelimit_flags.push(flag.into());
            ratelimit_flags.push(path.to_string_lossy().into_owned());
        }
    }
    let ratelimit_args =
        <portcullis_ratelimit::Args as clap::Parser>::try_parse_from(ratelimit_flags)?;
    let ratelimit_http = bind("127.0.0.1:0".parse()?, "ratelimit metrics").await?;
    tasks.spawn(portcullis_ratelimit::run(
        ratelimit_args,
        portcullis_ratelimit::Listeners::new(ratelimit_grpc, ratelimit_http),
        stopped(),
    ));

    // The access log service: Envoy streams a record per request, printed as JSON.
    let accesslog_grpc = bind("127.0.0.1:0".parse()?, "access log").await?;
    let accesslog_addr = accesslog_grpc.local_addr()?;
    let accesslog_http = bind("127.0.0.1:0".parse()?, "access log metrics").await?;
    let accesslog_args = <portcullis_accesslog::Args as clap::Parser>::try_parse_from(
        ["accesslog", "--sink", "stdout"]
            .into_iter()
            .map(String::from)
            .chain(server_flags.iter().cloned()),
    )?;
    tasks.spawn(portcullis_accesslog::run(
        accesslog_args,
        accesslog_grpc,
        accesslog_http,
        stopped(),
    ));

    let serve_config = portcullis_plane::serve::ServeConfig {
        config_dir: config.clone(),
        state_file: Some(state_file.unwrap_or_else(|| PathBuf::from(".portcullis/state.json"))),
        options: portcullis_translate::Options {
            listen_address: "127.0.0.1".into(),
            listen_port: port,
            access_log_service: Some(accesslog_addr.to_string()),
            authz: Some(authz_addr.to_string()),
            ratelimit: Some(ratelimit_addr.to_string()),
            api_key_header,
            identity_headers,
            component_mtls: tls.is_some(),
            https_port: Some(https_port),
            ..Default::default()
        },
        poll_interval: Duration::from_millis(200),
        console,
        extra: vec![local.https_host()?],
        require_host_ownership: false,
    };
    let xds_transport = server_tls.transport(xds.local_addr()?, "--xds-addr")?;
    tasks.spawn(portcullis_plane::serve::run_with(
        serve_config,
        xds_transport,
        xds,
        admin,
        stopped(),
    ));

    let mut bootstrap = Bootstrap::new(xds_addr.to_string(), ENVOY_NODE);
    bootstrap.mtls = tls.map(|t| t.envoy.clone());
    bootstrap.admin_port = envoy_admin_port;
    bootstrap.listen_port = port;
    bootstrap.delta = delta;
    let mut envoy = Envoy::start(&bootstrap.to_yaml()?, "warning").await?;
    wait_ready(&envoy).await?;

    println!();
    println!(
        "Portcullis is up. Manifests: {} (edit them; changes apply live)",
        config.display()
    );
    println!(
        "  console:        http://{admin_addr}/   (problems, routing table, fleet, signals, explain)"
    );
    println!("  gateway:        http://127.0.0.1:{port}/");
    println!(
        "  https:          https://{HTTPS_HOSTNAME}:{https_port}/ (127.0.0.1); certificate signed by the local CA {}",
        local.ca.display()
    );
    println!("  control plane:  http://{admin_addr}/debug/objects   http://{admin_addr}/debug/xds");
    println!("  envoy admin:    http://{}/", envoy.admin);
    match tls {
        Some(t) => println!(
            "  components:     mTLS (xDS, authz, ratelimit, accesslog); CA and certificates in {} (--insecure: plaintext)",
            t.dir.path().display()
        ),
        None => println!("  components:     plaintext on loopback (--insecure)"),
    }
    println!();
    println!("Try:  curl -s http://127.0.0.1:{port}/echo/hello");
    println!("      curl -s -X POST http://127.0.0.1:{port}/echo/orders");
    println!(
        "      curl -s -H '{key_header}: demo-key-alice' http://127.0.0.1:{port}/echo/orders   (401 without the key)"
    );
    println!(
        "      curl -s --cacert {} --resolve {HTTPS_HOSTNAME}:{https_port}:127.0.0.1 https://{HTTPS_HOSTNAME}:{https_port}/v1/anything",
        local.ca.display()
    );
    println!(
        "      curl -si -H 'Host: {HTTPS_HOSTNAME}' http://127.0.0.1:{port}/v1/anything   (301 to HTTPS)"
    );
    println!("Ctrl-C stops everything.");

    tokio::select! {
        _ = shutdown => {}
        status = envoy.wait() => tracing::error!(?status, "envoy exited"),
        Some(res) = tasks.join_next() => tracing::error!(?res, "a component stopped"),
    }
    let _ = stop_tx.send(());
    envoy.kill().await;
    while let Some(res) = tasks.join_next().await {
        if let Ok(Err(e)) = res {
            tracing::warn!("{e:#}");
        }
    }
    Ok(())
}

/// The demo hostname `up` serves over HTTPS (the demo's host-specific Route).
const HTTPS_HOSTNAME: &str = "api.localhost";

/// Envoy's node id; its client certificate names it.
const ENVOY_NODE: &str = "portcullis-up";
/// The rate-limit service's node id on the ADS stream it reads its limits from.
const RATELIMIT_NODE: &str = "portcullis-up-ratelimit";

/// The certificates of one `up` run: a CA made now, one serving certificate shared by
/// the four servers (all on this machine), and a client certificate per xDS node. The
/// directory is owner-only and removed when `up` ends.
struct LocalTls {
    dir: tempfile::TempDir,
    /// The CA certificate (PEM): what clients trust for the HTTPS listener.
    ca: PathBuf,
    /// The certificate and key of [`HTTPS_HOSTNAME`].
    https: (PathBuf, PathBuf),
    server: portcullis_tls::mtls::MtlsArgs,
    envoy: crate::bootstrap::ClientFiles,
    ratelimit_client: crate::bootstrap::ClientFiles,
}

impl LocalTls {
    fn generate() -> anyhow::Result<Self> {
        use portcullis_tls::mtls::generate::{LocalCa, write_dir};
        let hosts = ["127.0.0.1", "::1", "localhost"];
        let ca = LocalCa::new("portcullis up local CA").context("generating the local CA")?;
        let server = ca.issue("portcullis-up-server", &hosts, &[])?;
        let envoy = ca.issue(ENVOY_NODE, &[], &[ENVOY_NODE])?;
        let ratelimit = ca.issue(RATELIMIT_NODE, &[], &[RATELIMIT_NODE])?;
        let https = ca.issue(HTTPS_HOSTNAME, &[HTTPS_HOSTNAME], &[])?;
        let dir = tempfile::Builder::new()
            .prefix("portcullis-up-tls-")
            .tempdir()
            .context("creating the certificate directory")?;
        let files = write_dir(
            dir.path(),
            &ca,
            &[
                ("server", &server),
                ("envoy", &envoy),
                ("ratelimit", &ratelimit),
                ("https", &https),
            ],
        )
        .context("writing the certificates")?;
        let client = |f: &portcullis_tls::mtls::generate::Files| crate::bootstrap::ClientFiles {
            cert: f.cert.clone(),
            key: f.key.clone(),
            ca: f.ca.clone(),
        };
        Ok(LocalTls {
            server: portcullis_tls::mtls::MtlsArgs {
                tls_cert: Some(files[0].cert.clone()),
                tls_key: Some(files[0].key.clone()),
                client_ca: Some(files[0].ca.clone()),
                insecure: false,
            },
            envoy: client(&files[1]),
            ratelimit_client: client(&files[2]),
            ca: files[3].ca.clone(),
            https: (files[3].cert.clone(), files[3].key.clone()),
            dir,
        })
    }

    /// The Host that serves [`HTTPS_HOSTNAME`] with the local certificate. It admits
    /// Routes of every namespace (any manifest directory's Routes for the name), and
    /// redirects plain HTTP for the name to HTTPS, as a Host with TLS does by default.
    fn https_host(&self) -> anyhow::Result<portcullis_api::Document> {
        let yaml = serde_json::json!({
            "apiVersion": "portcullis.dev/v1alpha1",
            "kind": "Host",
            "metadata": {"name": "api-localhost", "namespace": "portcullis-up"},
            "spec": {
                "hostname": HTTPS_HOSTNAME,
                "tls": {
                    "certificateFile": self.https.0,
                    "keyFile": self.https.1,
                },
                "allowedRoutes": {"namespaces": ["*"]},
            },
        })
        .to_string();
        portcullis_api::parse_documents(&yaml)
            .into_iter()
            .next()
            .context("the HTTPS Host")?
            .map_err(|e| anyhow::anyhow!("the HTTPS Host: {}", e.message))
    }
}

/// Envoy answers `/ready` with 200 once its initial xDS fetch is done.
async fn wait_ready(envoy: &Envoy) -> anyhow::Result<()> {
    let url = envoy.admin_url("/ready");
    for _ in 0..300 {
        if let Ok(body) = http_get(&url).await
            && body.0 == 200
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("envoy did not become ready within 30s; check the control plane log above")
}

/// Minimal HTTP/1.1 GET over a TCP stream: the admin API is plain and local, and this
/// keeps an HTTP client out of the binary.
pub async fn http_get(url: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").context("http:// URLs only")?;
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}
