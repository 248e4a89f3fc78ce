//! Which xDS node ids a client certificate may subscribe as: its URI subject
//! alternative names under [`NODE_URI_PREFIX`]. A certificate naming no node may call
//! the filter services but not subscribe to xDS.
use portcullis_contract::mtls::NODE_URI_PREFIX;
use rustls_pki_types::CertificateDer;
use x509_parser::{extensions::GeneralName, prelude::FromDer};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeGrant {
    /// `spiffe://portcullis/node/<id>`: that node id only.
    Exact(String),
    /// `spiffe://portcullis/node/<prefix>*`: every node id starting with `<prefix>`
    /// (the pods of one Deployment share a certificate; their node ids are pod names).
    Prefix(String),
}

impl NodeGrant {
    pub fn allows(&self, node_id: &str) -> bool {
        match self {
            NodeGrant::Exact(id) => id == node_id,
            NodeGrant::Prefix(p) => node_id.starts_with(p.as_str()),
        }
    }
}

/// The node grants of a (verified) leaf certificate; none when it does not parse.
pub fn node_grants(leaf: &CertificateDer<'_>) -> Vec<NodeGrant> {
    let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(leaf) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(uri) => uri.strip_prefix(NODE_URI_PREFIX),
            _ => None,
        })
        .filter(|rest| !rest.is_empty())
        .map(|rest| match rest.strip_suffix('*') {
            Some(prefix) => NodeGrant::Prefix(prefix.to_string()),
            None => NodeGrant::Exact(rest.to_string()),
        })
        .collect()
}
