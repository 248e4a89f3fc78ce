//! mTLS between Portcullis components, through stock Envoy: Envoy gets its config over
//! mTLS xDS and calls authz and the access log service with its client certificate;
//! clients without a certificate, or with one from another CA, are refused by every
//! gRPC server; a certificate for node A cannot subscribe as node B; and a server
//! asked to listen in plaintext off loopback refuses to start. Certificates are made by
//! the test (rcgen, through `portcullis_tls::mtls::generate`).
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use envoy_types::pb::envoy::{
    config::core::v3::Node,
    service::discovery::v3::{
        DiscoveryRequest, aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
    },
};
use portcullis::bootstrap::{Bootstrap, ClientFiles};
use portcullis_tls::mtls::{
    ClientTls, MtlsArgs,
    generate::{Files, LocalCa, write_dir},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use crate::harness::*;

/// A CA, the servers' certificate, clients for node-a, and a client from another CA.
pub(crate) struct Pki {
    pub(crate) _dir: tempfile::TempDir,
    /// authz, ratelimit and accesslog serve this one.
    pub(crate) server: Files,
    /// The control plane's xDS port serves this one.
    pub(crate) xds: Files,
    pub(crate) node_a: Files,
    pub(crate) stranger: Files,
    /// Envoy's path-based SDS directory (`--component-mtls-sds-dir`); `None`: static
    /// bootstrap secrets.
    pub(crate) sds_dir: Option<PathBuf>,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::new("e2e CA").unwrap();
    let server = ca.issue("server", &["127.0.0.1"], &[]).unwrap();
    let node_a = ca.issue("node-a", &[], &["node-a"]).unwrap();
    let mut files = write_dir(
        &dir.path().join("ca"),
        &ca,
        &[("server", &server), ("node-a", &node_a)],
    )
    .unwrap();
    let other = LocalCa::new("another CA").unwrap();
    let stranger = other.issue("node-a", &["127.0.0.1"], &["node-a"]).unwrap();
    let stranger = write_dir(&dir.path().join("other"), &other, &[("s", &stranger)])
        .unwrap()
        .remove(0);
    let node_a = files.remove(1);
    let server = files.remove(0);
    Pki {
        _dir: dir,
        xds: server.clone(),
        server,
        node_a,
        stranger,
        sds_dir: None,
    }
}

impl Pki {
    fn server_args(&self) -> Vec<String> {
        MtlsArgs {
            tls_cert: Some(self.server.cert.clone()),
            tls_key: Some(self.server.key.clone()),
            client_ca: Some(self.server.ca.clone()),
            insecure: false,
        }
        .to_args()
    }

    pub(crate) fn client(&self, f: &Files) -> ClientTls {
        // The stranger trusts our servers; only its own certificate is foreign.
        ClientTls::load(&f.cert, &f.key, &self.server.ca, ["cert", "key", "ca"]).unwrap()
    }
}

async fn local() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// The four gRPC servers, all with mTLS: (xDS, admin, authz, ratelimit, accesslog).
pub(crate) struct Servers {
    pub(crate) xds: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) authz: SocketAddr,
    pub(crate) ratelimit: SocketAddr,
    pub(crate) accesslog: SocketAddr,
    pub(crate) log_file: PathBuf,
}

/// Through `gw`: the public Route of [`manifests`] reaches the echo backend, and a
/// request with alice's key is authenticated by authz and reaches it as alice.
pub(crate) async fn serves_and_authenticates(gw: &Gateway) {
    let r = gw.get("example.com", "/public/x").await;
    assert_eq!((r.status, r.backend.as_deref()), (200, Some("echo")));
    let r = gw
        .request(
            "GET",
            "example.com",
            "/private",
            &[("x-api-key", "demo-key-alice")],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["headers"]["x-portcullis-user"], "alice");
}

pub(crate) async fn servers(pki: &Pki, dir: &std::path::Path, manifests: &str) -> Servers {
    let tls = pki.server_args();
    let with_tls = |base: &[&str]| -> Vec<String> {
        base.iter()
            .map(|s| s.to_string())
            .chain(tls.clone())
            .collect()
    };
    let keys = dir.join("keys.yaml");
    std::fs::write(&keys, include_str!("../examples/authz/demo-keys.yaml")).unwrap();
    let (grpc, http) = (local().await, local().await);
    let authz = grpc.local_addr().unwrap();
    let args = <portcullis_authz::Args as clap::Parser>::try_parse_from(with_tls(&[
        "authz",
        "--keys-file",
        keys.to_str().unwrap(),
    ]))
    .unwrap();
    tokio::spawn(portcullis_authz::run(
        args,
        grpc,
        http,
        std::future::pending(),
    ));

    let (grpc, http) = (local().await, local().await);
    let ratelimit = grpc.local_addr().unwrap();
    let args = <portcullis_ratelimit::Args as clap::Parser>::try_parse_from(with_tls(&[
        "ratelimit",
        "--store",
        "memory",
    ]))
    .unwrap();
    tokio::spawn(portcullis_ratelimit::run(
        args,
        portcullis_ratelimit::Listeners::new(grpc, http),
        std::future::pending(),
    ));

    let log_file = dir.join("access.log");
    let (grpc, http) = (local().await, local().await);
    let accesslog = grpc.local_addr().unwrap();
    let sink = format!("file:{}", log_file.display());
    let args = <portcullis_accesslog::Args as clap::Parser>::try_parse_from(with_tls(&[
        "accesslog",
        "--sink",
        &sink,
    ]))
    .unwrap();
    tokio::spawn(portcullis_accesslog::run(
        args,
        grpc,
        http,
        std::future::pending(),
    ));

    let config = dir.join("manifests");
    std::fs::create_dir_all(&config).unwrap();
    write_atomic(&config.join("m.yaml"), manifests);
    let (xds, admin) = (local().await, local().await);
    let (xds_addr, admin_addr) = (xds.local_addr().unwrap(), admin.local_addr().unwrap());
    let transport = MtlsArgs {
        tls_cert: Some(pki.xds.cert.clone()),
        tls_key: Some(pki.xds.key.clone()),
        client_ca: Some(pki.xds.ca.clone()),
        insecure: false,
    }
    .transport(xds_addr, "--xds-addr")
    .unwrap();
    let serve = portcullis_plane::serve::ServeConfig {
        config_dir: config,
        state_file: None,
        options: portcullis_translate::Options {
            listen_address: "127.0.0.1".into(),
            listen_port: 0,
            authz: Some(authz.to_string()),
            ratelimit: Some(ratelimit.to_string()),
            access_log_service: Some(accesslog.to_string()),
            component_mtls: true,
            component_mtls_sds_dir: pki.sds_dir.as_ref().map(|d| d.display().to_string()),
            ..Default::default()
        },
        poll_interval: Duration::from_millis(100),
        console: Default::default(),
        extra: Vec::new(),
        require_host_ownership: false,
    };
    tokio::spawn(portcullis_plane::serve::run_with(
        serve,
        transport,
        xds,
        admin,
        std::future::pending(),
    ));
    wait_ok(&format!("http://{admin_addr}/readyz"), "control plane").await;
    Servers {
        xds: xds_addr,
        admin: admin_addr,
        authz,
        ratelimit,
        accesslog,
        log_file,
    }
}

pub(crate) fn bootstrap(xds: SocketAddr, node: &str, files: &Files) -> Bootstrap {
    let mut b = Bootstrap::new(xds.to_string(), node);
    b.admin_port = 0;
    b.mtls = Some(ClientFiles {
        cert: files.cert.clone(),
        key: files.key.clone(),
        ca: files.ca.clone(),
    });
    b
}

pub(crate) fn manifests(echo: SocketAddr) -> String {
    let mut m = service_yaml("echo", echo);
    m.push_str(&route_yaml(
        "public",
        "{match: {paths: [{prefix: /public}]}, backends: [{service: echo}]}",
    ));
    m.push_str(&route_yaml(
        "private",
        "{match: {paths: [{prefix: /private}]}, auth: {scopes: ['orders:read']}, backends: [{service: echo}]}",
    ));
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_gets_config_and_calls_authz_and_accesslog_over_mtls() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let echo = echo("echo").await;
    let s = servers(&pki, dir.path(), &manifests(echo)).await;
    let gw = Gateway::from_bootstrap(&bootstrap(s.xds, "node-a", &pki.node_a), &[]).await;

    // Config over mTLS xDS: the Route is served.
    serves_and_authenticates(&gw).await;
    // Envoy → authz over mTLS: a decision both ways (a failed call would be a 403/503).
    assert_eq!(gw.get("example.com", "/private").await.status, 401);
    // Envoy → accesslog over mTLS: the records arrive.
    let deadline = std::time::Instant::now() + STARTUP;
    loop {
        let text = std::fs::read_to_string(&s.log_file).unwrap_or_default();
        if text.contains("/public/x") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no access log record over mTLS; file: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The control plane lists the node as connected.
    let debug = get_json(&format!("http://{}/debug/xds", s.admin)).await;
    assert!(debug.to_string().contains("node-a"), "{debug}");
}

/// Connects over TLS, sends the HTTP/2 preface and reads: `Ok(bytes)` when the server
/// answered (its SETTINGS), `Err` with the TLS error when it refused the client.
pub(crate) async fn talk(addr: SocketAddr, client: &ClientTls) -> Result<usize, String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let attempt = async {
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(client.rustls())
            .connect(name, tcp)
            .await?;
        tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await?;
        let mut buf = [0u8; 64];
        tls.read(&mut buf).await
    };
    match tokio::time::timeout(Duration::from_secs(20), attempt).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_refuse_clients_without_a_certificate_or_from_another_ca() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let s = servers(&pki, dir.path(), &manifests(echo("echo").await)).await;
    let good = pki.client(&pki.node_a);
    let anonymous = ClientTls::without_client_cert(&pki.server.ca).unwrap();
    let stranger = pki.client(&pki.stranger);
    for (what, addr) in [
        ("xds", s.xds),
        ("authz", s.authz),
        ("ratelimit", s.ratelimit),
        ("accesslog", s.accesslog),
    ] {
        let n = talk(addr, &good).await;
        assert!(
            matches!(n, Ok(n) if n > 0),
            "{what} with a good certificate: {n:?}"
        );
        let err = talk(addr, &anonymous).await.unwrap_err();
        assert!(
            err.contains("CertificateRequired"),
            "{what} without a certificate: {err}"
        );
        let err = talk(addr, &stranger).await.unwrap_err();
        assert!(
            err.contains("UnknownCA") || err.contains("BadCertificate"),
            "{what} with another CA's certificate: {err}"
        );
        // Plaintext HTTP/2 (h2c) to an mTLS port gets no HTTP/2 answer.
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 9];
        let read = tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut buf)).await;
        // An HTTP/2 SETTINGS frame has type 4 at byte 3; a TLS alert starts with 0x15.
        assert!(
            !matches!(read, Ok(Ok(n)) if n >= 4 && buf[3] == 4),
            "{what} answered plaintext HTTP/2"
        );
    }
}

fn ads_request(node: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        node: Some(Node {
            id: node.into(),
            cluster: "e2e".into(),
            ..Default::default()
        }),
        type_url: portcullis_xds::type_url::CLUSTER.into(),
        ..Default::default()
    }
}

/// The first message of an ADS stream opened with `client` asking as `node`.
pub(crate) async fn subscribe(
    xds: SocketAddr,
    client: &ClientTls,
    node: &str,
) -> Result<usize, tonic::Status> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("https://{xds}")).unwrap();
    let channel = portcullis_tls::mtls::channel(endpoint, client)
        .await
        .unwrap();
    let mut ads = AggregatedDiscoveryServiceClient::new(channel);
    let mut stream = ads
        .stream_aggregated_resources(tokio_stream::iter([ads_request(node)]))
        .await?
        .into_inner();
    let first = tokio::time::timeout(STARTUP, stream.message())
        .await
        .expect("an answer or a status");
    first.map(|r| r.expect("a response").resources.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_node_a_cannot_subscribe_as_node_b() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let s = servers(&pki, dir.path(), &manifests(echo("echo").await)).await;
    let client = pki.client(&pki.node_a);
    // As itself: clusters arrive.
    assert!(subscribe(s.xds, &client, "node-a").await.unwrap() > 0);
    // As another node: refused, and told why.
    let status = subscribe(s.xds, &client, "node-b").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("node-a"), "{}", status.message());

    // A real Envoy with node-a's certificate and node id node-b: connected, refused,
    // never configured.
    let bootstrap = bootstrap(s.xds, "node-b", &pki.node_a);
    let log = dir.path().join("envoy.log");
    let envoy = portcullis::envoy::Envoy::start_with_args(
        &bootstrap.to_yaml().unwrap(),
        "warning",
        &["--log-path", log.to_str().unwrap()],
    )
    .await
    .unwrap();
    // Envoy's own report of the status it got (7: PERMISSION_DENIED).
    let refused = "StreamAggregatedResources gRPC config stream to xds closed: 7";
    let deadline = std::time::Instant::now() + STARTUP;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(refused) {
            assert!(text.contains("node-a"), "{text}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no refusal seen by Envoy: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, listeners) = fetch(&envoy.admin_url("/listeners?format=json"))
        .await
        .unwrap();
    assert!(!listeners.contains("\"http\""), "{listeners}");
    let debug = get_json(&format!("http://{}/debug/xds", s.admin)).await;
    assert!(!debug.to_string().contains("node-b"), "{debug}");
}

/// `portcullis <component>` on a non-loopback address without certificates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_off_loopback_refuses_to_start_naming_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec![
            "authz",
            "--grpc-addr",
            "0.0.0.0:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
        vec![
            "ratelimit",
            "--grpc-addr",
            "0.0.0.0:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
        vec![
            "accesslog",
            "--grpc-addr",
            "0.0.0.0:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
        vec![
            "serve",
            "--config",
            dir.path().to_str().unwrap(),
            "--xds-addr",
            "0.0.0.0:0",
            "--admin-addr",
            "127.0.0.1:0",
        ],
        vec!["controller", "--xds-addr", "0.0.0.0:0"],
    ] {
        let out = tokio::process::Command::new(portcullis_bin())
            .args(&args)
            .env_remove("PORTCULLIS_INSECURE")
            .env_remove("KUBECONFIG")
            .stdin(std::process::Stdio::null())
            .output();
        let out = tokio::time::timeout(STARTUP, out).await.unwrap().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        for flag in [
            "--tls-cert",
            "--tls-key",
            "--client-ca",
            "--insecure",
            "not a loopback",
        ] {
            assert!(
                stderr.contains(flag),
                "{args:?}: {stderr} should name {flag}"
            );
        }
    }
    // With --insecure it starts (and is stopped here).
    let mut child = tokio::process::Command::new(portcullis_bin())
        .args([
            "accesslog",
            "--grpc-addr",
            "0.0.0.0:0",
            "--metrics-addr",
            "127.0.0.1:0",
            "--insecure",
        ])
        .kill_on_drop(true)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stderr.take().unwrap()));
    let serving = async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("access log service serving") {
                return true;
            }
        }
        false
    };
    let started = tokio::time::timeout(STARTUP, serving)
        .await
        .unwrap_or(false);
    let _ = child.kill().await;
    assert!(started, "--insecure on 0.0.0.0 did not start");
}
