//! From YAML to the matching tree, refusing what envoyproxy/ratelimit refuses at load
//! time (its `config_impl.go`), each with the field's path and the fix.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::wildcard::Pattern;
use super::yaml::{YamlDescriptor, YamlRateLimit, text};
use crate::limit::Defaults;
use crate::limit::{Algorithm, FailurePolicy, Limit, Window, unit_ms};
use crate::matched::StatKey;

/// A rule with a `rate_limit`.
#[derive(Debug)]
pub struct Rule {
    pub limit: Arc<Limit>,
    /// The configured path as a stat key (`domain.key_value.key`).
    pub stat: Arc<StatKey>,
    pub replaces: Arc<[String]>,
    pub replaceable_as: Option<Arc<str>>,
    pub detailed_metric: bool,
    /// Some level on the way here has `value_to_metric` or `share_threshold`, or this
    /// rule has `detailed_metric`: its stat key depends on the request's values.
    pub dynamic_stat: bool,
}

#[derive(Debug, Default)]
pub struct Node {
    pub rule: Option<Rule>,
    pub children: Level,
    pub value_to_metric: bool,
    pub share_threshold: bool,
}

/// One wildcard rule of a level.
#[derive(Debug)]
pub struct Wildcard {
    pub key: String,
    /// The configured value, `*` included.
    pub value: String,
    pub pattern: Pattern,
    pub node: Node,
}

#[derive(Debug, Default)]
pub struct Level {
    /// key → value → rule.
    pub exact: HashMap<String, HashMap<String, Node>>,
    /// In file order: the first that matches wins.
    pub wildcards: Vec<Wildcard>,
    pub any: HashMap<String, Node>,
    /// `(key, value)` of every rule, for duplicate detection across merged files.
    seen: HashSet<(String, String)>,
}

/// Where a rule sits, for error messages and stat keys.
#[derive(Clone)]
pub struct Place<'a> {
    pub file: &'a str,
    pub domain: &'a str,
    /// `descriptors[0].descriptors[2]`
    pub yaml: String,
    /// `key_value` components from the top level down.
    pub components: Vec<String>,
    /// An ancestor has `value_to_metric` or `share_threshold`.
    pub dynamic: bool,
}

impl Place<'_> {
    fn error(&self, field: &str, message: impl Into<String>) -> super::FormatError {
        let at = if field.is_empty() {
            self.yaml.clone()
        } else {
            format!("{}.{field}", self.yaml)
        };
        super::FormatError::Rule {
            file: self.file.to_string(),
            domain: self.domain.to_string(),
            at,
            message: message.into(),
        }
    }
}

/// Adds `descriptors` to `level` (a new domain, or one merged across files).
pub fn add_descriptors(
    level: &mut Level,
    parent: &Place<'_>,
    descriptors: &[YamlDescriptor],
    defaults: Defaults,
    rules: &mut usize,
) -> Result<(), super::FormatError> {
    for (i, d) in descriptors.iter().enumerate() {
        let yaml = if parent.yaml.is_empty() {
            format!("descriptors[{i}]")
        } else {
            format!("{}.descriptors[{i}]", parent.yaml)
        };
        let mut place = Place {
            yaml,
            ..parent.clone()
        };
        let (key, value) = (text(&d.key), text(&d.value));
        if key.is_empty() {
            return Err(place.error("key", "is missing or empty; give every descriptor a key"));
        }
        let component = if value.is_empty() {
            key.to_string()
        } else {
            format!("{key}_{value}")
        };
        if !level.seen.insert((key.to_string(), value.to_string())) {
            return Err(place.error(
                "",
                format!(
                    "duplicate descriptor `{component}` at this level (envoyproxy: duplicate composite key); merge the two rules or give one another value"
                ),
            ));
        }
        let pattern = Pattern::new(value);
        let share_threshold = d.share_threshold.unwrap_or(false);
        if share_threshold && pattern.is_none() {
            return Err(place.error(
                "share_threshold",
                format!(
                    "can only be used with a wildcard value (containing `*`), found `{value}`; add the `*` or remove share_threshold"
                ),
            ));
        }
        let value_to_metric = d.value_to_metric.unwrap_or(false);
        place.components.push(component);
        place.dynamic |= value_to_metric || share_threshold;
        let rule = match &d.rate_limit {
            Some(rl) => {
                *rules += 1;
                Some(to_rule(rl, d, &place, defaults)?)
            }
            None => None,
        };
        let mut children = Level::default();
        add_descriptors(
            &mut children,
            &place,
            d.descriptors.as_deref().unwrap_or_default(),
            defaults,
            rules,
        )?;
        let node = Node {
            rule,
            children,
            value_to_metric,
            share_threshold,
        };
        match pattern {
            _ if value.is_empty() => {
                level.any.insert(key.to_string(), node);
            }
            Some(pattern) => level.wildcards.push(Wildcard {
                key: key.to_string(),
                value: value.to_string(),
                pattern,
                node,
            }),
            None => {
                level
                    .exact
                    .entry(key.to_string())
                    .or_default()
                    .insert(value.to_string(), node);
            }
        }
    }
    Ok(())
}

/// envoyproxy's units (case-insensitive), as window lengths.
fn unit_of(name: &str) -> Option<u64> {
    Some(match name.to_ascii_lowercase().as_str() {
        "second" => unit_ms::SECOND,
        "minute" => unit_ms::MINUTE,
        "hour" => unit_ms::HOUR,
        "day" => unit_ms::DAY,
        "week" => unit_ms::WEEK,
        "month" => unit_ms::MONTH,
        "year" => unit_ms::YEAR,
        _ => return None,
    })
}

fn to_rule(
    rl: &YamlRateLimit,
    d: &YamlDescriptor,
    place: &Place<'_>,
    defaults: Defaults,
) -> Result<Rule, super::FormatError> {
    let field = |f: &str| format!("rate_limit.{f}");
    let unlimited = rl.unlimited.unwrap_or(false);
    let unit = text(&rl.unit);
    let per_ms = unit_of(unit);
    let algorithm = match &rl.algorithm {
        Some(a) => a
            .parse::<Algorithm>()
            .map_err(|e| place.error(&field("algorithm"), e))?,
        None => defaults.algorithm,
    };
    let on_store_failure = match &rl.on_store_failure {
        Some(p) => p
            .parse::<FailurePolicy>()
            .map_err(|e| place.error(&field("on_store_failure"), e))?,
        None => defaults.on_store_failure,
    };
    let windows = match (unlimited, per_ms) {
        (true, Some(_)) => {
            return Err(place.error(
                &field("unit"),
                "must not be set with `unlimited: true`; remove the unit (and requests_per_unit)",
            ));
        }
        // envoyproxy ignores a unit it does not know when the limit is unlimited.
        (true, None) => Vec::new(),
        (false, None) => {
            return Err(place.error(
                &field("unit"),
                format!(
                    "`{unit}` is not a unit: use second, minute, hour, day, week, month or year"
                ),
            ));
        }
        (false, Some(per_ms)) => {
            let requests = rl.requests_per_unit.ok_or_else(|| {
                place.error(
                    &field("requests_per_unit"),
                    "is missing; envoyproxy/ratelimit reads that as 0, which refuses every request: write `requests_per_unit: 0` if that is meant",
                )
            })?;
            vec![Window {
                requests,
                per_ms,
                algorithm,
            }]
        }
    };
    let name = text(&rl.name).to_string();
    let mut replaces = Vec::new();
    for (k, r) in rl.replaces.iter().flatten().enumerate() {
        let target = text(&r.name);
        let at = field(&format!("replaces[{k}].name"));
        if target.is_empty() {
            return Err(place.error(&at, "is empty; name the limit to replace"));
        }
        if target == name {
            return Err(place.error(
                &at,
                format!("names this rule's own name `{name}`; a rule cannot replace itself"),
            ));
        }
        replaces.push(target.to_string());
    }
    let detailed_metric = d.detailed_metric.unwrap_or(false);
    Ok(Rule {
        limit: Arc::new(Limit {
            name: name.clone(),
            windows,
            unlimited,
            shadow: d.shadow_mode.unwrap_or(false),
            quota: d.quota_mode.unwrap_or(false),
            on_store_failure,
        }),
        stat: Arc::new(StatKey::new(place.domain, &place.components)),
        replaces: replaces.into(),
        replaceable_as: (!name.is_empty()).then(|| Arc::from(name.as_str())),
        detailed_metric,
        dynamic_stat: place.dynamic || detailed_metric,
    })
}
