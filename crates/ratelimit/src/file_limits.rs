//! Limits from a set of files: each YAML document is an envoyproxy/ratelimit domain
//! (a mapping with `domain:`) or a Limitador limits list (a sequence). The whole set
//! loads or none of it does.
use crate::envoy_format::{EnvoyConfig, FormatError, split_documents};
use crate::limit::Defaults;
use crate::limitador::LimitadorLimits;

/// One configuration file: its name (for messages) and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    pub name: String,
    pub text: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    pub defaults: Defaults,
    /// envoyproxy `MERGE_DOMAIN_CONFIG`: one domain may be split over several files.
    pub merge_domains: bool,
}

#[derive(Debug, Default)]
pub struct FileLimits {
    pub envoy: EnvoyConfig,
    pub limitador: LimitadorLimits,
    pub defaults: Defaults,
}

impl FileLimits {
    pub fn load(files: &[ConfigFile], opts: LoadOptions) -> Result<FileLimits, FormatError> {
        let mut out = FileLimits {
            defaults: opts.defaults,
            ..FileLimits::default()
        };
        for f in files {
            let docs = split_documents(&f.name, &f.text)?;
            if docs.iter().all(serde_yaml::Value::is_null) {
                return Err(FormatError::File {
                    file: f.name.clone(),
                    message: "is empty; a file holds `domain:` and `descriptors:` (or a Limitador limits list): delete it if it is not needed".into(),
                });
            }
            for doc in docs {
                match doc {
                    serde_yaml::Value::Null => {}
                    serde_yaml::Value::Sequence(_) => {
                        out.limitador.add_document(&f.name, doc, opts.defaults)?
                    }
                    serde_yaml::Value::Mapping(_) => {
                        out.envoy
                            .add_document(&f.name, doc, opts.defaults, opts.merge_domains)?
                    }
                    _ => {
                        return Err(FormatError::File {
                            file: f.name.clone(),
                            message: "expected an envoyproxy/ratelimit domain (`domain:` and `descriptors:`) or a Limitador limits list".into(),
                        });
                    }
                }
            }
        }
        if let Some(both) = out.limitador.namespaces().find(|n| out.envoy.has_domain(n)) {
            return Err(FormatError::File {
                file: files
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                message: format!(
                    "`{both}` is both an envoyproxy domain and a Limitador namespace; keep one of them"
                ),
            });
        }
        Ok(out)
    }

    pub fn knows(&self, domain: &str) -> bool {
        self.envoy.has_domain(domain) || self.limitador.has_namespace(domain)
    }

    /// Rules with a limit plus Limitador limits.
    pub fn len(&self) -> usize {
        self.envoy.len() + self.limitador.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
