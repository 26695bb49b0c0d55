//! raw → model: every one-of shape, duration, regex, CEL rule, path and cross-field rule of
//! docs/gateway.md §2.2–2.4 is checked here, each error carrying the JSON path of its key. One
//! module per config section: `settings` (top-level `config` and `agentid`), `routes`
//! (listeners, routes, matches and HTTP policies), `auth` (`jwtAuth` and `backendAuth`),
//! `backends` (backends, TLS and MCP targets); `common` holds what they share.

mod auth;
mod backends;
mod common;
mod mcp_auth;
mod revocation;
mod routes;
mod settings;

use super::model::*;
use super::raw;
use crate::config::error::ConfigError;
use crate::jwt::JwksRegistry;
use common::{Result, V, expr};
use serde_json::Value;
pub use settings::MIN_REQUEST_HEADER_BYTES;
pub(crate) use settings::jwt_settings;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

/// What compiling needs beyond the file: the shared JWKS caches.
pub struct Context {
    pub jwks: Arc<JwksRegistry>,
}

pub fn validate(file: raw::File, value: &Value, base: &Path, ctx: &Context) -> Result<Snapshot> {
    let mut v = V {
        base,
        ctx,
        warnings: Vec::new(),
    };
    let effective = effective_view(value);
    let config = file.config.clone().unwrap_or_default();
    let static_cfg = v.static_config(&config)?;
    let settings = v.settings(&config, file.agentid.as_ref())?;

    let mut log = LogFields::default();
    if let Some(logging) = &config.logging {
        if let Some(format) = &logging.format
            && format != "text"
            && format != "json"
        {
            return Err(ConfigError::at(
                "config.logging.format",
                format!("{format:?} is not a log format (text or json)"),
            ));
        }
        if let Some(filter) = &logging.filter {
            log.filter = Some(expr("config.logging.filter", filter)?);
        }
        if let Some(fields) = &logging.fields {
            for (name, text) in &fields.add {
                log.add.push((
                    name.clone(),
                    expr(&format!("config.logging.fields.add.{name}"), text)?,
                ));
            }
            log.remove.extend(fields.remove.iter().cloned());
        }
    }
    if let Some(fp) = &file.frontend_policies {
        for (key, access) in [("accessLog", &fp.access_log), ("logging", &fp.logging)] {
            let Some(access) = access else { continue };
            if let Some(filter) = &access.filter {
                log.filter = Some(expr(&format!("frontendPolicies.{key}.filter"), filter)?);
            }
            for (name, text) in &access.add {
                let compiled = expr(&format!("frontendPolicies.{key}.add.{name}"), text)?;
                log.add.retain(|(n, _)| n != name);
                log.add.push((name.clone(), compiled));
            }
            log.remove.extend(access.remove.iter().cloned());
        }
    }
    let mut metric_fields = Vec::new();
    let mut removed_metrics = Vec::new();
    if let Some(metrics) = &config.metrics {
        if let Some(fields) = &metrics.fields {
            for (name, text) in &fields.add {
                metric_fields.push((
                    name.clone(),
                    expr(&format!("config.metrics.fields.add.{name}"), text)?,
                ));
            }
        }
        removed_metrics = metrics.remove.clone();
    }

    let mut binds = Vec::new();
    let mut ports = HashSet::new();
    for (bi, bind) in file.binds.iter().enumerate() {
        let path = format!("binds[{bi}]");
        if !ports.insert(bind.port) {
            return Err(ConfigError::at(
                format!("{path}.port"),
                format!("port {} is bound twice", bind.port),
            ));
        }
        let mut listeners = Vec::new();
        let mut hostnames = HashSet::new();
        for (li, listener) in bind.listeners.iter().enumerate() {
            let lpath = format!("{path}.listeners[{li}]");
            if !hostnames.insert(listener.hostname.clone()) {
                return Err(ConfigError::at(
                    format!("{lpath}.hostname"),
                    "two listeners on one bind share this hostname",
                ));
            }
            listeners.push(v.listener(bind.port, li, listener, &lpath)?);
        }
        binds.push(Bind {
            port: bind.port,
            listeners,
        });
    }
    revocation::check_routes(&settings, &binds)?;
    for w in &v.warnings {
        tracing::warn!("{w}");
    }
    Ok(Snapshot {
        static_cfg,
        settings,
        binds,
        log,
        metric_fields,
        removed_metrics,
        effective,
    })
}

/// The normalized config for `--print-effective` and `/config_dump`: the decoded file with keys
/// sorted and secrets (keys, client secrets, key values) redacted.
pub(crate) fn effective_view(value: &Value) -> Value {
    let mut v = sorted(value);
    redact(&mut v);
    v
}

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if ["key", "clientSecret", "value"].contains(&k.as_str()) && !val.is_object() {
                    *val = Value::String("<redacted>".into());
                } else if k == "key" || k == "clientSecret" {
                    // {file: …} stays visible; {value: …} is redacted by the rule above.
                    redact(val);
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}
