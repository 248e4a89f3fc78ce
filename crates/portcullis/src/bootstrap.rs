//! Envoy bootstrap: node identity, admin address, and ADS (SotW or Delta) to the
//! control plane. Everything else (listeners, routes, clusters) comes over xDS.
//! With [`Bootstrap::mtls`] Envoy presents a client certificate to the control plane
//! (and to authz, ratelimit and accesslog, whose clusters name the same static
//! secrets): the bootstrap holds file paths only, Envoy reads the files.
use std::path::PathBuf;

use portcullis_contract::mtls::{CLIENT_CERT_SECRET, SERVER_CA_SECRET, sds_file};
use serde_json::{Value, json};

/// Envoy's client certificate and the CA of the Portcullis servers, as files.
#[derive(Clone, Debug)]
pub struct ClientFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

#[derive(Clone, Debug)]
pub struct Bootstrap {
    /// Control plane ADS address, `host:port`.
    pub xds_addr: String,
    pub node_id: String,
    pub node_cluster: String,
    /// Admin port on 127.0.0.1; 0 lets the kernel choose (read it back with
    /// `--admin-address-path`).
    pub admin_port: u16,
    /// HTTP listener port, recorded in node metadata for operators; the listener itself
    /// comes from the control plane (`serve --listen-port`).
    pub listen_port: u16,
    /// Incremental (Delta) xDS instead of State of the World.
    pub delta: bool,
    /// mTLS to the control plane and the filter services.
    pub mtls: Option<ClientFiles>,
    /// With `mtls`: the two secrets are path-based SDS files in this directory
    /// ([`Bootstrap::sds_files`]; the control plane's `--component-mtls-sds-dir`), which
    /// Envoy re-reads when the certificate files are replaced; `None`: static secrets,
    /// read once at start.
    pub sds_dir: Option<PathBuf>,
}

impl Bootstrap {
    pub fn new(xds_addr: impl Into<String>, node_id: impl Into<String>) -> Self {
        Self {
            xds_addr: xds_addr.into(),
            node_id: node_id.into(),
            node_cluster: "portcullis".into(),
            admin_port: 9901,
            listen_port: 10000,
            delta: false,
            mtls: None,
            sds_dir: None,
        }
    }

    pub fn to_json(&self) -> anyhow::Result<Value> {
        let (host, port, is_ip) = portcullis_api::validate::parse_address(&self.xds_addr)
            .map_err(|e| anyhow::anyhow!("--xds-addr: {e}"))?;
        let discovery = if is_ip { "STATIC" } else { "STRICT_DNS" };
        let ads = json!({"ads": {}, "resource_api_version": "V3"});
        let mut v = json!({
            "node": {
                "id": self.node_id,
                "cluster": self.node_cluster,
                "metadata": {"portcullis.dev/listen-port": self.listen_port},
            },
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": self.admin_port}}},
            "dynamic_resources": {
                "ads_config": {
                    "api_type": if self.delta { "DELTA_GRPC" } else { "GRPC" },
                    "transport_api_version": "V3",
                    "set_node_on_first_message_only": true,
                    "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}],
                },
                "cds_config": ads,
                "lds_config": ads,
            },
            "static_resources": {"clusters": [{
                "name": "xds",
                "type": discovery,
                "connect_timeout": "1s",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {
                            // Notices a dead control plane quickly; Envoy reconnects with backoff.
                            "connection_keepalive": {"interval": "15s", "timeout": "5s"}
                        }}
                    }
                },
                "load_assignment": {"cluster_name": "xds", "endpoints": [{"lb_endpoints": [{"endpoint": {
                    "address": {"socket_address": {"address": host, "port_value": port}}
                }}]}]},
            }]},
            // Without a connection limit Envoy warns at start and accepts without bound.
            "overload_manager": {"resource_monitors": [{
                "name": "envoy.resource_monitors.global_downstream_max_connections",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                    "max_active_downstream_connections": 50000
                }
            }]},
        });
        if let Some(files) = &self.mtls {
            let refer = |name: &str| match &self.sds_dir {
                None => json!({"name": name}),
                Some(dir) => json!({"name": name, "sds_config": {
                    "path_config_source": {"path": sds_file(&dir.to_string_lossy(), name)},
                    "resource_api_version": "V3",
                }}),
            };
            if self.sds_dir.is_none() {
                v["static_resources"]["secrets"] = json!(secrets(files));
            }
            let mut tls = json!({
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "common_tls_context": {
                    "tls_certificate_sds_secret_configs": [refer(CLIENT_CERT_SECRET)],
                    "validation_context_sds_secret_config": refer(SERVER_CA_SECRET),
                    "alpn_protocols": ["h2"],
                },
            });
            if !is_ip {
                tls["sni"] = json!(host);
            }
            v["static_resources"]["clusters"][0]["transport_socket"] =
                json!({"name": "envoy.transport_sockets.tls", "typed_config": tls});
        }
        Ok(v)
    }

    /// The path-based SDS files of [`Bootstrap::sds_dir`] (path, content): one secret
    /// each, watching the directories of the certificate files (a Kubernetes Secret
    /// volume swaps them all at once).
    pub fn sds_files(&self) -> Vec<(PathBuf, Value)> {
        let (Some(files), Some(dir)) = (&self.mtls, &self.sds_dir) else {
            return Vec::new();
        };
        secrets(files)
            .into_iter()
            .map(|mut secret| {
                secret["@type"] =
                    json!("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret");
                let name = secret["name"].as_str().unwrap_or_default().to_string();
                let path = PathBuf::from(sds_file(&dir.to_string_lossy(), &name));
                (path, json!({"resources": [secret]}))
            })
            .collect()
    }

    pub fn to_yaml(&self) -> anyhow::Result<String> {
        Ok(serde_yaml::to_string(&self.to_json()?)?)
    }
}

/// The two secrets naming `files`, each watching its files' directory.
fn secrets(files: &ClientFiles) -> [Value; 2] {
    let path = |p: &PathBuf| p.to_string_lossy().into_owned();
    let dir = |p: &PathBuf| {
        p.parent()
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_else(|| ".".into())
    };
    [
        json!({"name": CLIENT_CERT_SECRET, "tls_certificate": {
            "certificate_chain": {"filename": path(&files.cert)},
            "private_key": {"filename": path(&files.key)},
            "watched_directory": {"path": dir(&files.cert)},
        }}),
        json!({"name": SERVER_CA_SECRET, "validation_context": {
            "trusted_ca": {"filename": path(&files.ca)},
            "watched_directory": {"path": dir(&files.ca)},
        }}),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sotw_and_delta_variants() {
        let mut b = Bootstrap::new("127.0.0.1:18000", "n1");
        let v = b.to_json().unwrap();
        assert_eq!(v["dynamic_resources"]["ads_config"]["api_type"], "GRPC");
        assert_eq!(v["static_resources"]["clusters"][0]["type"], "STATIC");
        b.delta = true;
        b.xds_addr = "portcullis.system.svc:18000".into();
        let v = b.to_json().unwrap();
        assert_eq!(
            v["dynamic_resources"]["ads_config"]["api_type"],
            "DELTA_GRPC"
        );
        assert_eq!(v["static_resources"]["clusters"][0]["type"], "STRICT_DNS");
        b.xds_addr = "nope".into();
        assert!(b.to_json().unwrap_err().to_string().contains("host:port"));
    }

    #[test]
    fn mtls_names_files_and_never_holds_key_bytes() {
        let mut b = Bootstrap::new("portcullis.system.svc:18000", "n1");
        assert!(b.to_json().unwrap()["static_resources"]["secrets"].is_null());
        b.mtls = Some(ClientFiles {
            cert: "/tls/envoy.pem".into(),
            key: "/tls/envoy-key.pem".into(),
            ca: "/tls/ca.pem".into(),
        });
        let v = b.to_json().unwrap();
        let secrets = &v["static_resources"]["secrets"];
        assert_eq!(secrets[0]["name"], CLIENT_CERT_SECRET);
        assert_eq!(
            secrets[0]["tls_certificate"]["private_key"]["filename"],
            "/tls/envoy-key.pem"
        );
        assert_eq!(
            secrets[1]["validation_context"]["trusted_ca"]["filename"],
            "/tls/ca.pem"
        );
        let tls = &v["static_resources"]["clusters"][0]["transport_socket"]["typed_config"];
        assert_eq!(tls["sni"], "portcullis.system.svc");
        assert_eq!(
            tls["common_tls_context"]["tls_certificate_sds_secret_configs"][0]["name"],
            CLIENT_CERT_SECRET
        );
        assert!(!v.to_string().contains("inline"));
    }
}
