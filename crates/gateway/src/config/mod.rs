//! The gateway's config file: loading (environment expansion, strict YAML/JSON decoding with
//! JSON-path errors), validation into runtime types (`model`), and the redacted effective view.

mod agentgateway_keys;
pub mod duration;
mod error;
pub mod model;
pub mod raw;
pub mod upstream_tls;
mod validate;

pub use error::ConfigError;
pub use model::Snapshot;
pub use validate::{Context as ValidateContext, MIN_REQUEST_HEADER_BYTES};

use std::path::Path;

/// `$NAME` and `${NAME}` become the variable's value, `$$` a literal `$`; an undefined variable is
/// an error naming it and its line (AgentGateway expands the raw text the same way).
pub fn expand_env(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let line = text[..i].matches('\n').count() + 1;
        match chars.peek().map(|(_, c)| *c) {
            Some('$') => {
                chars.next();
                out.push('$');
            }
            Some('{') => {
                chars.next();
                let mut name = String::new();
                let mut closed = false;
                for (_, c) in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    name.push(c);
                }
                if !closed || name.is_empty() {
                    return Err(ConfigError::line(line, "unterminated ${…}".to_string()));
                }
                out.push_str(&lookup(&name).ok_or_else(|| {
                    ConfigError::line(line, format!("environment variable {name} is not set"))
                })?);
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let mut name = String::new();
                while let Some((_, c)) = chars.peek() {
                    if c.is_ascii_alphanumeric() || *c == '_' {
                        name.push(*c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push_str(&lookup(&name).ok_or_else(|| {
                    ConfigError::line(line, format!("environment variable {name} is not set"))
                })?);
            }
            _ => out.push('$'),
        }
    }
    Ok(out)
}

/// Decodes the (expanded) text into the raw file structure, strictly.
pub fn parse(text: &str) -> Result<raw::File, ConfigError> {
    parse_with_value(text).map(|(file, _)| file)
}

/// Like `parse`, also returning the decoded document (for the effective view).
pub fn parse_with_value(text: &str) -> Result<(raw::File, serde_json::Value), ConfigError> {
    if text.trim().is_empty() {
        return Err(ConfigError::at("", "the config file is empty"));
    }
    // Through serde_json::Value first: YAML anchors resolve, duplicate keys and multi-document
    // files are refused by the YAML parser, and JSON is YAML.
    let value: serde_json::Value = serde_yaml_ng::from_str(text).map_err(|e| {
        let msg = e.to_string();
        if msg.contains("more than one document") {
            return ConfigError::at("", "multi-document YAML is not supported: use one document");
        }
        match e.location() {
            Some(l) => ConfigError::Text {
                line: l.line(),
                column: Some(l.column()),
                message: msg,
            },
            None => ConfigError::at("", msg),
        }
    })?;
    if !value.is_object() {
        return Err(ConfigError::at(
            "",
            "the config must be a map with `binds`, `config`, … at its top level",
        ));
    }
    reject_top_level(&value)?;
    let file = serde_path_to_error::deserialize::<_, raw::File>(&value).map_err(|e| {
        let path = render_path(e.path());
        describe_serde_error(&path, &e.into_inner().to_string())
    })?;
    Ok((file, value))
}

fn reject_top_level(value: &serde_json::Value) -> Result<(), ConfigError> {
    const UNSUPPORTED_TOP: &[&str] = &[
        "policies",
        "workloads",
        "services",
        "backends",
        "routeGroups",
        "gateways",
        "routes",
        "tcpRoutes",
        "llm",
        "mcp",
        "ui",
    ];
    if let Some(map) = value.as_object() {
        for key in map.keys() {
            if UNSUPPORTED_TOP.contains(&key.as_str()) {
                return Err(ConfigError::at(
                    key.clone(),
                    format!("\"{key}\" is an agentgateway feature that agentid does not support"),
                ));
            }
        }
    }
    Ok(())
}

/// serde_path_to_error renders `binds[0].listeners`; `?` segments (untyped) are dropped.
fn render_path(path: &serde_path_to_error::Path) -> String {
    let s = path.to_string();
    if s == "." { String::new() } else { s }
}

/// Turns serde's "unknown field `x`, expected one of `a`, `b`" into the two errors of
/// docs/gateway.md §2.1, and keeps every other message with its path.
fn describe_serde_error(path: &str, msg: &str) -> ConfigError {
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or_default();
        let parent = parent_path(path, name);
        let full = if parent.is_empty() {
            name.to_string()
        } else {
            format!("{parent}.{name}")
        };
        if agentgateway_keys::is_agentgateway_key(name) {
            return ConfigError::at(
                full,
                format!("\"{name}\" is an agentgateway feature that agentid does not support"),
            );
        }
        let allowed: Vec<&str> = msg
            .split("expected ")
            .nth(1)
            .map(|s| {
                s.trim_start_matches("one of ")
                    .split(", ")
                    .map(|k| k.trim_matches('`'))
                    .collect()
            })
            .unwrap_or_default();
        let mut allowed: Vec<&str> = allowed.into_iter().filter(|k| !k.is_empty()).collect();
        allowed.sort_unstable();
        let hint = if name == "azureOpenAI" {
            " — did you mean \"azure\" with resourceType: openAI?".to_string()
        } else {
            String::new()
        };
        return ConfigError::at(
            parent,
            format!(
                "unknown key \"{name}\" (allowed: {}){hint}",
                allowed.join(", ")
            ),
        );
    }
    ConfigError::at(path, msg.to_string())
}

/// serde_path_to_error reports an unknown field at the path of the field itself.
fn parent_path(path: &str, name: &str) -> String {
    path.strip_suffix(name)
        .map(|p| p.trim_end_matches('.').to_string())
        .unwrap_or_else(|| path.to_string())
}

/// Loads a file: read, expand, parse, validate and compile.
pub fn load_file(path: &Path, ctx: &ValidateContext) -> Result<Snapshot, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    load_str(&text, base, ctx)
}

/// Only the `agentid.jwt` settings of a config text (expanded and parsed, not compiled).
pub fn jwt_settings_of(text: &str) -> Result<crate::jwt::JwtSettings, ConfigError> {
    let expanded = expand_env(text, |n| std::env::var(n).ok())?;
    let file = parse(&expanded)?;
    validate::jwt_settings(&file.agentid.and_then(|a| a.jwt).unwrap_or_default())
}

pub fn load_str(text: &str, base: &Path, ctx: &ValidateContext) -> Result<Snapshot, ConfigError> {
    let expanded = expand_env(text, |n| std::env::var(n).ok())?;
    let (file, value) = parse_with_value(&expanded)?;
    validate::validate(file, &value, base, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_expansion() {
        let env = |n: &str| (n == "KEY").then(|| "v".to_string());
        assert_eq!(expand_env("a $KEY ${KEY} $$ $", env).unwrap(), "a v v $ $");
        let err = expand_env("x: 1\ny: $NOPE", env).unwrap_err().to_string();
        assert!(err.contains("NOPE") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn unknown_and_unsupported_keys_are_distinct() {
        let unknown = parse("binds:\n- port: 3000\n  listeners:\n  - routes:\n    - policies:\n        extAuthZ: {}\n")
            .unwrap_err()
            .to_string();
        assert!(
            unknown.starts_with("config error at binds[0].listeners[0].routes[0].policies: unknown key \"extAuthZ\" (allowed: authorization, backendAuth, backendTLS, cors, jwtAuth, mcpAuthentication, mcpAuthorization, requestHeaderModifier, responseHeaderModifier, timeout, urlRewrite)"),
            "{unknown}"
        );
        let unsupported = parse("binds:\n- port: 3000\n  listeners:\n  - routes:\n    - policies:\n        extAuthz: {}\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            unsupported,
            "config error at binds[0].listeners[0].routes[0].policies.extAuthz: \"extAuthz\" is an agentgateway feature that agentid does not support"
        );
    }
}
