//! Handshakes against the mTLS acceptor over real sockets.
use std::{path::Path, sync::Arc, time::Duration};

use futures::StreamExt;
use portcullis_tls::mtls::{
    ClientTls, Conn, MtlsArgs, NodeGrant, Transport,
    generate::{Files, LocalCa, write_dir},
    incoming, node_grants,
};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn issue(dir: &Path, ca: &LocalCa, name: &str, nodes: &[&str]) -> Files {
    let leaf = ca.issue(name, &["127.0.0.1", "localhost"], nodes).unwrap();
    write_dir(dir, ca, &[(name, &leaf)]).unwrap().remove(0)
}

fn transport(server: &Files) -> Transport {
    MtlsArgs {
        tls_cert: Some(server.cert.clone()),
        tls_key: Some(server.key.clone()),
        client_ca: Some(server.ca.clone()),
        insecure: false,
    }
    .transport("127.0.0.1:0".parse().unwrap(), "--grpc-addr")
    .unwrap()
}

/// A server that answers "ok" to every connection, and sends each accepted
/// connection's client certificate to the test.
async fn serve(
    transport: Transport,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Option<CertificateDer<'static>>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut conns = incoming(listener, &transport);
    tokio::spawn(async move {
        while let Some(Ok(mut conn)) = conns.next().await {
            let peer = tonic::transport::server::Connected::connect_info(&conn);
            let _ = tx.send(peer.leaf().cloned());
            if let Conn::Tls(_) = conn {
                let _ = conn.write_all(b"ok").await;
                let _ = conn.shutdown().await;
            }
        }
    });
    (addr, rx)
}

/// Connects with `client`; returns what the server sent and the server's certificate.
async fn call(
    addr: std::net::SocketAddr,
    client: &ClientTls,
) -> Result<(String, CertificateDer<'static>), String> {
    let config = client_config(client);
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let server_cert = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let mut buf = String::new();
    // TLS 1.3: the client's handshake ends before the server has checked its
    // certificate; the refusal arrives as an alert on the first read.
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_string(&mut buf))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())?;
    Ok((buf, server_cert))
}

fn client_config(client: &ClientTls) -> Arc<rustls::ClientConfig> {
    client.rustls()
}

#[tokio::test]
async fn client_certificates_are_required_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::new("portcullis test CA").unwrap();
    let server = issue(&dir.path().join("ca"), &ca, "server", &[]);
    let envoy = issue(&dir.path().join("ca"), &ca, "envoy", &["node-a"]);
    let other_ca = LocalCa::new("someone else's CA").unwrap();
    let stranger = issue(&dir.path().join("other"), &other_ca, "envoy", &["node-a"]);
    let (addr, mut accepted) = serve(transport(&server)).await;

    let good = ClientTls::load(&envoy.cert, &envoy.key, &envoy.ca, ["c", "k", "ca"]).unwrap();
    let (body, _) = call(addr, &good).await.unwrap();
    assert_eq!(body, "ok");
    let leaf = accepted.recv().await.unwrap().expect("client certificate");
    assert_eq!(node_grants(&leaf), [NodeGrant::Exact("node-a".into())]);

    let anonymous = ClientTls::without_client_cert(&server.ca).unwrap();
    let err = call(addr, &anonymous).await.unwrap_err();
    assert!(
        err.contains("CertificateRequired") || err.contains("certificate"),
        "{err}"
    );

    // Trusts our server, but its own certificate is from another CA.
    let foreign =
        ClientTls::load(&stranger.cert, &stranger.key, &server.ca, ["c", "k", "ca"]).unwrap();
    let err = call(addr, &foreign).await.unwrap_err();
    assert!(
        err.contains("UnknownCA") || err.contains("unknown"),
        "{err}"
    );

    // Neither refused handshake reached the server as a connection.
    assert!(accepted.try_recv().is_err());
}

#[tokio::test]
async fn a_rotated_server_certificate_is_used_by_the_next_connection() {
    let dir = tempfile::tempdir().unwrap();
    let ca = LocalCa::new("portcullis test CA").unwrap();
    let tls_dir = dir.path().join("tls");
    let server = issue(&tls_dir, &ca, "server", &[]);
    let envoy = issue(&dir.path().join("client"), &ca, "envoy", &["n"]);
    let client = ClientTls::load(&envoy.cert, &envoy.key, &server.ca, ["c", "k", "ca"]).unwrap();
    let (addr, _accepted) = serve(transport(&server)).await;
    let (_, first) = call(addr, &client).await.unwrap();

    // A half-written rotation (garbage key) keeps the old certificate serving.
    std::fs::write(&server.key, "-----BEGIN PRIVATE KEY-----\ngarbage").unwrap();
    let (_, during) = call(addr, &client).await.unwrap();
    assert_eq!(during, first);

    let renewed = ca.issue("server", &["127.0.0.1"], &[]).unwrap();
    std::fs::write(&server.cert, &renewed.cert_pem).unwrap();
    std::fs::write(&server.key, &renewed.key_pem).unwrap();
    let (_, after) = call(addr, &client).await.unwrap();
    assert_ne!(after, first);
    let expected = CertificateDer::from_pem_slice(renewed.cert_pem.as_bytes()).unwrap();
    assert_eq!(after, expected);
}

#[test]
fn node_grants_read_uri_names_only() {
    let ca = LocalCa::new("ca").unwrap();
    let leaf = ca
        .issue("x", &["node-b.example"], &["edge-envoy-*", "node-a"])
        .unwrap();
    let der = CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap();
    let grants = node_grants(&der);
    assert_eq!(
        grants,
        [
            NodeGrant::Prefix("edge-envoy-".into()),
            NodeGrant::Exact("node-a".into())
        ]
    );
    assert!(grants[0].allows("edge-envoy-7d9f-abcde"));
    assert!(!grants[0].allows("other-edge-envoy-1"));
    assert!(!grants[1].allows("node-a2"));
    // A DNS name equal to a node id grants nothing.
    let leaf = ca.issue("node-b", &["node-b"], &[]).unwrap();
    let der = CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap();
    assert!(node_grants(&der).is_empty());
}
