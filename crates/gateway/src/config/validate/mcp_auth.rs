//! `mcpAuthentication` (docs/gateway.md §18): compiled into the route's `jwtAuth` validator and
//! the protected resource metadata the route serves.

use super::common::{Result, V};
use crate::config::error::ConfigError;
use crate::config::model::PathMatch;
use crate::config::raw;
use crate::jwt::JwtAuth;
use crate::mcp_auth::McpAuth;
use serde_json::{Map, Value};

impl V<'_> {
    pub(super) fn mcp_authentication(
        &mut self,
        m: &raw::McpAuthentication,
        path: &str,
        route_path: Option<&PathMatch>,
    ) -> Result<(JwtAuth, McpAuth)> {
        let issuer = m
            .issuer
            .clone()
            .ok_or_else(|| ConfigError::at(path, "issuer is required"))?;
        let entra = match &m.provider {
            None => false,
            Some(Value::Object(p)) if p.len() == 1 && p.get("entra").is_some_and(empty_object) => {
                true
            }
            Some(_) => {
                return Err(ConfigError::at(
                    format!("{path}.provider"),
                    "agentid supports the provider {entra: {}} (agentid's STS is Entra-compatible)",
                ));
            }
        };
        let jwks = match (&m.jwks, entra) {
            (Some(j), _) => j.clone(),
            (None, true) => serde_json::json!({"url": entra_jwks(&issuer).ok_or_else(|| {
                ConfigError::at(format!("{path}.issuer"), "not an Entra-style issuer URL ({base}/{tenant}/v2.0 or {base}/{tenant}/)")
            })?}),
            (None, false) => {
                return Err(ConfigError::at(
                    path,
                    "jwks is required (or provider: {entra: {}} to derive it from the issuer)",
                ));
            }
        };
        if m.audiences.as_ref().is_none_or(Vec::is_empty) {
            return Err(ConfigError::at(
                format!("{path}.audiences"),
                "at least one audience is required: a token for another resource must not pass",
            ));
        }
        let jwt = self.jwt(
            &raw::JwtAuth {
                mode: Some(m.mode.clone().unwrap_or_else(|| "strict".into())),
                issuer: Some(issuer.clone()),
                audiences: m.audiences.clone(),
                jwks: Some(jwks),
                jwt_validation_options: m.jwt_validation_options.clone(),
                providers: None,
                location: None,
            },
            path,
        )?;
        let meta_path = format!("{path}.resourceMetadata");
        let mut extra = Map::new();
        for (k, v) in m
            .resource_metadata
            .as_ref()
            .ok_or_else(|| ConfigError::at(path, "resourceMetadata is required"))?
        {
            extra.insert(snake_case(k), v.clone());
        }
        let resource = match extra.remove("resource") {
            None => None,
            Some(Value::String(s)) => {
                let u = url::Url::parse(&s).map_err(|e| {
                    ConfigError::at(format!("{meta_path}.resource"), format!("not a URL: {e}"))
                })?;
                if !matches!(u.scheme(), "https" | "http")
                    || u.fragment().is_some()
                    || u.query().is_some()
                {
                    return Err(ConfigError::at(
                        format!("{meta_path}.resource"),
                        "an http(s) URL without query or fragment (RFC 9728 §1.2)",
                    ));
                }
                Some(u)
            }
            Some(_) => {
                return Err(ConfigError::at(
                    format!("{meta_path}.resource"),
                    "expected a URL",
                ));
            }
        };
        let resource_path = match (&resource, route_path) {
            (Some(u), _) => u.path().trim_end_matches('/').to_string(),
            (None, Some(PathMatch::Exact(p))) => p.trim_end_matches('/').to_string(),
            (None, Some(PathMatch::Prefix(p))) => p.clone(),
            (None, _) => {
                return Err(ConfigError::at(
                    format!("{meta_path}.resource"),
                    "required when the route has no exact or prefix path match",
                ));
            }
        };
        let scopes = strings(
            extra.remove("scopes_supported"),
            &meta_path,
            "scopesSupported",
        )?;
        let mut authorization_servers = strings(
            extra.remove("authorization_servers"),
            &meta_path,
            "authorizationServers",
        )?;
        if authorization_servers.is_empty() {
            // MCP clients sign in at the tenant's v2 authority, whichever token version the
            // resource gets: a v1 issuer `{base}/{tenant}/` is served by `{base}/{tenant}/v2.0`.
            authorization_servers.push(match issuer.strip_suffix('/') {
                Some(tenant) if entra_jwks(&issuer).is_some() => format!("{tenant}/v2.0"),
                _ => issuer.clone(),
            });
        }
        Ok((
            jwt,
            McpAuth {
                resource,
                resource_path,
                extra,
                authorization_servers,
                scopes,
            },
        ))
    }
}

fn empty_object(v: &Value) -> bool {
    v.as_object().is_some_and(Map::is_empty)
}

/// `{base}/{tenant}/v2.0` → `{base}/{tenant}/discovery/v2.0/keys`; `{base}/{tenant}/` →
/// `{base}/{tenant}/discovery/keys` (docs/sts.md §4).
pub(crate) fn entra_jwks(issuer: &str) -> Option<String> {
    let u = url::Url::parse(issuer).ok()?;
    if !matches!(u.scheme(), "https" | "http") {
        return None;
    }
    if let Some(tenant) = issuer.strip_suffix("/v2.0") {
        return Some(format!("{tenant}/discovery/v2.0/keys"));
    }
    let tenant = issuer.strip_suffix('/')?;
    (u.path().trim_matches('/').split('/').count() == 1 && u.path() != "/")
        .then(|| format!("{tenant}/discovery/keys"))
}

/// AgentGateway writes the metadata members in camelCase; RFC 9728 names them in snake_case.
fn snake_case(k: &str) -> String {
    let mut out = String::with_capacity(k.len() + 4);
    for c in k.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn strings(v: Option<Value>, path: &str, key: &str) -> Result<Vec<String>> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, s)| match s {
                Value::String(s) if !s.contains(['"', '\\']) => Ok(s),
                _ => Err(ConfigError::at(
                    format!("{path}.{key}[{i}]"),
                    "expected a string without quotes or backslashes",
                )),
            })
            .collect(),
        Some(_) => Err(ConfigError::at(
            format!("{path}.{key}"),
            "expected a list of strings",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entra_jwks_from_issuers() {
        assert_eq!(
            entra_jwks("https://sts.test/t1/v2.0").as_deref(),
            Some("https://sts.test/t1/discovery/v2.0/keys")
        );
        assert_eq!(
            entra_jwks("https://sts.test/t1/").as_deref(),
            Some("https://sts.test/t1/discovery/keys")
        );
        for bad in [
            "https://sts.test/",
            "https://sts.test",
            "ftp://x/t/v2.0",
            "not a url",
        ] {
            assert_eq!(entra_jwks(bad), None, "{bad}");
        }
        assert_eq!(snake_case("scopesSupported"), "scopes_supported");
        assert_eq!(snake_case("resource"), "resource");
    }
}
