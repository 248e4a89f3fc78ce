//! Standalone mode: limits from a YAML file in the envoyproxy/ratelimit format, so
//! this service can replace that one without touching Envoy's configuration.
//!
//! Matching follows that project's README: a request descriptor with N entries is
//! matched level by level against the nested descriptor lists (N levels deep); at each
//! level the most specific rule wins (exact `key: value`, then a `value: prefix*`
//! wildcard, then `key` alone, which matches any value); only the rule reached at
//! level N applies, and only if it has a `rate_limit`. Counters are per actual value,
//! so `key` alone and wildcards give every distinct value its own counter.
//! Differences are listed in the crate README.
use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::limit::{Algorithm, FailurePolicy, Limit, Window};
use crate::portcullis_config::Defaults;
use crate::table::{Entry, Matched};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlDomain {
    domain: String,
    #[serde(default)]
    descriptors: Vec<YamlDescriptor>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlDescriptor {
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    rate_limit: Option<YamlRateLimit>,
    #[serde(default)]
    descriptors: Vec<YamlDescriptor>,
    #[serde(default)]
    shadow_mode: bool,
    #[serde(default)]
    detailed_metric: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlRateLimit {
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    requests_per_unit: Option<u32>,
    #[serde(default)]
    unlimited: bool,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    replaces: Vec<YamlReplace>,
    /// Portcullis extension: `sliding` (default) or `fixed`.
    #[serde(default)]
    algorithm: Option<String>,
    /// Portcullis extension: `allow` (default) or `deny` when the store fails.
    #[serde(default)]
    on_store_failure: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlReplace {
    name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("domain {domain}, descriptor {path}: {message}")]
    Rule {
        domain: String,
        path: String,
        message: String,
    },
    #[error("domain {0} is defined twice")]
    DuplicateDomain(String),
}

/// A rule's limit, with what the matcher needs besides the [`Limit`].
#[derive(Debug)]
struct RuleLimit {
    limit: Arc<Limit>,
    replaceable_as: Option<String>,
    replaces: Vec<String>,
    detailed_metric: bool,
}

#[derive(Debug, Default)]
struct Node {
    limit: Option<RuleLimit>,
    children: Level,
}

#[derive(Debug, Default)]
struct Level {
    exact: HashMap<(String, String), Node>,
    /// `value: prefix*` rules in file order: the first that matches wins.
    prefix: Vec<(String, String, Node)>,
    any: HashMap<String, Node>,
}

impl Level {
    fn find(&self, key: &str, value: &str) -> Option<&Node> {
        self.exact
            .get(&(key.to_string(), value.to_string()))
            .or_else(|| {
                self.prefix
                    .iter()
                    .find(|(k, p, _)| k == key && value.starts_with(p.as_str()))
                    .map(|(_, _, n)| n)
            })
            .or_else(|| self.any.get(key))
    }
}

/// Every domain of a file.
#[derive(Debug, Default)]
pub struct EnvoyConfig {
    domains: HashMap<String, Level>,
    rules: usize,
}

impl EnvoyConfig {
    /// Parses one or more YAML documents, each a domain.
    pub fn parse(text: &str, defaults: Defaults) -> Result<Self, FormatError> {
        let mut cfg = EnvoyConfig::default();
        for doc in serde_yaml::Deserializer::from_str(text) {
            let value = serde_yaml::Value::deserialize(doc)?;
            if value.is_null() {
                continue;
            }
            let d: YamlDomain = serde_yaml::from_value(value)?;
            if cfg.domains.contains_key(&d.domain) {
                return Err(FormatError::DuplicateDomain(d.domain));
            }
            let level = build_level(
                &d.domain,
                &d.domain,
                &d.descriptors,
                defaults,
                &mut cfg.rules,
            )?;
            cfg.domains.insert(d.domain, level);
        }
        Ok(cfg)
    }

    pub fn resolve(&self, domain: &str, entries: &[Entry<'_>]) -> Option<Matched> {
        let mut level = self.domains.get(domain)?;
        let mut node = None;
        for (k, v) in entries {
            let n = level.find(k, v)?;
            level = &n.children;
            node = Some(n);
        }
        let rule = node?.limit.as_ref()?;
        let metric_name = if rule.detailed_metric {
            // The configured path with the request's actual values.
            let mut s = domain.to_string();
            for (k, v) in entries {
                s.push('.');
                s.push_str(k);
                s.push('_');
                s.push_str(v);
            }
            s
        } else {
            rule.limit.name.clone()
        };
        Some(Matched {
            limit: rule.limit.clone(),
            metric_name,
            replaces: rule.replaces.clone(),
            replaceable_as: rule.replaceable_as.clone(),
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

fn build_level(
    domain: &str,
    parent: &str,
    descriptors: &[YamlDescriptor],
    defaults: Defaults,
    rules: &mut usize,
) -> Result<Level, FormatError> {
    let mut level = Level::default();
    for d in descriptors {
        let path = match &d.value {
            Some(v) => format!("{parent}.{}_{v}", d.key),
            None => format!("{parent}.{}", d.key),
        };
        let rule_err = |message: String| FormatError::Rule {
            domain: domain.to_string(),
            path: path.clone(),
            message,
        };
        if d.key.is_empty() {
            return Err(rule_err("key is empty".into()));
        }
        let limit = match &d.rate_limit {
            Some(rl) => {
                *rules += 1;
                Some(to_rule(rl, &path, d, defaults).map_err(rule_err)?)
            }
            None => None,
        };
        let node = Node {
            limit,
            children: build_level(domain, &path, &d.descriptors, defaults, rules)?,
        };
        let duplicate = match d.value.as_deref() {
            None | Some("") => level.any.insert(d.key.clone(), node).is_some(),
            Some(v) if v.ends_with('*') => {
                let prefix = v.trim_end_matches('*').to_string();
                let dup = level
                    .prefix
                    .iter()
                    .any(|(k, p, _)| *k == d.key && *p == prefix);
                level.prefix.push((d.key.clone(), prefix, node));
                dup
            }
            Some(v) => level
                .exact
                .insert((d.key.clone(), v.to_string()), node)
                .is_some(),
        };
        if duplicate {
            return Err(rule_err("duplicate key/value at this level".into()));
        }
    }
    Ok(level)
}

fn to_rule(
    rl: &YamlRateLimit,
    path: &str,
    d: &YamlDescriptor,
    defaults: Defaults,
) -> Result<RuleLimit, String> {
    let algorithm = match &rl.algorithm {
        Some(a) => a.parse::<Algorithm>()?,
        None => defaults.algorithm,
    };
    let on_store_failure = match &rl.on_store_failure {
        Some(p) => p.parse::<FailurePolicy>()?,
        None => defaults.on_store_failure,
    };
    let windows = if rl.unlimited {
        Vec::new()
    } else {
        let unit = rl.unit.as_deref().ok_or("rate_limit.unit is required")?;
        let per_ms = match unit.to_ascii_lowercase().as_str() {
            "second" => 1000,
            "minute" => 60_000,
            "hour" => 3_600_000,
            "day" => 86_400_000,
            other => {
                return Err(format!(
                    "rate_limit.unit {other:?} is not second, minute, hour or day"
                ));
            }
        };
        let requests = rl
            .requests_per_unit
            .ok_or("rate_limit.requests_per_unit is required")?;
        vec![Window {
            requests,
            per_ms,
            algorithm,
        }]
    };
    Ok(RuleLimit {
        limit: Arc::new(Limit {
            name: rl.name.clone().unwrap_or_else(|| path.to_string()),
            windows,
            unlimited: rl.unlimited,
            shadow: d.shadow_mode,
            on_store_failure,
        }),
        replaceable_as: rl.name.clone(),
        replaces: rl.replaces.iter().map(|r| r.name.clone()).collect(),
        detailed_metric: d.detailed_metric,
    })
}

#[cfg(test)]
#[path = "envoy_format_tests.rs"]
mod tests;
