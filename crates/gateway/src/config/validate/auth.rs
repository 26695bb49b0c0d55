//! `jwtAuth` with its providers, and `backendAuth` with its secrets (docs/gateway.md §6, §8).

use super::common::{Result, V, header_name, location};
use crate::config::error::ConfigError;
use crate::config::model::*;
use crate::config::raw;
use crate::jwt::{JwksSource, JwtAuth, JwtAuthSpec, Mode, ProviderSpec};
use serde_json::Value;
use std::sync::Arc;

impl V<'_> {
    pub(super) fn jwt(&mut self, j: &raw::JwtAuth, path: &str) -> Result<JwtAuth> {
        let mode = match j.mode.as_deref().unwrap_or("optional") {
            "strict" => Mode::Strict,
            "optional" => Mode::Optional,
            "permissive" => Mode::Permissive,
            other => {
                return Err(ConfigError::at(
                    format!("{path}.mode"),
                    format!("{other:?} is not strict, optional or permissive"),
                ));
            }
        };
        let mut providers = Vec::new();
        match &j.providers {
            Some(list) => {
                if j.issuer.is_some() || j.jwks.is_some() || j.audiences.is_some() {
                    return Err(ConfigError::at(
                        path,
                        "use either providers[] or issuer/audiences/jwks, not both",
                    ));
                }
                for (i, p) in list.iter().enumerate() {
                    providers.push(self.provider(
                        &p.issuer,
                        &p.audiences,
                        &p.jwks,
                        &p.jwt_validation_options,
                        &format!("{path}.providers[{i}]"),
                    )?);
                }
            }
            None => providers.push(self.provider(
                &j.issuer,
                &j.audiences,
                &j.jwks,
                &j.jwt_validation_options,
                path,
            )?),
        }
        if mode == Mode::Strict && providers.iter().any(|p| p.audiences.is_empty()) {
            self.warnings.push(format!(
                "{path}: strict jwtAuth without audiences accepts any audience"
            ));
        }
        if mode != Mode::Strict {
            self.warnings.push(format!(
                "{path}: jwtAuth mode is not strict: requests without a valid token pass"
            ));
        }
        let (header, prefix) = match &j.location {
            None => ("authorization".to_string(), Some("Bearer ".to_string())),
            Some(l) => location(l, &format!("{path}.location"))?,
        };
        JwtAuth::compile(
            JwtAuthSpec {
                mode,
                providers,
                header,
                prefix,
            },
            &self.ctx.jwks,
        )
        .map_err(|e| ConfigError::at(path, e.to_string()))
    }

    pub(super) fn provider(
        &self,
        issuer: &Option<String>,
        audiences: &Option<Vec<String>>,
        jwks: &Option<Value>,
        options: &Option<raw::JwtValidationOptions>,
        path: &str,
    ) -> Result<ProviderSpec> {
        let issuer = issuer
            .clone()
            .ok_or_else(|| ConfigError::at(path, "issuer is required"))?;
        let jwks = match jwks {
            None => return Err(ConfigError::at(path, "jwks is required")),
            Some(Value::String(inline)) => {
                serde_json::from_str::<Value>(inline).map_err(|e| {
                    ConfigError::at(
                        format!("{path}.jwks"),
                        format!("inline JWKS is not JSON: {e}"),
                    )
                })?;
                JwksSource::Inline(inline.clone())
            }
            Some(Value::Object(map)) => match (map.get("url"), map.get("file"), map.len()) {
                (Some(Value::String(url)), None, 1) => {
                    let parsed = url::Url::parse(url).map_err(|e| {
                        ConfigError::at(format!("{path}.jwks.url"), format!("not a URL: {e}"))
                    })?;
                    let loopback = matches!(
                        parsed.host_str(),
                        Some("localhost") | Some("127.0.0.1") | Some("[::1]")
                    ) || parsed.host_str().is_some_and(|h| h.starts_with("127."));
                    if parsed.scheme() != "https" && !loopback {
                        return Err(ConfigError::at(
                            format!("{path}.jwks.url"),
                            "JWKS URLs must be https (http only for loopback hosts)",
                        ));
                    }
                    JwksSource::Url(url.clone())
                }
                (None, Some(Value::String(file)), 1) => {
                    JwksSource::File(self.readable(&format!("{path}.jwks.file"), file)?)
                }
                _ => {
                    return Err(ConfigError::at(
                        format!("{path}.jwks"),
                        "expected {url: …}, {file: …} or an inline JSON string",
                    ));
                }
            },
            Some(_) => {
                return Err(ConfigError::at(
                    format!("{path}.jwks"),
                    "expected {url: …}, {file: …} or an inline JSON string",
                ));
            }
        };
        let required_claims = options
            .as_ref()
            .and_then(|o| o.required_claims.clone())
            .unwrap_or_else(|| vec!["exp".to_string()]);
        for (i, c) in required_claims.iter().enumerate() {
            if !["exp", "nbf", "aud", "iss", "sub"].contains(&c.as_str()) {
                return Err(ConfigError::at(
                    format!("{path}.jwtValidationOptions.requiredClaims[{i}]"),
                    format!("{c:?} is not one of exp, nbf, aud, iss, sub"),
                ));
            }
        }
        Ok(ProviderSpec {
            issuer,
            audiences: audiences.clone().unwrap_or_default(),
            jwks,
            required_claims,
        })
    }

    pub(super) fn secret(&self, v: &Value, path: &str) -> Result<Secret> {
        match v {
            Value::String(s) => Ok(Secret(Arc::from(s.as_str()))),
            Value::Object(map)
                if map.len() == 1 && map.get("file").is_some_and(Value::is_string) =>
            {
                let file = map["file"].as_str().unwrap_or_default();
                let resolved = self.readable(&format!("{path}.file"), file)?;
                let text = std::fs::read_to_string(&resolved).map_err(|e| {
                    ConfigError::at(format!("{path}.file"), format!("cannot read: {e}"))
                })?;
                Ok(Secret(Arc::from(text.trim_end_matches(['\n', '\r']))))
            }
            _ => Err(ConfigError::at(path, "expected a string or {file: path}")),
        }
    }

    pub(super) fn backend_auth(&mut self, a: &raw::BackendAuth, path: &str) -> Result<BackendAuth> {
        let count = [
            a.passthrough.is_some(),
            a.key.is_some(),
            a.on_behalf_of.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if count != 1 {
            return Err(ConfigError::at(
                path,
                "exactly one of passthrough, key, onBehalfOf is required",
            ));
        }
        if let Some(p) = &a.passthrough {
            let (header, prefix) = match &p.location {
                None => ("authorization".to_string(), Some("Bearer ".to_string())),
                Some(l) => location(l, &format!("{path}.passthrough.location"))?,
            };
            return Ok(BackendAuth::Passthrough {
                header: header_name(&header, &format!("{path}.passthrough.location"))?,
                prefix: prefix.unwrap_or_default(),
            });
        }
        if let Some(k) = &a.key {
            let kpath = format!("{path}.key");
            let (value, header, prefix) = match k {
                Value::Object(map) if map.contains_key("value") => {
                    let kv: raw::KeyValue = serde_json::from_value(k.clone())
                        .map_err(|e| ConfigError::at(&kpath, e.to_string()))?;
                    let value = self.secret(&kv.value, &format!("{kpath}.value"))?;
                    let (header, prefix) = match &kv.location {
                        None => ("authorization".to_string(), Some("Bearer ".to_string())),
                        Some(l) => location(l, &format!("{kpath}.location"))?,
                    };
                    (value, header, prefix.unwrap_or_default())
                }
                other => (
                    self.secret(other, &kpath)?,
                    "authorization".to_string(),
                    "Bearer ".to_string(),
                ),
            };
            return Ok(BackendAuth::Key {
                value,
                header: header_name(&header, &kpath)?,
                prefix,
            });
        }
        let o = a.on_behalf_of.clone().unwrap_or_default();
        let opath = format!("{path}.onBehalfOf");
        let mode = match (&o.sidecar, &o.sts) {
            (Some(s), None) => {
                let url = url::Url::parse(&s.url).map_err(|e| {
                    ConfigError::at(format!("{opath}.sidecar.url"), format!("not a URL: {e}"))
                })?;
                let loopback = url
                    .host_str()
                    .is_some_and(|h| h == "localhost" || h.starts_with("127.") || h == "[::1]");
                if url.scheme() != "http" || !loopback {
                    return Err(ConfigError::at(
                        format!("{opath}.sidecar.url"),
                        "the sidecar URL must be http on a loopback address",
                    ));
                }
                OboMode::Sidecar {
                    url: s.url.trim_end_matches('/').to_string(),
                    api: s.api.clone(),
                    scopes: s.scopes.clone(),
                }
            }
            (None, Some(s)) => {
                let spath = format!("{opath}.sts");
                let credential = match (&s.client_secret, &s.client_assertion_file) {
                    (Some(secret), None) => OboCredential::Secret(
                        self.secret(secret, &format!("{spath}.clientSecret"))?,
                    ),
                    (None, Some(file)) => OboCredential::AssertionFile(self.resolve(file)),
                    _ => {
                        return Err(ConfigError::at(
                            spath,
                            "exactly one of clientSecret, clientAssertionFile is required",
                        ));
                    }
                };
                if s.scopes.is_empty() {
                    return Err(ConfigError::at(
                        format!("{spath}.scopes"),
                        "scopes are required",
                    ));
                }
                let root = s
                    .root
                    .as_ref()
                    .map(|r| self.readable(&format!("{spath}.root"), r))
                    .transpose()?;
                OboMode::Sts {
                    token_endpoint: s.token_endpoint.clone(),
                    client_id: s.client_id.clone(),
                    credential,
                    scopes: s.scopes.clone(),
                    root,
                }
            }
            _ => {
                return Err(ConfigError::at(
                    opath,
                    "exactly one of sidecar, sts is required",
                ));
            }
        };
        let (header, prefix) = match &o.location {
            None => ("authorization".to_string(), None),
            Some(l) => location(l, &format!("{opath}.location"))?,
        };
        Ok(BackendAuth::OnBehalfOf(Arc::new(OnBehalfOf {
            mode,
            header: header_name(&header, &opath)?,
            prefix,
        })))
    }
}
