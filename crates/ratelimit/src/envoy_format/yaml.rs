//! The envoyproxy/ratelimit YAML as written in files: every field of its README's
//! config reference, plus two Portcullis extensions inside `rate_limit`
//! (`algorithm`, `on_store_failure`). Unknown fields are refused with their path.
//!
//! Like envoyproxy (Go's yaml.v2), scalars are read as strings wherever a string is
//! expected (`value: 500` is the value "500") and an empty field (`value:`) is absent.
use serde::Deserialize;
use serde::de::{Deserializer, Error as _};

/// A string field that also takes numbers and booleans, as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_yaml::Value::deserialize(d)? {
            serde_yaml::Value::String(s) => Ok(Scalar(s)),
            serde_yaml::Value::Number(n) => Ok(Scalar(n.to_string())),
            serde_yaml::Value::Bool(b) => Ok(Scalar(b.to_string())),
            serde_yaml::Value::Null => Ok(Scalar(String::new())),
            other => Err(D::Error::custom(format!(
                "expected a string, found {}",
                kind(&other)
            ))),
        }
    }
}

fn kind(v: &serde_yaml::Value) -> &'static str {
    match v {
        serde_yaml::Value::Sequence(_) => "a list",
        serde_yaml::Value::Mapping(_) => "a mapping",
        serde_yaml::Value::Tagged(_) => "a tagged value",
        _ => "a scalar",
    }
}

/// Text of an optional scalar; absent and empty are the same.
pub fn text(s: &Option<Scalar>) -> &str {
    s.as_ref().map_or("", |s| s.0.as_str())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YamlDomain {
    #[serde(default)]
    pub domain: Option<Scalar>,
    #[serde(default)]
    pub descriptors: Option<Vec<YamlDescriptor>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YamlDescriptor {
    #[serde(default)]
    pub key: Option<Scalar>,
    #[serde(default)]
    pub value: Option<Scalar>,
    #[serde(default)]
    pub rate_limit: Option<YamlRateLimit>,
    #[serde(default)]
    pub descriptors: Option<Vec<YamlDescriptor>>,
    #[serde(default)]
    pub shadow_mode: Option<bool>,
    #[serde(default)]
    pub quota_mode: Option<bool>,
    #[serde(default)]
    pub detailed_metric: Option<bool>,
    #[serde(default)]
    pub value_to_metric: Option<bool>,
    #[serde(default)]
    pub share_threshold: Option<bool>,
    /// envoyproxy returns it in the response's dynamic metadata with
    /// `RESPONSE_DYNAMIC_METADATA`; accepted here (it must be a mapping), not returned.
    #[serde(default)]
    #[allow(dead_code)]
    pub metadata: Option<serde_yaml::Mapping>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YamlRateLimit {
    #[serde(default)]
    pub unit: Option<Scalar>,
    #[serde(default)]
    pub requests_per_unit: Option<u32>,
    #[serde(default)]
    pub unlimited: Option<bool>,
    #[serde(default)]
    pub name: Option<Scalar>,
    #[serde(default)]
    pub replaces: Option<Vec<YamlReplace>>,
    /// Portcullis extension: `sliding` or `fixed` (default: `--algorithm`).
    #[serde(default)]
    pub algorithm: Option<String>,
    /// Portcullis extension: `allow` or `deny` when the store fails.
    #[serde(default)]
    pub on_store_failure: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YamlReplace {
    #[serde(default)]
    pub name: Option<Scalar>,
}

/// One YAML document as a domain, with the failing field's path on error.
pub fn domain_from(value: serde_yaml::Value) -> Result<YamlDomain, String> {
    serde_path_to_error::deserialize::<_, YamlDomain>(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            inner
        } else {
            format!("{path}: {inner}")
        }
    })
}
