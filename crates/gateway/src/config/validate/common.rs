//! What every section's compiler shares: the compiler state `V` (where relative paths resolve,
//! the JWKS caches, the warnings so far) and the checks for values of one kind.

use crate::config::duration;
use crate::config::error::ConfigError;
use crate::config::model::HeaderModifier;
use crate::config::raw;
use crate::request_path::CanonicalPath;
use crate::rules::{Expr, RuleKind, RuleSet, RuleSpec};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(super) type Result<T> = std::result::Result<T, ConfigError>;

/// The compiler of one config file; each section's `impl V` is in its own module.
pub(super) struct V<'a> {
    pub base: &'a Path,
    pub ctx: &'a super::Context,
    pub warnings: Vec<String>,
}

pub(super) fn expr(path: &str, text: &str) -> Result<Expr> {
    Expr::compile(text).map_err(|e| ConfigError::at(path, format!("CEL does not compile: {e}")))
}

pub(super) fn dur(path: &str, value: &Option<String>, default: Duration) -> Result<Duration> {
    match value {
        None => Ok(default),
        Some(s) => duration::parse(s).map_err(|e| ConfigError::at(path, e)),
    }
}

pub(super) fn regex(path: &str, pattern: &str) -> Result<regex::Regex> {
    // The whole value must match (docs/gateway.md §5.1).
    regex::Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| ConfigError::at(path, format!("regex does not compile: {e}")))
}

pub(super) fn addr(
    path: &str,
    value: &Option<String>,
    default: &str,
) -> Result<Option<SocketAddr>> {
    let text = value.as_deref().unwrap_or(default);
    if text == "off" {
        return Ok(None);
    }
    let normalized = text.replace("localhost:", "127.0.0.1:");
    normalized.parse().map(Some).map_err(|_| {
        ConfigError::at(
            path,
            format!("{text:?} is not ip:port, localhost:port or off"),
        )
    })
}

impl V<'_> {
    pub(super) fn resolve(&self, p: &str) -> PathBuf {
        let path = Path::new(p);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        }
    }

    pub(super) fn readable(&self, path: &str, p: &str) -> Result<PathBuf> {
        let resolved = self.resolve(p);
        std::fs::metadata(&resolved).map_err(|e| {
            ConfigError::at(path, format!("cannot read {}: {e}", resolved.display()))
        })?;
        Ok(resolved)
    }
}

pub(super) fn rule_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => m
            .values()
            .next()
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    }
}

pub(super) fn rules(r: &raw::Rules, path: &str) -> Result<RuleSet> {
    let mut specs = Vec::new();
    for (i, rule) in r.rules.iter().enumerate() {
        let rpath = format!("{path}.rules[{i}]");
        let spec = match rule {
            Value::String(s) => RuleSpec {
                kind: RuleKind::Allow,
                expr: s.clone(),
            },
            Value::Object(map) if map.len() == 1 => {
                let (k, v) = map.iter().next().expect("one entry");
                let kind = match k.as_str() {
                    "allow" => RuleKind::Allow,
                    "deny" => RuleKind::Deny,
                    "require" => RuleKind::Require,
                    other => {
                        return Err(ConfigError::at(
                            rpath,
                            format!("unknown key \"{other}\" (allowed: allow, deny, require)"),
                        ));
                    }
                };
                let Some(text) = v.as_str() else {
                    return Err(ConfigError::at(
                        format!("{rpath}.{k}"),
                        "expected a CEL string",
                    ));
                };
                RuleSpec {
                    kind,
                    expr: text.to_string(),
                }
            }
            _ => {
                return Err(ConfigError::at(
                    rpath,
                    "a rule is a CEL string or exactly one of {allow: …}, {deny: …}, {require: …}",
                ));
            }
        };
        Expr::compile(&spec.expr)
            .map_err(|e| ConfigError::at(&rpath, format!("CEL does not compile: {e}")))?;
        specs.push(spec);
    }
    RuleSet::compile(specs).map_err(|e| ConfigError::at(path, format!("CEL does not compile: {e}")))
}

/// A path from the config in the canonical form requests are compared and forwarded in.
pub(super) fn canonical_path(path: &str, value: &str) -> Result<CanonicalPath> {
    CanonicalPath::parse(value)
        .map_err(|e| ConfigError::at(path, format!("{value:?} is not a usable path: {e}")))
}

pub(super) fn location(l: &raw::Location, path: &str) -> Result<(String, Option<String>)> {
    let h = l
        .header
        .as_ref()
        .ok_or_else(|| ConfigError::at(path, "only header locations are supported"))?;
    header_name(&h.name, &format!("{path}.header.name"))?;
    Ok((h.name.to_ascii_lowercase(), h.prefix.clone()))
}

pub(super) fn header_name(name: &str, path: &str) -> Result<http::HeaderName> {
    http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .map_err(|_| ConfigError::at(path, format!("{name:?} is not a valid header name")))
}

pub(super) fn header_modifier(h: &raw::HeaderModifier, path: &str) -> Result<HeaderModifier> {
    let pairs = |map: &BTreeMap<String, String>,
                 kind: &str|
     -> Result<Vec<(http::HeaderName, http::HeaderValue)>> {
        map.iter()
            .map(|(k, v)| {
                let name = header_name(k, &format!("{path}.{kind}.{k}"))?;
                let value = http::HeaderValue::from_str(v).map_err(|_| {
                    ConfigError::at(format!("{path}.{kind}.{k}"), "not a valid header value")
                })?;
                Ok((name, value))
            })
            .collect()
    };
    Ok(HeaderModifier {
        add: pairs(&h.add, "add")?,
        set: pairs(&h.set, "set")?,
        remove: h
            .remove
            .iter()
            .enumerate()
            .map(|(i, n)| header_name(n, &format!("{path}.remove[{i}]")))
            .collect::<Result<_>>()?,
    })
}
