//! Standalone mode: limits from YAML in the envoyproxy/ratelimit format, so this
//! service can replace that one without touching Envoy's configuration.
//!
//! Matching follows that project: a request descriptor with N entries is matched level
//! by level against the nested descriptor lists (N levels deep). At each level the most
//! specific rule wins: exact `key: value`, then the first wildcard value (`*` anywhere)
//! that matches, then `key` alone, which matches any value. Only the rule reached at
//! level N applies, and only if it has a `rate_limit`. Counters are per actual value,
//! so key-only and wildcard rules give every distinct value its own counter, unless
//! `share_threshold` makes all values of a wildcard share one. The crate README lists
//! where this differs.
mod build;
mod wildcard;
mod yaml;

use std::collections::HashMap;
use std::sync::Arc;

use self::build::{Level, Node, Place, Rule, add_descriptors};
use crate::limit::Defaults;
use crate::matched::{Entry, Hit, StatKey};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error("{file}: domain {domain}, {at}: {message}")]
    Rule {
        file: String,
        domain: String,
        at: String,
        message: String,
    },
}

/// Every domain of a set of files.
#[derive(Debug, Default)]
pub struct EnvoyConfig {
    domains: HashMap<String, Domain>,
    rules: usize,
}

#[derive(Debug)]
struct Domain {
    level: Level,
    /// The file that declared it first (for the duplicate-domain message).
    file: String,
}

impl EnvoyConfig {
    /// Parses `text` (one YAML document per domain) as the only file.
    pub fn parse(text: &str, defaults: Defaults) -> Result<Self, FormatError> {
        let mut cfg = EnvoyConfig::default();
        for doc in split_documents("config", text)? {
            if !doc.is_null() {
                cfg.add_document("config", doc, defaults, false)?;
            }
        }
        Ok(cfg)
    }

    /// Adds one YAML document (a domain) from `file`. A domain seen before is refused
    /// unless `merge` (envoyproxy's `MERGE_DOMAIN_CONFIG`), which adds its descriptors
    /// to the domain's; a descriptor defined twice is refused either way.
    pub fn add_document(
        &mut self,
        file: &str,
        doc: serde_yaml::Value,
        defaults: Defaults,
        merge: bool,
    ) -> Result<(), FormatError> {
        let d = yaml::domain_from(doc).map_err(|message| FormatError::File {
            file: file.to_string(),
            message,
        })?;
        let name = yaml::text(&d.domain).to_string();
        if name.is_empty() {
            return Err(FormatError::File {
                file: file.to_string(),
                message: "domain is missing or empty; every file needs `domain: <name>`".into(),
            });
        }
        let domain = match self.domains.get_mut(&name) {
            Some(existing) if !merge => {
                return Err(FormatError::File {
                    file: file.to_string(),
                    message: format!(
                        "domain `{name}` is also defined in {}; set MERGE_DOMAIN_CONFIG=true (--merge-domain-config) to merge them, or rename one",
                        existing.file
                    ),
                });
            }
            Some(existing) => existing,
            None => self.domains.entry(name.clone()).or_insert(Domain {
                level: Level::default(),
                file: file.to_string(),
            }),
        };
        let place = Place {
            file,
            domain: &name,
            yaml: String::new(),
            components: Vec::new(),
            dynamic: false,
        };
        add_descriptors(
            &mut domain.level,
            &place,
            d.descriptors.as_deref().unwrap_or_default(),
            defaults,
            &mut self.rules,
        )
    }

    pub fn has_domain(&self, domain: &str) -> bool {
        self.domains.contains_key(domain)
    }

    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.domains.keys().map(String::as_str)
    }

    /// The rule descriptor `index` (with `entries`) falls under, if any.
    pub fn resolve(&self, domain: &str, index: usize, entries: &[Entry<'_>]) -> Option<Hit> {
        let mut level = &self.domains.get(domain)?.level;
        let mut path: Vec<(&Node, Matched<'_>)> = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let (node, how) = find(level, k, v)?;
            path.push((node, how));
            level = &node.children;
        }
        let rule = path.last()?.0.rule.as_ref()?;
        let shared: Vec<(usize, &str)> = path
            .iter()
            .enumerate()
            .filter_map(|(i, (n, how))| match how {
                Matched::Wildcard(value) if n.share_threshold => Some((i, *value)),
                _ => None,
            })
            .collect();
        let counter = (!shared.is_empty()).then(|| {
            entries
                .iter()
                .enumerate()
                .map(|(i, (k, v))| {
                    let v = shared.iter().find(|(j, _)| *j == i).map_or(*v, |(_, p)| *p);
                    (k.to_string(), v.to_string())
                })
                .collect::<Vec<_>>()
                .into()
        });
        let stat = if rule.dynamic_stat {
            Arc::new(dynamic_stat(domain, rule, entries, &path))
        } else {
            rule.stat.clone()
        };
        Some(Hit {
            descriptor: index,
            limit: rule.limit.clone(),
            stat,
            replaces: rule.replaces.clone(),
            replaceable_as: rule.replaceable_as.clone(),
            counter,
        })
    }

    /// Number of rules with a `rate_limit`.
    pub fn len(&self) -> usize {
        self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules == 0
    }
}

/// How a level matched: exactly, by a wildcard (its configured value), or by key.
#[derive(Debug, Clone, Copy)]
enum Matched<'a> {
    Exact,
    Wildcard(&'a str),
    Key,
}

fn find<'a>(level: &'a Level, key: &str, value: &str) -> Option<(&'a Node, Matched<'a>)> {
    if let Some(n) = level.exact.get(key).and_then(|values| values.get(value)) {
        return Some((n, Matched::Exact));
    }
    if let Some(w) = level
        .wildcards
        .iter()
        .find(|w| w.key == key && w.pattern.matches(value))
    {
        return Some((&w.node, Matched::Wildcard(&w.value)));
    }
    level.any.get(key).map(|n| (n, Matched::Key))
}

/// The stat key with request values where envoyproxy puts them: `detailed_metric` on
/// the rule puts every value in; otherwise `value_to_metric` levels show the request's
/// value. `share_threshold` levels always show the wildcard pattern.
fn dynamic_stat(
    domain: &str,
    rule: &Rule,
    entries: &[Entry<'_>],
    path: &[(&Node, Matched<'_>)],
) -> StatKey {
    let components: Vec<String> = entries
        .iter()
        .zip(path)
        .map(|((k, v), (node, how))| match how {
            Matched::Wildcard(pattern) if node.share_threshold => format!("{k}_{pattern}"),
            _ if rule.detailed_metric && v.is_empty() => k.to_string(),
            _ if rule.detailed_metric => format!("{k}_{v}"),
            Matched::Exact => format!("{k}_{v}"),
            Matched::Wildcard(_) if node.value_to_metric => format!("{k}_{v}"),
            Matched::Wildcard(pattern) => format!("{k}_{pattern}"),
            Matched::Key if node.value_to_metric => format!("{k}_{v}"),
            Matched::Key => k.to_string(),
        })
        .collect();
    StatKey::new(domain, &components)
}

/// The YAML documents of `text`, with the file named in errors.
pub fn split_documents(file: &str, text: &str) -> Result<Vec<serde_yaml::Value>, FormatError> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| {
            serde_yaml::Value::deserialize(doc).map_err(|e| FormatError::File {
                file: file.to_string(),
                message: format!("not valid YAML: {e}"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod validation_tests;
