use std::path::PathBuf;

use super::*;
use crate::mtls::generate::{LocalCa, write_dir};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn files(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca = LocalCa::new("test CA").unwrap();
    let leaf = ca.issue("server", &["127.0.0.1"], &[]).unwrap();
    let f = write_dir(dir, &ca, &[("server", &leaf)]).unwrap();
    (f[0].cert.clone(), f[0].key.clone(), f[0].ca.clone())
}

#[test]
fn loopback_without_flags_is_plaintext() {
    let t = MtlsArgs::default()
        .transport(addr("127.0.0.1:0"), "--grpc-addr")
        .unwrap();
    assert!(!t.is_mtls());
    let t = MtlsArgs::default()
        .transport(addr("[::1]:8082"), "--grpc-addr")
        .unwrap();
    assert!(!t.is_mtls());
}

#[test]
fn non_loopback_without_flags_refuses_and_names_the_flags() {
    for a in ["0.0.0.0:8082", "10.0.0.5:8082", "[::]:8082"] {
        let err = MtlsArgs::default()
            .transport(addr(a), "--grpc-addr")
            .unwrap_err()
            .to_string();
        for flag in [
            "--grpc-addr",
            "--tls-cert",
            "--tls-key",
            "--client-ca",
            "--insecure",
        ] {
            assert!(err.contains(flag), "{a}: {err} should name {flag}");
        }
    }
}

#[test]
fn insecure_allows_plaintext_anywhere() {
    let args = MtlsArgs {
        insecure: true,
        ..Default::default()
    };
    assert!(!args.transport(addr("0.0.0.0:1"), "--x").unwrap().is_mtls());
}

#[test]
fn partial_flags_name_what_is_missing() {
    let args = MtlsArgs {
        tls_cert: Some("c.pem".into()),
        ..Default::default()
    };
    // Even on loopback: half a TLS setting is a mistake, not a request for plaintext.
    let err = args
        .transport(addr("127.0.0.1:1"), "--x")
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing --tls-key, --client-ca"), "{err}");
    let args = MtlsArgs {
        tls_cert: Some("c.pem".into()),
        tls_key: Some("k.pem".into()),
        ..Default::default()
    };
    let err = args
        .transport(addr("0.0.0.0:1"), "--x")
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing --client-ca"), "{err}");
}

#[test]
fn insecure_with_certificates_is_a_contradiction() {
    let args = MtlsArgs {
        tls_cert: Some("c".into()),
        tls_key: Some("k".into()),
        client_ca: Some("ca".into()),
        insecure: true,
    };
    assert_eq!(
        args.transport(addr("127.0.0.1:1"), "--x").unwrap_err(),
        MtlsError::InsecureWithCertificates
    );
}

#[test]
fn all_three_files_give_mtls_and_bad_files_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = files(&dir.path().join("tls"));
    let args = MtlsArgs {
        tls_cert: Some(cert.clone()),
        tls_key: Some(key.clone()),
        client_ca: Some(ca.clone()),
        insecure: false,
    };
    assert!(args.transport(addr("0.0.0.0:1"), "--x").unwrap().is_mtls());
    // The key of another certificate.
    let (_, other_key, _) = files(&dir.path().join("other"));
    let err = MtlsArgs {
        tls_key: Some(other_key),
        ..args.clone()
    }
    .transport(addr("0.0.0.0:1"), "--x")
    .unwrap_err()
    .to_string();
    assert!(err.contains("--tls-key"), "{err}");
    // A CA file that is not PEM.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let err = MtlsArgs {
        client_ca: Some(junk),
        ..args.clone()
    }
    .transport(addr("0.0.0.0:1"), "--x")
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("--client-ca") && err.contains("no certificate"),
        "{err}"
    );
    // A key file that is a certificate: the message must not quote the file.
    let err = MtlsArgs {
        tls_key: Some(cert.clone()),
        ..args
    }
    .transport(addr("0.0.0.0:1"), "--x")
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("not a PEM private key") && !err.contains("BEGIN"),
        "{err}"
    );
}

#[test]
fn flags_and_env_parse() {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        tls: MtlsArgs,
    }
    let cli = <Cli as clap::Parser>::try_parse_from([
        "x",
        "--tls-cert",
        "c",
        "--tls-key",
        "k",
        "--client-ca",
        "ca",
    ])
    .unwrap();
    assert_eq!(cli.tls.tls_cert, Some("c".into()));
    assert_eq!(cli.tls.client_ca, Some("ca".into()));
    assert_eq!(
        cli.tls.to_args(),
        ["--tls-cert", "c", "--tls-key", "k", "--client-ca", "ca"]
    );
    let cli = <Cli as clap::Parser>::try_parse_from(["x", "--insecure"]).unwrap();
    assert!(cli.tls.insecure);
}
