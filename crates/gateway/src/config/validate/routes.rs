//! Listeners, routes, matches and the HTTP policies of a route (docs/gateway.md §5).

use super::common::{Result, V, canonical_path, header_modifier, regex, rule_text, rules};
use crate::config::duration;
use crate::config::error::ConfigError;
use crate::config::model::*;
use crate::config::raw;
use crate::request_path::CanonicalPath;
use serde_json::Value;
use std::sync::Arc;

impl V<'_> {
    pub(super) fn listener(
        &mut self,
        port: u16,
        index: usize,
        l: &raw::Listener,
        path: &str,
    ) -> Result<Listener> {
        let tls = match l.protocol.as_deref().unwrap_or("HTTP") {
            "HTTP" => None,
            "HTTPS" => {
                let tls = l.tls.clone().unwrap_or_default();
                let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
                    return Err(ConfigError::at(
                        format!("{path}.tls"),
                        "protocol HTTPS needs tls.cert and tls.key",
                    ));
                };
                let cert = self.readable(&format!("{path}.tls.cert"), cert)?;
                let key = self.readable(&format!("{path}.tls.key"), key)?;
                Some(
                    crate::tls::server_config(&cert, &key)
                        .map_err(|e| ConfigError::at(format!("{path}.tls"), e.to_string()))?,
                )
            }
            other => {
                return Err(ConfigError::at(
                    format!("{path}.protocol"),
                    format!("{other:?} is not HTTP or HTTPS"),
                ));
            }
        };
        let mut routes = Vec::new();
        for (ri, r) in l.routes.iter().enumerate() {
            let rpath = format!("{path}.routes[{ri}]");
            let id = r
                .name
                .clone()
                .unwrap_or_else(|| format!("{port}/{index}/{ri}"));
            routes.push(Arc::new(self.route(id, r, &rpath)?));
        }
        Ok(Listener {
            name: l.name.clone(),
            index,
            hostname: l.hostname.as_deref().map(HostPattern::parse),
            tls,
            routes,
        })
    }

    pub(super) fn route(&mut self, id: String, r: &raw::Route, path: &str) -> Result<Route> {
        let mut matches = Vec::new();
        let raw_matches = if r.matches.is_empty() {
            vec![raw::Match::default()]
        } else {
            r.matches.clone()
        };
        for (mi, m) in raw_matches.iter().enumerate() {
            matches.push(self.route_match(m, &format!("{path}.matches[{mi}]"))?);
        }
        let policies = match &r.policies {
            Some(p) => self.route_policies(p, &format!("{path}.policies"), &matches)?,
            None => RoutePolicies::default(),
        };
        if r.backends.is_empty() {
            return Err(ConfigError::at(
                format!("{path}.backends"),
                "a route needs at least one backend",
            ));
        }
        let mut backends = Vec::new();
        for (bi, b) in r.backends.iter().enumerate() {
            backends.push(self.backend(
                b,
                &format!("{path}.backends[{bi}]"),
                policies.upstream.tls.as_ref(),
            )?);
        }
        if backends
            .iter()
            .any(|b| matches!(b.kind, BackendKind::Mcp(_)))
            && backends.len() > 1
        {
            return Err(ConfigError::at(
                format!("{path}.backends"),
                "a route with an mcp backend has exactly one backend",
            ));
        }
        if backends.iter().all(|b| b.weight == 0) {
            return Err(ConfigError::at(
                format!("{path}.backends"),
                "backend weights are all 0",
            ));
        }
        if let Some(auth) = &policies.upstream.auth
            && let BackendAuth::OnBehalfOf(_) = auth.as_ref()
            && policies.jwt.is_none()
        {
            return Err(ConfigError::at(
                format!("{path}.policies.backendAuth.onBehalfOf"),
                "onBehalfOf needs a jwtAuth policy on the same route",
            ));
        }
        let obo_anywhere = backends.iter().any(|b| {
            b.policies
                .auth
                .as_ref()
                .is_some_and(|a| matches!(a.as_ref(), BackendAuth::OnBehalfOf(_)))
                || match &b.kind {
                    BackendKind::Mcp(m) => m.targets.iter().any(|t| {
                        t.policies
                            .auth
                            .as_ref()
                            .is_some_and(|a| matches!(a.as_ref(), BackendAuth::OnBehalfOf(_)))
                    }),
                    _ => false,
                }
        });
        if obo_anywhere && policies.jwt.is_none() {
            return Err(ConfigError::at(
                format!("{path}.policies"),
                "onBehalfOf needs a jwtAuth policy on the same route",
            ));
        }
        Ok(Route {
            id,
            hostnames: r.hostnames.iter().map(|h| HostPattern::parse(h)).collect(),
            matches,
            policies,
            backends,
        })
    }

    pub(super) fn route_match(&self, m: &raw::Match, path: &str) -> Result<RouteMatch> {
        let p = m.path.clone().unwrap_or(raw::PathMatch {
            path_prefix: Some("/".into()),
            ..Default::default()
        });
        let kinds = [
            p.exact.is_some(),
            p.path_prefix.is_some(),
            p.regex.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if kinds != 1 {
            return Err(ConfigError::at(
                format!("{path}.path"),
                "exactly one of exact, pathPrefix, regex is required",
            ));
        }
        // Requests are matched in canonical form (request_path), so the config's paths are too.
        let path_match = if let Some(e) = p.exact {
            PathMatch::Exact(canonical_path(&format!("{path}.path.exact"), &e)?.to_string())
        } else if let Some(prefix) = p.path_prefix {
            let canonical = if prefix.is_empty() {
                String::new()
            } else {
                canonical_path(&format!("{path}.path.pathPrefix"), &prefix)?.to_string()
            };
            PathMatch::Prefix(canonical.trim_end_matches('/').to_string())
        } else {
            let pattern = p.regex.unwrap_or_default();
            PathMatch::Regex(regex(&format!("{path}.path.regex"), &pattern)?, pattern)
        };
        let value = |kind: &str, i: usize, vm: &raw::ValueMatch| -> Result<(String, ValueMatch)> {
            let vpath = format!("{path}.{kind}[{i}].value");
            let matcher = match (&vm.value.exact, &vm.value.regex) {
                (Some(e), None) => ValueMatch::Exact(e.clone()),
                (None, Some(r)) => ValueMatch::Regex(regex(&format!("{vpath}.regex"), r)?),
                _ => {
                    return Err(ConfigError::at(
                        vpath,
                        "exactly one of exact, regex is required",
                    ));
                }
            };
            Ok((vm.name.to_ascii_lowercase(), matcher))
        };
        let mut headers = Vec::new();
        for (i, h) in m.headers.iter().enumerate() {
            let (name, matcher) = value("headers", i, h)?;
            http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ConfigError::at(
                    format!("{path}.headers[{i}].name"),
                    "not a valid header name",
                )
            })?;
            headers.push((name, matcher));
        }
        let mut query = Vec::new();
        for (i, q) in m.query.iter().enumerate() {
            let (_, matcher) = value("query", i, q)?;
            query.push((q.name.clone(), matcher));
        }
        Ok(RouteMatch {
            path: path_match,
            method: m.method.clone(),
            headers,
            query,
        })
    }

    pub(super) fn route_policies(
        &mut self,
        p: &raw::RoutePolicies,
        path: &str,
        matches: &[RouteMatch],
    ) -> Result<RoutePolicies> {
        let (jwt, mcp_auth) = match (&p.jwt_auth, &p.mcp_authentication) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::at(
                    format!("{path}.mcpAuthentication"),
                    "mcpAuthentication validates tokens itself: remove jwtAuth from this route",
                ));
            }
            (Some(j), None) => (
                Some(Arc::new(self.jwt(j, &format!("{path}.jwtAuth"))?)),
                None,
            ),
            (None, Some(m)) => {
                let (jwt, auth) = self.mcp_authentication(
                    m,
                    &format!("{path}.mcpAuthentication"),
                    matches.first().map(|m| &m.path),
                )?;
                (Some(Arc::new(jwt)), Some(Arc::new(auth)))
            }
            (None, None) => (None, None),
        };
        let authorization = match &p.authorization {
            Some(r) => {
                let set = rules(r, &format!("{path}.authorization"))?;
                for (i, rule) in r.rules.iter().enumerate() {
                    let text = rule_text(rule);
                    if text.contains("mcp.") || text.contains("llm.") {
                        return Err(ConfigError::at(
                            format!("{path}.authorization.rules[{i}]"),
                            "authorization rules run before MCP/LLM handling: `mcp.` and `llm.` do not exist there (use mcpAuthorization)",
                        ));
                    }
                }
                Some(set)
            }
            None => None,
        };
        let mcp_authorization = match &p.mcp_authorization {
            Some(r) => Some(rules(r, &format!("{path}.mcpAuthorization"))?),
            None => None,
        };
        let cors = p
            .cors
            .as_ref()
            .map(|c| self.cors(c, &format!("{path}.cors")))
            .transpose()?;
        let response_headers = p
            .response_header_modifier
            .as_ref()
            .map(|h| header_modifier(h, &format!("{path}.responseHeaderModifier")))
            .transpose()?;
        let url_rewrite = p
            .url_rewrite
            .as_ref()
            .map(|u| url_rewrite(u, &format!("{path}.urlRewrite"), matches))
            .transpose()?;
        let upstream = self.upstream_policy(
            p.request_header_modifier.as_ref(),
            p.backend_tls.as_ref(),
            p.backend_auth.as_ref(),
            path,
        )?;
        let (request_timeout, backend_request_timeout) = match &p.timeout {
            Some(t) => (
                t.request_timeout
                    .as_ref()
                    .map(|s| {
                        duration::parse(s).map_err(|e| {
                            ConfigError::at(format!("{path}.timeout.requestTimeout"), e)
                        })
                    })
                    .transpose()?,
                t.backend_request_timeout
                    .as_ref()
                    .map(|s| {
                        duration::parse(s).map_err(|e| {
                            ConfigError::at(format!("{path}.timeout.backendRequestTimeout"), e)
                        })
                    })
                    .transpose()?,
            ),
            None => (None, None),
        };
        Ok(RoutePolicies {
            jwt,
            mcp_auth,
            authorization,
            mcp_authorization,
            cors,
            response_headers,
            url_rewrite,
            upstream,
            request_timeout,
            backend_request_timeout,
        })
    }

    pub(super) fn cors(&self, c: &raw::Cors, path: &str) -> Result<Cors> {
        let max_age = match &c.max_age {
            None => None,
            Some(Value::Number(n)) => Some(n.as_u64().ok_or_else(|| {
                ConfigError::at(format!("{path}.maxAge"), "expected seconds or a duration")
            })?),
            Some(Value::String(s)) => Some(
                duration::parse(s)
                    .map_err(|e| ConfigError::at(format!("{path}.maxAge"), e))?
                    .as_secs(),
            ),
            Some(_) => {
                return Err(ConfigError::at(
                    format!("{path}.maxAge"),
                    "expected seconds or a duration",
                ));
            }
        };
        Ok(Cors {
            allow_origins: c.allow_origins.clone(),
            allow_methods: c.allow_methods.clone(),
            allow_headers: c.allow_headers.clone(),
            expose_headers: c.expose_headers.clone(),
            allow_credentials: c.allow_credentials.unwrap_or(false),
            max_age,
        })
    }
}

pub(super) fn url_rewrite(
    u: &raw::UrlRewrite,
    path: &str,
    matches: &[RouteMatch],
) -> Result<UrlRewrite> {
    let authority = match &u.authority {
        None => AuthorityRewrite::None,
        Some(Value::String(s)) if s == "auto" => AuthorityRewrite::Auto,
        Some(Value::String(s)) if s == "none" => AuthorityRewrite::None,
        Some(Value::Object(m)) if m.len() == 1 => {
            let (k, v) = m.iter().next().expect("one entry");
            match (k.as_str(), v) {
                ("full", Value::String(s)) => AuthorityRewrite::Full(s.clone()),
                ("host", Value::String(s)) => AuthorityRewrite::Host(s.clone()),
                ("port", Value::Number(n)) if n.as_u64().is_some_and(|p| p <= 65535) => {
                    AuthorityRewrite::Port(n.as_u64().unwrap_or_default() as u16)
                }
                _ => {
                    return Err(ConfigError::at(
                        format!("{path}.authority"),
                        "expected {full: …}, {host: …}, {port: …}, \"auto\" or \"none\"",
                    ));
                }
            }
        }
        Some(_) => {
            return Err(ConfigError::at(
                format!("{path}.authority"),
                "expected {full: …}, {host: …}, {port: …}, \"auto\" or \"none\"",
            ));
        }
    };
    let path_rw = match &u.path {
        None => None,
        Some(p) => match (&p.full, &p.prefix) {
            (Some(f), None) if f.is_empty() => Some(PathRewrite::Full(CanonicalPath::root())),
            (Some(f), None) => Some(PathRewrite::Full(canonical_path(
                &format!("{path}.path.full"),
                f,
            )?)),
            (None, Some(pre)) => {
                if !matches
                    .iter()
                    .all(|m| matches!(m.path, PathMatch::Prefix(_)))
                {
                    return Err(ConfigError::at(
                        format!("{path}.path.prefix"),
                        "a prefix rewrite needs every match of the route to be a pathPrefix match",
                    ));
                }
                let replacement = if pre.is_empty() {
                    String::new()
                } else {
                    canonical_path(&format!("{path}.path.prefix"), pre)?
                        .to_string()
                        .trim_end_matches('/')
                        .to_string()
                };
                Some(PathRewrite::Prefix(replacement))
            }
            _ => {
                return Err(ConfigError::at(
                    format!("{path}.path"),
                    "exactly one of full, prefix is required",
                ));
            }
        },
    };
    Ok(UrlRewrite {
        authority,
        path: path_rw,
    })
}
