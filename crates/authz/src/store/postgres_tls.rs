//! TLS for the PostgreSQL key store, spelled as libpq spells it in the connection
//! string: `sslmode` and `sslrootcert`. tokio-postgres knows neither `verify-ca` nor
//! `verify-full` nor `sslrootcert`, so they are taken out of the string here and turned
//! into a rustls connector:
//!
//! | `sslmode` | here |
//! |---|---|
//! | absent, `disable`, `prefer` | no TLS (as before: tokio-postgres without a connector) |
//! | `verify-full` | TLS; the server's certificate chains to `sslrootcert` and names the host |
//! | `verify-ca`, `require` + `sslrootcert` | TLS; the certificate chains to `sslrootcert` (any name) |
//! | `require` without `sslrootcert` | refused: it would encrypt without checking who answers |
//!
//! `sslrootcert` is a PEM file of CA certificates, read at start, or `system` for the
//! public web PKI roots (Mozilla's list, built in). Client certificates (`sslcert`,
//! `sslkey`) are not supported and refused by name.
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// The connection settings: tokio-postgres's, and the TLS connector when TLS is on.
pub struct Connection {
    pub config: tokio_postgres::Config,
    pub tls: Option<MakeRustls>,
}

/// Parses a libpq-style URL (`postgres://…?sslmode=verify-full&sslrootcert=/ca.pem`) or
/// key=value string. The error says what to write instead.
pub fn parse(url: &str) -> Result<Connection, String> {
    let (rest, mode, root) = take_tls_params(url)?;
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e| format!("{e}"))?;
    let verify_name = match (mode.as_deref(), &root) {
        (None | Some("disable") | Some("prefer"), _) => {
            return Ok(Connection { config, tls: None });
        }
        (Some("verify-full"), Some(_)) => true,
        (Some("verify-ca" | "require"), Some(_)) => false,
        (Some("require"), None) => {
            return Err("sslmode=require without sslrootcert would encrypt without checking who answers; write sslmode=verify-full&sslrootcert=<CA PEM file> (or sslrootcert=system)".into());
        }
        (Some(m @ ("verify-full" | "verify-ca")), None) => {
            return Err(format!(
                "sslmode={m} needs sslrootcert=<CA PEM file> (or sslrootcert=system for the public web roots)"
            ));
        }
        (Some(other), _) => {
            return Err(format!(
                "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
            ));
        }
    };
    let roots = load_roots(root.as_deref().unwrap_or("system"))?;
    config.ssl_mode(tokio_postgres::config::SslMode::Require);
    Ok(Connection {
        config,
        tls: Some(MakeRustls::new(roots, verify_name)?),
    })
}

/// Removes `sslmode` and `sslrootcert` from `url`, returning what is left and the two
/// values. Both the URL form and the key=value form are understood.
fn take_tls_params(url: &str) -> Result<(String, Option<String>, Option<String>), String> {
    let (mut mode, mut root) = (None, None);
    let mut take = |key: &str, value: String| -> Result<bool, String> {
        match key {
            "sslmode" => mode = Some(value),
            "sslrootcert" => root = Some(value),
            "sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir" => {
                return Err(format!(
                    "{key}: client certificates and CRLs are not supported"
                ));
            }
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = Vec::new();
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = param.split_once('=').unwrap_or((param, ""));
            if !take(k, percent_decode(v))? {
                kept.push(param);
            }
        }
        if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else {
        let mut kept = Vec::new();
        for (key, value, raw) in key_values(url)? {
            if !take(&key, value)? {
                kept.push(raw);
            }
        }
        kept.join(" ")
    };
    Ok((rest, mode, root))
}

/// `key = value` pairs of a libpq key=value string, with each pair's original text.
fn key_values(s: &str) -> Result<Vec<(String, String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            return Ok(out);
        };
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        if chars.next_if(|(_, c)| *c == '=').is_none() {
            return Err(format!("`{key}`: write key=value"));
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        let quoted = chars.next_if(|(_, c)| *c == '\'').is_some();
        let mut end = s.len();
        loop {
            let Some((i, c)) = chars.next() else {
                if quoted {
                    return Err(format!("{key}: unterminated quoted value"));
                }
                break;
            };
            match c {
                '\\' => value.extend(chars.next().map(|(_, c)| c)),
                '\'' if quoted => {
                    end = i + 1;
                    break;
                }
                c if c.is_whitespace() && !quoted => {
                    end = i;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((key, value, s[start..end].to_string()));
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).and_then(|c| hex(*c)),
            b.get(i + 2).and_then(|c| hex(*c)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, ..) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn load_roots(root: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    if root == "system" {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(roots);
    }
    let certs = CertificateDer::pem_file_iter(root)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("sslrootcert={root}: {e}"))?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "sslrootcert={root}: no CA certificate in it; give a PEM file of CA certificates"
        ));
    }
    Ok(roots)
}

/// tokio-postgres's TLS hook, on rustls.
#[derive(Clone)]
pub struct MakeRustls {
    config: Arc<ClientConfig>,
}

impl MakeRustls {
    fn new(roots: RootCertStore, verify_name: bool) -> Result<MakeRustls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| format!("sslrootcert: {e}"))?;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let config = if verify_name {
            builder.with_webpki_verifier(verifier).with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyName(verifier)))
                .with_no_client_auth()
        };
        Ok(MakeRustls {
            config: Arc::new(config),
        })
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, host: &str) -> Result<RustlsConnect, Self::Error> {
        Ok(RustlsConnect {
            config: self.config.clone(),
            name: ServerName::try_from(host)?.to_owned(),
        })
    }
}

pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(RustlsStream(tls))
        })
    }
}

pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    /// No SCRAM channel binding (SCRAM still authenticates; tokio-postgres's default
    /// `channel_binding=prefer` then goes without).
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name is not checked.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain first and the name last, so a name error means the
        // chain was good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_params_come_out_of_both_spellings() {
        let (rest, mode, root) = take_tls_params(
            "postgres://u:p@db:5432/keys?connect_timeout=2&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@db:5432/keys?connect_timeout=2");
        assert_eq!(
            (mode.as_deref(), root.as_deref()),
            (Some("verify-full"), Some("/etc/ca.pem"))
        );
        let (rest, mode, root) = take_tls_params(
            "host=db  sslmode = verify-ca user='a b' sslrootcert='/etc/my ca.pem' password=x\\ y",
        )
        .unwrap();
        assert_eq!(rest, "host=db user='a b' password=x\\ y");
        assert_eq!(
            (mode.as_deref(), root.as_deref()),
            (Some("verify-ca"), Some("/etc/my ca.pem"))
        );
        assert!(rest.parse::<tokio_postgres::Config>().is_ok());
        let (rest, mode, _) = take_tls_params("postgres://db/keys").unwrap();
        assert_eq!((rest.as_str(), mode), ("postgres://db/keys", None));
    }

    #[test]
    fn unsafe_or_unknown_tls_settings_are_refused_with_the_fix() {
        let ca = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(ca.path(), "not a certificate").unwrap();
        let empty_ca = format!(
            "postgres://db/k?sslmode=verify-full&sslrootcert={}",
            ca.path().display()
        );
        for (url, want) in [
            ("postgres://db/k?sslmode=verify-full", "needs sslrootcert"),
            ("host=db sslmode=verify-ca", "needs sslrootcert"),
            (
                "postgres://db/k?sslmode=require",
                "without checking who answers",
            ),
            ("postgres://db/k?sslmode=allow", "not one of"),
            (
                "postgres://db/k?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
                "sslrootcert=/nonexistent",
            ),
            (empty_ca.as_str(), "no CA certificate"),
            ("postgres://db/k?sslcert=/c.pem", "client certificates"),
            ("host=db sslmode='verify-full", "unterminated"),
        ] {
            let err = parse(url).err().unwrap_or_else(|| panic!("{url} accepted"));
            assert!(err.contains(want), "{url}: {err}");
        }
        assert!(
            parse("postgres://db/k?sslmode=verify-full&sslrootcert=system")
                .unwrap()
                .tls
                .is_some()
        );
        assert!(
            parse("postgres://db/k?sslmode=disable")
                .unwrap()
                .tls
                .is_none()
        );
        assert!(parse("postgres://db/k").unwrap().tls.is_none());
    }
}
