//! From Limitador: its `limits.yaml` (a list of `namespace`, `max_value`, `seconds`,
//! `conditions`, `variables`, `name`, `id`) for the subset that maps onto descriptor
//! entries. The namespace is the request's domain; a limit applies when every
//! condition holds and every variable resolves, and counts per (limit, variable
//! values); a request over any applying limit is refused, and a refused request counts
//! nowhere (as in Limitador).
//!
//! Limitador's conditions and variables are CEL over `descriptors`, the request's
//! descriptors as maps. The subset taken here:
//! - a reference: `descriptors[N]['key']`, `descriptors[N]["key"]`, `descriptors[N].key`,
//!   or Limitador 1.x's bare `key` (any descriptor; the last one holding it wins);
//! - a condition: a reference `==` or `!=` a quoted string (no escapes);
//! - a variable: a reference.
//!
//! A reference to a missing entry or descriptor means the limit does not apply (as in
//! Limitador). Anything else (`&&`, `||`, functions, numbers, `in`…) is refused with the
//! limit and the expression named, rather than guessed at.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use serde::Deserialize;

use crate::envoy_format::FormatError;
use crate::limit::{Defaults, Limit, Window};
use crate::matched::{Hit, StatKey};

/// Longest window accepted (a year and a day, as for xDS configs).
const MAX_SECONDS: u64 = 366 * 24 * 3600;
/// The counter identity's first entry key (not a descriptor key: never sent by Envoy).
const COUNTER_KEY: &str = "limitador limit";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlLimit {
    #[serde(default)]
    id: Option<String>,
    namespace: String,
    max_value: u64,
    seconds: u64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    conditions: Option<Vec<String>>,
    #[serde(default)]
    variables: Option<Vec<String>>,
}

/// Where a value is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ref {
    /// `None`: Limitador 1.x's bare name, looked up in every descriptor.
    descriptor: Option<usize>,
    key: String,
}

impl Ref {
    fn read<'a>(&self, descriptors: &'a [RateLimitDescriptor]) -> Option<&'a str> {
        let find = |d: &'a RateLimitDescriptor| {
            d.entries
                .iter()
                .rev()
                .find(|e| e.key == self.key)
                .map(|e| e.value.as_str())
        };
        match self.descriptor {
            Some(i) => find(descriptors.get(i)?),
            None => descriptors.iter().rev().find_map(find),
        }
    }
}

#[derive(Debug)]
struct Condition {
    reference: Ref,
    equal: bool,
    literal: String,
}

#[derive(Debug)]
struct Configured {
    limit: Arc<Limit>,
    stat: Arc<StatKey>,
    identity: String,
    conditions: Vec<Condition>,
    /// (source text, reference), sorted by source text.
    variables: Vec<(String, Ref)>,
    /// The descriptor whose status reports this limit.
    report: usize,
}

#[derive(Debug)]
pub struct LimitadorLimits {
    by_namespace: HashMap<String, Vec<Configured>>,
    identities: HashSet<(String, String)>,
    count: usize,
    /// Shared by every hit: Limitador has no `replaces`.
    no_replaces: Arc<[String]>,
}

impl Default for LimitadorLimits {
    fn default() -> Self {
        LimitadorLimits {
            by_namespace: HashMap::new(),
            identities: HashSet::new(),
            count: 0,
            no_replaces: Arc::from([]),
        }
    }
}

impl LimitadorLimits {
    /// Adds a document: a list of limits.
    pub fn add_document(
        &mut self,
        file: &str,
        doc: serde_yaml::Value,
        defaults: Defaults,
    ) -> Result<(), FormatError> {
        let err = |at: String, message: String| FormatError::File {
            file: file.to_string(),
            message: format!("{at}: {message}"),
        };
        let serde_yaml::Value::Sequence(items) = doc else {
            return Err(err(
                "Limitador limits".into(),
                "expected a list of limits".into(),
            ));
        };
        for (i, item) in items.into_iter().enumerate() {
            let at = format!("limits[{i}]");
            let y: YamlLimit = serde_path_to_error::deserialize(item)
                .map_err(|e| err(format!("{at}.{}", e.path()), e.into_inner().to_string()))?;
            let c =
                configure(&y, defaults).map_err(|(field, m)| err(format!("{at}.{field}"), m))?;
            if !self
                .identities
                .insert((y.namespace.clone(), c.identity.clone()))
            {
                return Err(err(
                    at,
                    "the same namespace, seconds, conditions and variables as an earlier limit (Limitador would share one counter); merge them".to_string(),
                ));
            }
            self.by_namespace.entry(y.namespace).or_default().push(c);
            self.count += 1;
        }
        Ok(())
    }

    pub fn has_namespace(&self, namespace: &str) -> bool {
        self.by_namespace.contains_key(namespace)
    }

    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.by_namespace.keys().map(String::as_str)
    }

    /// Every limit of `namespace` that applies to the request.
    pub fn resolve(
        &self,
        namespace: &str,
        descriptors: &[RateLimitDescriptor],
        out: &mut Vec<Hit>,
    ) {
        let Some(limits) = self.by_namespace.get(namespace) else {
            return;
        };
        'limits: for c in limits {
            for cond in &c.conditions {
                match cond.reference.read(descriptors) {
                    Some(v) if (v == cond.literal) == cond.equal => {}
                    _ => continue 'limits,
                }
            }
            let mut counter = Vec::with_capacity(1 + c.variables.len());
            counter.push((COUNTER_KEY.to_string(), c.identity.clone()));
            for (source, r) in &c.variables {
                match r.read(descriptors) {
                    Some(v) => counter.push((source.clone(), v.to_string())),
                    None => continue 'limits,
                }
            }
            out.push(Hit {
                descriptor: c.report,
                limit: c.limit.clone(),
                stat: c.stat.clone(),
                replaces: self.no_replaces.clone(),
                replaceable_as: None,
                counter: Some(counter.into()),
            });
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

type FieldError = (String, String);

fn configure(y: &YamlLimit, defaults: Defaults) -> Result<Configured, FieldError> {
    let _ = &y.id;
    if y.namespace.is_empty() {
        return Err((
            "namespace".into(),
            "is empty; it is the request's domain".into(),
        ));
    }
    if y.seconds == 0 || y.seconds > MAX_SECONDS {
        return Err((
            "seconds".into(),
            format!(
                "{} is outside 1..={MAX_SECONDS} (a year and a day)",
                y.seconds
            ),
        ));
    }
    let requests = u32::try_from(y.max_value).map_err(|_| {
        (
            "max_value".into(),
            format!("{} is more than {} requests", y.max_value, u32::MAX),
        )
    })?;
    let mut conditions = Vec::new();
    let mut sources = Vec::new();
    for (i, text) in y.conditions.iter().flatten().enumerate() {
        let c = parse_condition(text).map_err(|m| (format!("conditions[{i}]"), m))?;
        sources.push(text.trim().to_string());
        conditions.push(c);
    }
    let mut variables = Vec::new();
    for (i, text) in y.variables.iter().flatten().enumerate() {
        let r = parse_ref(text.trim()).ok_or_else(|| (format!("variables[{i}]"), outside(text)))?;
        variables.push((text.trim().to_string(), r));
    }
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    sources.sort();
    let identity = format!(
        "{}s [{}] [{}]",
        y.seconds,
        sources.join(", "),
        variables
            .iter()
            .map(|v| v.0.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let report = conditions
        .iter()
        .map(|c| &c.reference)
        .chain(variables.iter().map(|v| &v.1))
        .filter_map(|r| r.descriptor)
        .min()
        .unwrap_or(0);
    let name = y.name.clone().unwrap_or_default();
    let stat_key = if name.is_empty() {
        identity.clone()
    } else {
        name.clone()
    };
    Ok(Configured {
        limit: Arc::new(Limit {
            name,
            windows: vec![Window {
                requests,
                per_ms: y.seconds * 1000,
                algorithm: defaults.algorithm,
            }],
            unlimited: false,
            shadow: false,
            quota: false,
            on_store_failure: defaults.on_store_failure,
        }),
        stat: Arc::new(StatKey::new(&y.namespace, &[stat_key])),
        identity,
        conditions,
        variables,
        report,
    })
}

fn outside(text: &str) -> String {
    format!(
        "`{}` is outside the subset Portcullis maps: a reference (descriptors[N]['key'], descriptors[N].key or key) compared with == or != to a quoted string; write other logic as envoyproxy descriptors or Route limits",
        text.trim()
    )
}

fn parse_condition(text: &str) -> Result<Condition, String> {
    let (left, op, right) = split_operator(text).ok_or_else(|| outside(text))?;
    let (reference, literal) = match (parse_ref(left), parse_literal(left)) {
        (Some(r), _) => (r, parse_literal(right)),
        (None, Some(l)) => match parse_ref(right) {
            Some(r) => (r, Some(l)),
            None => return Err(outside(text)),
        },
        (None, None) => return Err(outside(text)),
    };
    let literal = literal.ok_or_else(|| outside(text))?;
    Ok(Condition {
        reference,
        equal: op == "==",
        literal,
    })
}

/// `left op right` for the one `==` or `!=` outside quotes.
fn split_operator(text: &str) -> Option<(&str, &str, &str)> {
    let bytes = text.as_bytes();
    let mut quote: Option<u8> = None;
    let mut found = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'\'' || b == b'"' => quote = Some(b),
            None if (b == b'=' || b == b'!') && bytes.get(i + 1) == Some(&b'=') => {
                if found.is_some() {
                    return None;
                }
                found = Some(i);
                i += 1;
            }
            None => {}
        }
        i += 1;
    }
    let at = found?;
    Some((text[..at].trim(), &text[at..at + 2], text[at + 2..].trim()))
}

/// A quoted string without escapes.
fn parse_literal(s: &str) -> Option<String> {
    let q = s.chars().next()?;
    if (q != '\'' && q != '"') || s.len() < 2 || !s.ends_with(q) {
        return None;
    }
    let inner = &s[1..s.len() - 1];
    (!inner.contains(q) && !inner.contains('\\')).then(|| inner.to_string())
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_ref(s: &str) -> Option<Ref> {
    let Some(rest) = s.strip_prefix("descriptors[") else {
        // Limitador 1.x: a bare descriptor key, such as `req.method`.
        let bare = !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            && !s.starts_with("descriptors");
        return bare.then(|| Ref {
            descriptor: None,
            key: s.to_string(),
        });
    };
    let close = rest.find(']')?;
    let index: usize = rest[..close].trim().parse().ok()?;
    let tail = &rest[close + 1..];
    let key = if let Some(field) = tail.strip_prefix('.') {
        is_ident(field).then(|| field.to_string())?
    } else {
        let inner = tail.strip_prefix('[')?.strip_suffix(']')?;
        parse_literal(inner.trim())?
    };
    Some(Ref {
        descriptor: Some(index),
        key,
    })
}

#[cfg(test)]
#[path = "limitador_tests.rs"]
mod tests;
