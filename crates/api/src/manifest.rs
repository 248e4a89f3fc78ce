//! Manifests → objects. The one place that parses YAML (serde_yaml is unmaintained
//! upstream, so it stays behind this module).
//!
//! A file may hold many documents; each one parses on its own, so one bad document is
//! reported (with its index and the field serde names) and the others still load.
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use crate::{GROUP, Host, Route, Service, VERSION, model::ObjectKey};

/// One parsed manifest document.
#[derive(Clone, Debug)]
pub enum Document {
    Route(Arc<Route>),
    Service(Arc<Service>),
    Host(Arc<Host>),
}

/// Objects by kind, as validation takes them.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    pub routes: Vec<Arc<Route>>,
    pub services: Vec<Arc<Service>>,
    pub hosts: Vec<Arc<Host>>,
}

impl Objects {
    /// Every document of `text`, or the first that does not parse.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let docs = parse_documents(text)
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_documents(&docs))
    }

    pub fn from_documents<'a>(docs: impl IntoIterator<Item = &'a Document>) -> Self {
        let mut out = Objects::default();
        for d in docs {
            match d {
                Document::Route(r) => out.routes.push(r.clone()),
                Document::Service(s) => out.services.push(s.clone()),
                Document::Host(h) => out.hosts.push(h.clone()),
            }
        }
        out
    }
}

/// Equal when kind, name and spec are equal: what is served, not bookkeeping.
impl PartialEq for Document {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Document::Route(a), Document::Route(b)) => {
                a.metadata.name == b.metadata.name
                    && a.metadata.namespace == b.metadata.namespace
                    && a.spec == b.spec
            }
            (Document::Service(a), Document::Service(b)) => {
                a.metadata.name == b.metadata.name
                    && a.metadata.namespace == b.metadata.namespace
                    && a.spec == b.spec
            }
            (Document::Host(a), Document::Host(b)) => {
                a.metadata.name == b.metadata.name
                    && a.metadata.namespace == b.metadata.namespace
                    && a.spec == b.spec
            }
            _ => false,
        }
    }
}

impl Document {
    /// The same object in every field (metadata, spec, status), unlike `==`, which
    /// ignores bookkeeping. What was derived from one (a validation report reads the
    /// creation time and generation) holds for the other.
    pub fn identical(&self, other: &Self) -> bool {
        match (self, other) {
            (Document::Route(a), Document::Route(b)) => {
                Arc::ptr_eq(a, b)
                    || (a.metadata == b.metadata && a.spec == b.spec && a.status == b.status)
            }
            (Document::Service(a), Document::Service(b)) => {
                Arc::ptr_eq(a, b)
                    || (a.metadata == b.metadata && a.spec == b.spec && a.status == b.status)
            }
            (Document::Host(a), Document::Host(b)) => {
                Arc::ptr_eq(a, b)
                    || (a.metadata == b.metadata && a.spec == b.spec && a.status == b.status)
            }
            _ => false,
        }
    }

    pub fn key(&self) -> ObjectKey {
        match self {
            Document::Route(r) => ObjectKey::new("Route", &r.metadata),
            Document::Service(s) => ObjectKey::new("Service", &s.metadata),
            Document::Host(h) => ObjectKey::new("Host", &h.metadata),
        }
    }
}

/// Why one document could not be read. `index` counts documents from 0 in the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("document {index}{}: {message}", object.as_ref().map(|o| format!(" ({o})")).unwrap_or_default())]
pub struct ParseError {
    pub index: usize,
    /// The object, when kind, name and namespace could be read.
    pub key: Option<ObjectKey>,
    /// `Kind namespace/name` when the document got far enough to say.
    pub object: Option<String>,
    pub message: String,
}

/// Parses every document of a multi-document YAML text. Empty documents (a trailing
/// `---`, comments only) are skipped.
pub fn parse_documents(text: &str) -> Vec<Result<Document, ParseError>> {
    let mut out = Vec::new();
    for (index, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = match serde::Deserialize::deserialize(de) {
            Ok(Value::Null) => continue,
            Ok(v) => v,
            Err(e) => {
                out.push(Err(ParseError {
                    index,
                    key: None,
                    object: None,
                    message: format!("not valid YAML: {e}"),
                }));
                // The YAML stream is broken past this point; serde_yaml cannot resync.
                break;
            }
        };
        out.push(parse_value(index, value));
    }
    out
}

fn parse_value(index: usize, value: Value) -> Result<Document, ParseError> {
    let key = object_key(&value);
    let err = |object: Option<String>, message: String| ParseError {
        index,
        key: key.clone(),
        object,
        message,
    };
    let Value::Mapping(map) = &value else {
        return Err(err(
            None,
            "expected a mapping with apiVersion, kind, metadata and spec".into(),
        ));
    };
    let field = |k: &str| map.get(k).and_then(Value::as_str).map(str::to_owned);
    let kind = field("kind").unwrap_or_default();
    let api_version = field("apiVersion").unwrap_or_default();
    let name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let label = name.as_ref().map(|n| format!("{kind} {n}"));
    let expected = format!("{GROUP}/{VERSION}");
    if api_version != expected {
        return Err(err(
            label,
            format!("apiVersion: got {api_version:?}; set it to {expected:?}"),
        ));
    }
    if name.as_deref().unwrap_or("").is_empty() {
        return Err(err(
            None,
            "metadata.name: missing; every object needs a name".into(),
        ));
    }
    match kind.as_str() {
        "Route" => typed::<Route>(value).map(|r| Document::Route(Arc::new(defaulted(r)))),
        "Service" => typed::<Service>(value).map(|s| Document::Service(Arc::new(defaulted(s)))),
        "Host" => typed::<Host>(value).map(|h| Document::Host(Arc::new(defaulted(h)))),
        other => Err(format!(
            "kind: {other:?} is not a Portcullis kind; use Route, Service or Host"
        )),
    }
    .map_err(|message| err(label, message))
}

fn object_key(value: &Value) -> Option<ObjectKey> {
    let kind = match value.get("kind")?.as_str()? {
        "Route" => "Route",
        "Service" => "Service",
        "Host" => "Host",
        _ => return None,
    };
    let meta = value.get("metadata")?;
    let name = meta.get("name")?.as_str()?;
    let namespace = meta
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    Some(ObjectKey {
        kind,
        namespace: namespace.into(),
        name: name.into(),
    })
}

fn typed<T: DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.into_inner().to_string()
        } else {
            format!("{path}: {}", e.into_inner())
        }
    })
}

/// Objects read from files have no namespace unless they say so; Kubernetes would
/// default it the same way.
fn defaulted<K: kube::Resource>(mut obj: K) -> K {
    let meta = obj.meta_mut();
    if meta.namespace.as_deref().unwrap_or("").is_empty() {
        meta.namespace = Some("default".into());
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_kinds_and_defaults_namespace() {
        let docs = parse_documents(
            r#"
apiVersion: portcullis.dev/v1alpha1
kind: Service
metadata: {name: echo}
spec:
  destinations: [{name: local, address: "127.0.0.1:8080"}]
---
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: r, namespace: team}
spec:
  match: {paths: [{prefix: /}]}
  backends: [{service: echo}]
---
"#,
        );
        assert_eq!(docs.len(), 2);
        let keys: Vec<String> = docs
            .iter()
            .map(|d| d.as_ref().unwrap().key().to_string())
            .collect();
        assert_eq!(keys, ["Service default/echo", "Route team/r"]);
    }

    #[test]
    fn reports_the_field_and_keeps_going() {
        let docs = parse_documents(
            r#"
apiVersion: portcullis.dev/v1alpha1
kind: Service
metadata: {name: bad}
spec:
  destinations: [{name: a, address: "1.2.3.4:80"}]
  timeout: 30
---
apiVersion: portcullis.dev/v1alpha1
kind: Gateway
metadata: {name: g}
---
apiVersion: portcullis.dev/v1alpha1
kind: Route
metadata: {name: typo}
spec:
  match: {paths: [{prefix: /}]}
  backend: [{service: echo}]
"#,
        );
        assert_eq!(docs.len(), 3);
        let msgs: Vec<String> = docs
            .iter()
            .map(|d| d.as_ref().unwrap_err().to_string())
            .collect();
        assert!(
            msgs[0].contains("spec.timeout") && msgs[0].contains("30s"),
            "{}",
            msgs[0]
        );
        assert!(
            msgs[1].contains("document 1") && msgs[1].contains("use Route, Service or Host"),
            "{}",
            msgs[1]
        );
        assert!(msgs[2].contains("backend"), "{}", msgs[2]);
    }
}
