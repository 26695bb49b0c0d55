//! raw → model: every one-of shape, duration, regex, CEL rule, path and cross-field rule of
//! gateway.md §2.2–2.4 is checked here, each error carrying the JSON path of its key.

use super::ConfigError;
use super::duration;
use super::model::*;
use super::raw;
use super::upstream_tls;
use crate::jwt::{JwksRegistry, JwksSource, JwtAuth, JwtAuthSpec, JwtSettings, Mode, ProviderSpec};
use crate::request_path::CanonicalPath;
use crate::rules::{Expr, RuleKind, RuleSet, RuleSpec};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What compiling needs beyond the file: the shared JWKS caches.
pub struct Context {
    pub jwks: Arc<JwksRegistry>,
}

type Result<T> = std::result::Result<T, ConfigError>;

/// hyper's smallest HTTP/1 read buffer; `maxRequestHeaderBytes` bounds it.
pub const MIN_REQUEST_HEADER_BYTES: usize = agentid_listener::MIN_HEADER_BYTES;

struct V<'a> {
    base: &'a Path,
    ctx: &'a Context,
    warnings: Vec<String>,
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

/// `agentid.jwt`: read before the rest of the file is compiled, because the JWKS caches the
/// compiled policies share are built with these settings.
pub(crate) fn jwt_settings(j: &raw::AgentidJwt) -> Result<JwtSettings> {
    Ok(JwtSettings {
        clock_skew: dur(
            "agentid.jwt.clockSkew",
            &j.clock_skew,
            Duration::from_secs(60),
        )?,
        jwks_refresh_interval: dur(
            "agentid.jwt.jwksRefreshInterval",
            &j.jwks_refresh_interval,
            Duration::from_secs(3600),
        )?,
        jwks_min_refresh_interval: dur(
            "agentid.jwt.jwksMinRefreshInterval",
            &j.jwks_min_refresh_interval,
            Duration::from_secs(30),
        )?,
        jwks_fetch_timeout: dur(
            "agentid.jwt.jwksFetchTimeout",
            &j.jwks_fetch_timeout,
            Duration::from_secs(5),
        )?,
        verified_token_cache_size: j.verified_token_cache_size.unwrap_or(10_000),
    })
}

fn expr(path: &str, text: &str) -> Result<Expr> {
    Expr::compile(text).map_err(|e| ConfigError::at(path, format!("CEL does not compile: {e}")))
}

fn dur(path: &str, value: &Option<String>, default: Duration) -> Result<Duration> {
    match value {
        None => Ok(default),
        Some(s) => duration::parse(s).map_err(|e| ConfigError::at(path, e)),
    }
}

fn regex(path: &str, pattern: &str) -> Result<regex::Regex> {
    // The whole value must match (gateway.md §5.1).
    regex::Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| ConfigError::at(path, format!("regex does not compile: {e}")))
}

fn addr(path: &str, value: &Option<String>, default: &str) -> Result<Option<SocketAddr>> {
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
    fn resolve(&self, p: &str) -> PathBuf {
        let path = Path::new(p);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        }
    }

    fn readable(&self, path: &str, p: &str) -> Result<PathBuf> {
        let resolved = self.resolve(p);
        std::fs::metadata(&resolved).map_err(|e| {
            ConfigError::at(path, format!("cannot read {}: {e}", resolved.display()))
        })?;
        Ok(resolved)
    }

    fn static_config(&self, c: &raw::Config) -> Result<StaticConfig> {
        let worker_threads = match &c.worker_threads {
            None => None,
            Some(Value::String(s)) if s == "auto" => None,
            Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n > 0) => {
                n.as_u64().map(|n| n as usize)
            }
            Some(other) => {
                return Err(ConfigError::at(
                    "config.workerThreads",
                    format!("{other} is not a positive integer or \"auto\""),
                ));
            }
        };
        if let Some(t) = &c.tracing
            && let Some(p) = &t.otlp_protocol
            && p != "grpc"
            && p != "http"
        {
            return Err(ConfigError::at(
                "config.tracing.otlpProtocol",
                format!("{p:?} is not grpc or http"),
            ));
        }
        Ok(StaticConfig {
            admin_addr: addr("config.adminAddr", &c.admin_addr, "127.0.0.1:15000")?,
            stats_addr: addr("config.statsAddr", &c.stats_addr, "0.0.0.0:15020")?,
            readiness_addr: addr("config.readinessAddr", &c.readiness_addr, "0.0.0.0:15021")?,
            worker_threads,
            termination_deadline: dur(
                "config.connectionTerminationDeadline",
                &c.connection_termination_deadline,
                Duration::from_secs(30),
            )?,
        })
    }

    fn settings(&mut self, c: &raw::Config, a: Option<&raw::Agentid>) -> Result<Settings> {
        let a = a.cloned().unwrap_or_default();
        let bind_address: IpAddr = match &a.bind_address {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(s) => s.parse().map_err(|_| {
                ConfigError::at("agentid.bindAddress", format!("{s:?} is not an IP address"))
            })?,
        };
        let jwt = jwt_settings(&a.jwt.clone().unwrap_or_default())?;
        let au = a.audit.unwrap_or_default();
        let audit = AuditSettings {
            stdout: au.stdout.unwrap_or(true),
            retain: au.retain.unwrap_or(10_000),
            queue_size: au.queue_size.unwrap_or(65_536).max(1),
            file: au.file.map(|f| AuditFile {
                path: self.resolve(&f.path),
                max_size_bytes: f.max_size_bytes.unwrap_or(104_857_600),
                max_files: f.max_files.unwrap_or(5),
            }),
        };
        let l = a.limits.unwrap_or_default();
        let limits = Limits {
            mcp_request_body_bytes: l.mcp_request_body_bytes.unwrap_or(4 * 1024 * 1024),
            llm_request_body_bytes: l.llm_request_body_bytes.unwrap_or(32 * 1024 * 1024),
            response_tee_bytes: l.response_tee_bytes.unwrap_or(2 * 1024 * 1024),
            max_request_header_bytes: l.max_request_header_bytes.unwrap_or(65_536),
            max_connections: l.max_connections.unwrap_or(10_000),
            max_mcp_sessions: l.max_mcp_sessions.unwrap_or(10_000),
            max_mcp_sessions_per_principal: l.max_mcp_sessions_per_principal.unwrap_or(100),
        };
        for (key, value) in [
            ("maxConnections", limits.max_connections),
            ("maxMcpSessions", limits.max_mcp_sessions),
            (
                "maxMcpSessionsPerPrincipal",
                limits.max_mcp_sessions_per_principal,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::at(
                    format!("agentid.limits.{key}"),
                    "must be at least 1",
                ));
            }
        }
        if limits.max_request_header_bytes < MIN_REQUEST_HEADER_BYTES {
            return Err(ConfigError::at(
                "agentid.limits.maxRequestHeaderBytes",
                format!("must be at least {MIN_REQUEST_HEADER_BYTES}"),
            ));
        }
        let t = a.timeouts.unwrap_or_default();
        let p = "agentid.timeouts";
        let timeouts = Timeouts {
            header_read: dur(
                &format!("{p}.headerRead"),
                &t.header_read,
                Duration::from_secs(30),
            )?,
            downstream_idle: dur(
                &format!("{p}.downstreamIdle"),
                &t.downstream_idle,
                Duration::from_secs(600),
            )?,
            mcp_initialize: dur(
                &format!("{p}.mcpInitialize"),
                &t.mcp_initialize,
                Duration::from_secs(10),
            )?,
            mcp_request: dur(
                &format!("{p}.mcpRequest"),
                &t.mcp_request,
                Duration::from_secs(120),
            )?,
            mcp_target_retry: dur(
                &format!("{p}.mcpTargetRetry"),
                &t.mcp_target_retry,
                Duration::from_secs(30),
            )?,
            llm_response_headers: dur(
                &format!("{p}.llmResponseHeaders"),
                &t.llm_response_headers,
                Duration::from_secs(300),
            )?,
            http_response_headers: dur(
                &format!("{p}.httpResponseHeaders"),
                &t.http_response_headers,
                Duration::from_secs(60),
            )?,
            token_exchange: dur(
                &format!("{p}.tokenExchange"),
                &t.token_exchange,
                Duration::from_secs(10),
            )?,
            request_body: dur(
                &format!("{p}.requestBody"),
                &t.request_body,
                Duration::from_secs(60),
            )?,
        };
        let inject_stream_usage = match a
            .llm
            .as_ref()
            .and_then(|l| l.inject_stream_usage.as_deref())
            .unwrap_or("auto")
        {
            "auto" => InjectUsage::Auto,
            "always" => InjectUsage::Always,
            "never" => InjectUsage::Never,
            other => {
                return Err(ConfigError::at(
                    "agentid.llm.injectStreamUsage",
                    format!("{other:?} is not auto, always or never"),
                ));
            }
        };
        let m = a.metrics.unwrap_or_default();
        let user_label = match m.user_label.as_deref().unwrap_or("oid") {
            "oid" => UserLabel::Oid,
            "upn" => UserLabel::Upn,
            "none" => UserLabel::None,
            other => {
                return Err(ConfigError::at(
                    "agentid.metrics.userLabel",
                    format!("{other:?} is not oid, upn or none"),
                ));
            }
        };
        let backend = c.backend.clone().unwrap_or_default();
        Ok(Settings {
            bind_address,
            jwt,
            audit,
            limits,
            timeouts,
            inject_stream_usage,
            user_label,
            max_series_per_family: m.max_series_per_family.unwrap_or(10_000),
            session_ttl: dur(
                "config.mcp.sessionTtl",
                &c.mcp.as_ref().and_then(|m| m.session_ttl.clone()),
                Duration::from_secs(1800),
            )?,
            connect_timeout: dur(
                "config.backend.connectTimeout",
                &backend.connect_timeout,
                Duration::from_secs(10),
            )?,
            pool_idle_timeout: dur(
                "config.backend.poolIdleTimeout",
                &backend.pool_idle_timeout,
                Duration::from_secs(90),
            )?,
            pool_max_size: backend.pool_max_size,
        })
    }

    fn listener(
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

    fn route(&mut self, id: String, r: &raw::Route, path: &str) -> Result<Route> {
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

    fn route_match(&self, m: &raw::Match, path: &str) -> Result<RouteMatch> {
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

    fn route_policies(
        &mut self,
        p: &raw::RoutePolicies,
        path: &str,
        matches: &[RouteMatch],
    ) -> Result<RoutePolicies> {
        let jwt = match &p.jwt_auth {
            Some(j) => Some(Arc::new(self.jwt(j, &format!("{path}.jwtAuth"))?)),
            None => None,
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

    fn jwt(&mut self, j: &raw::JwtAuth, path: &str) -> Result<JwtAuth> {
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

    fn provider(
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

    fn cors(&self, c: &raw::Cors, path: &str) -> Result<Cors> {
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

    fn upstream_policy(
        &mut self,
        headers: Option<&raw::HeaderModifier>,
        tls: Option<&raw::BackendTls>,
        auth: Option<&raw::BackendAuth>,
        path: &str,
    ) -> Result<UpstreamPolicy> {
        Ok(UpstreamPolicy {
            headers: headers
                .map(|h| header_modifier(h, &format!("{path}.requestHeaderModifier")).map(Arc::new))
                .transpose()?,
            tls: tls
                .map(|t| self.tls(t, &format!("{path}.backendTLS")).map(Arc::new))
                .transpose()?,
            auth: auth
                .map(|a| {
                    self.backend_auth(a, &format!("{path}.backendAuth"))
                        .map(Arc::new)
                })
                .transpose()?,
        })
    }

    fn tls(&mut self, t: &raw::BackendTls, path: &str) -> Result<TlsPolicy> {
        let root = t
            .root
            .as_ref()
            .map(|r| self.readable(&format!("{path}.root"), r))
            .transpose()?;
        let cert = t
            .cert
            .as_ref()
            .map(|r| self.readable(&format!("{path}.cert"), r))
            .transpose()?;
        let key = t
            .key
            .as_ref()
            .map(|r| self.readable(&format!("{path}.key"), r))
            .transpose()?;
        if cert.is_some() != key.is_some() {
            return Err(ConfigError::at(path, "cert and key go together"));
        }
        if let Some(h) = &t.hostname
            && rustls::pki_types::ServerName::try_from(h.as_str()).is_err()
        {
            return Err(ConfigError::at(
                format!("{path}.hostname"),
                format!("{h:?} is not a DNS name or IP address"),
            ));
        }
        if t.insecure.unwrap_or(false) || t.insecure_host.unwrap_or(false) {
            self.warnings.push(format!(
                "{path}: certificate verification is weakened (insecure)"
            ));
        }
        Ok(TlsPolicy {
            root,
            hostname: t.hostname.clone(),
            cert,
            key,
            insecure: t.insecure.unwrap_or(false),
            insecure_host: t.insecure_host.unwrap_or(false),
        })
    }

    fn secret(&self, v: &Value, path: &str) -> Result<Secret> {
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

    fn backend_auth(&mut self, a: &raw::BackendAuth, path: &str) -> Result<BackendAuth> {
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

    /// `route_tls`: the route's `backendTLS`, which MCP targets inherit (`upstream_tls`).
    fn backend(
        &mut self,
        b: &raw::RouteBackend,
        path: &str,
        route_tls: Option<&Arc<TlsPolicy>>,
    ) -> Result<Backend> {
        let kinds = [b.host.is_some(), b.mcp.is_some(), b.ai.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        if kinds != 1 {
            return Err(ConfigError::at(
                path,
                "exactly one of host, mcp, ai is required",
            ));
        }
        let (policies, mcp_authorization) = match &b.policies {
            Some(p) => (
                self.upstream_policy(
                    p.request_header_modifier.as_ref(),
                    p.backend_tls.as_ref(),
                    p.backend_auth.as_ref(),
                    &format!("{path}.policies"),
                )?,
                p.mcp_authorization
                    .as_ref()
                    .map(|r| rules(r, &format!("{path}.policies.mcpAuthorization")))
                    .transpose()?,
            ),
            None => (UpstreamPolicy::default(), None),
        };
        let weight = b.weight.unwrap_or(1);
        if let Some(host) = &b.host {
            let (h, p) = host_port(host).ok_or_else(|| {
                ConfigError::at(format!("{path}.host"), "expected \"<host>:<port>\"")
            })?;
            return Ok(Backend {
                weight,
                name: host.clone(),
                kind: BackendKind::Host { host: h, port: p },
                policies,
                mcp_authorization,
            });
        }
        if let Some(m) = &b.mcp {
            return Ok(Backend {
                weight,
                name: "mcp".into(),
                kind: BackendKind::Mcp(Arc::new(self.mcp(
                    m,
                    &format!("{path}.mcp"),
                    &[route_tls, policies.tls.as_ref()],
                )?)),
                policies,
                mcp_authorization,
            });
        }
        let ai = b.ai.clone().unwrap_or_default();
        let apath = format!("{path}.ai");
        let provider = match &ai.provider {
            Some(raw::AiProvider {
                open_ai: Some(o),
                azure: None,
            }) => AiProvider::OpenAi {
                model: o.model.clone(),
            },
            Some(raw::AiProvider {
                open_ai: None,
                azure: Some(a),
            }) => {
                match a.resource_type.as_deref().unwrap_or("openAI") {
                    "openAI" => {}
                    other => {
                        return Err(ConfigError::at(
                            format!("{apath}.provider.azure.resourceType"),
                            format!(
                                "\"{other}\" is an agentgateway feature that agentid does not support (only openAI)"
                            ),
                        ));
                    }
                }
                AiProvider::Azure {
                    resource_name: a.resource_name.clone(),
                    api_version: a.api_version.clone().unwrap_or_else(|| "v1".into()),
                    model: a.model.clone(),
                }
            }
            _ => {
                return Err(ConfigError::at(
                    format!("{apath}.provider"),
                    "exactly one of openAI, azure is required",
                ));
            }
        };
        let host_override = ai
            .host_override
            .as_ref()
            .map(|h| {
                host_port(h).ok_or_else(|| {
                    ConfigError::at(
                        format!("{apath}.hostOverride"),
                        "expected \"<host>:<port>\"",
                    )
                })
            })
            .transpose()?;
        let ai_policies = match &ai.policies {
            Some(p) => self.upstream_policy(
                p.request_header_modifier.as_ref(),
                p.backend_tls.as_ref(),
                p.backend_auth.as_ref(),
                &format!("{apath}.policies"),
            )?,
            None => UpstreamPolicy::default(),
        };
        Ok(Backend {
            weight,
            name: ai.name.clone().unwrap_or_else(|| "ai".into()),
            kind: BackendKind::Ai(Arc::new(AiBackend {
                name: ai.name.clone().unwrap_or_else(|| "ai".into()),
                provider,
                host_override,
                path_override: ai
                    .path_override
                    .as_deref()
                    .map(|p| {
                        canonical_path(&format!("{apath}.pathOverride"), p).map(|c| c.to_string())
                    })
                    .transpose()?,
            })),
            policies: policies.overlay(&ai_policies),
            mcp_authorization,
        })
    }

    /// `inherited_tls`: the route's and the backend's `backendTLS`, least specific first.
    fn mcp(
        &mut self,
        m: &raw::McpBackend,
        path: &str,
        inherited_tls: &[Option<&Arc<TlsPolicy>>; 2],
    ) -> Result<McpBackend> {
        if m.targets.is_empty() {
            return Err(ConfigError::at(
                format!("{path}.targets"),
                "at least one target is required",
            ));
        }
        let name_re = regex::Regex::new("^[A-Za-z][A-Za-z0-9.-]{0,63}$").expect("static regex");
        let mut names = HashSet::new();
        let mut targets = Vec::new();
        for (i, t) in m.targets.iter().enumerate() {
            let tpath = format!("{path}.targets[{i}]");
            if !name_re.is_match(&t.name) {
                return Err(ConfigError::at(
                    format!("{tpath}.name"),
                    format!(
                        "{:?} is not a valid target name: a letter, then letters, digits, '.' or '-' (no '_', which separates target and tool)",
                        t.name
                    ),
                ));
            }
            if !names.insert(t.name.clone()) {
                return Err(ConfigError::at(
                    format!("{tpath}.name"),
                    format!("target name {:?} is used twice", t.name),
                ));
            }
            let kinds = [t.mcp.is_some(), t.sse.is_some(), t.stdio.is_some()]
                .iter()
                .filter(|x| **x)
                .count();
            if kinds != 1 {
                return Err(ConfigError::at(
                    &tpath,
                    "exactly one of mcp, sse, stdio is required",
                ));
            }
            let policies = match &t.policies {
                Some(p) => {
                    if t.stdio.is_some() {
                        return Err(ConfigError::at(
                            format!("{tpath}.policies"),
                            "stdio targets take no policies",
                        ));
                    }
                    self.upstream_policy(
                        p.request_header_modifier.as_ref(),
                        p.backend_tls.as_ref(),
                        p.backend_auth.as_ref(),
                        &format!("{tpath}.policies"),
                    )?
                }
                None => UpstreamPolicy::default(),
            };
            let [route_tls, backend_tls] = *inherited_tls;
            let composed = upstream_tls::compose(&[route_tls, backend_tls, policies.tls.as_ref()]);
            let mut endpoint = |h: &raw::TargetHost, kind: &str| -> Result<TargetEndpoint> {
                let kpath = format!("{tpath}.{kind}");
                let (endpoint, upgraded) =
                    upstream_tls::endpoint(target_url(h, &kpath)?, composed.clone());
                if upgraded && h.host.starts_with("http://") {
                    self.warnings.push(format!(
                        "{kpath}.host: backendTLS applies to this target, so it is called over TLS (https) although its URL says http"
                    ));
                }
                Ok(endpoint)
            };
            let transport = if let Some(h) = &t.mcp {
                TargetTransport::Http(endpoint(h, "mcp")?)
            } else if let Some(h) = &t.sse {
                TargetTransport::Sse(endpoint(h, "sse")?)
            } else {
                let s = t.stdio.clone().unwrap_or_default();
                if s.cmd.trim().is_empty() {
                    return Err(ConfigError::at(
                        format!("{tpath}.stdio.cmd"),
                        "cmd is empty",
                    ));
                }
                TargetTransport::Stdio {
                    cmd: s.cmd,
                    args: s.args,
                    env: s.env,
                    clear_env: s.clear_env,
                }
            };
            targets.push(McpTarget {
                name: t.name.clone(),
                transport,
                policies,
            });
        }
        let prefix_mode = match m.prefix_mode.as_deref().unwrap_or("conditional") {
            "conditional" => PrefixMode::Conditional,
            "always" => PrefixMode::Always,
            "never" => PrefixMode::Never,
            other => {
                return Err(ConfigError::at(
                    format!("{path}.prefixMode"),
                    format!("{other:?} is not conditional, always or never"),
                ));
            }
        };
        if prefix_mode == PrefixMode::Never && targets.len() > 1 {
            self.warnings.push(format!(
                "{path}: prefixMode never with several targets: tool names must be unique across targets"
            ));
        }
        let stateless = match m.stateful_mode.as_deref().unwrap_or("stateful") {
            "stateful" => false,
            "stateless" => true,
            other => {
                return Err(ConfigError::at(
                    format!("{path}.statefulMode"),
                    format!("{other:?} is not stateful or stateless"),
                ));
            }
        };
        let fail_closed = match m.failure_mode.as_deref().unwrap_or("failOpen") {
            "failOpen" => false,
            "failClosed" => true,
            other => {
                return Err(ConfigError::at(
                    format!("{path}.failureMode"),
                    format!("{other:?} is not failOpen or failClosed"),
                ));
            }
        };
        Ok(McpBackend {
            targets,
            stateless,
            prefix_mode,
            fail_closed,
            dns_rebinding_protection: m.dns_rebinding_protection.unwrap_or(false),
        })
    }
}

/// The URL a target's config names, with the scheme it writes (`http` for the `host:port`
/// forms: TLS is `upstream_tls`'s decision, never guessed from the host name).
fn target_url(h: &raw::TargetHost, path: &str) -> Result<url::Url> {
    let text = match (h.port, &h.path) {
        (None, None) if h.host.starts_with("http://") || h.host.starts_with("https://") => {
            h.host.clone()
        }
        (None, None) => match host_port(&h.host) {
            Some((host, port)) => format!("http://{}/", crate::pipeline::authority(&host, port)),
            None => {
                return Err(ConfigError::at(
                    format!("{path}.host"),
                    "expected an http(s):// URL, host:port, or host with port and path",
                ));
            }
        },
        (Some(port), p) => {
            let target_path = match p.as_deref() {
                None | Some("") => CanonicalPath::root(),
                Some(p) => canonical_path(&format!("{path}.path"), p)?,
            };
            format!(
                "http://{}{target_path}",
                crate::pipeline::authority(&h.host, port)
            )
        }
        (None, Some(_)) => {
            return Err(ConfigError::at(format!("{path}.port"), "path needs a port"));
        }
    };
    url::Url::parse(&text)
        .map_err(|e| ConfigError::at(format!("{path}.host"), format!("not a valid URL: {e}")))
}

pub(crate) fn host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    if host.is_empty() {
        return None;
    }
    Some((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
    ))
}

fn rule_text(v: &Value) -> String {
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

fn rules(r: &raw::Rules, path: &str) -> Result<RuleSet> {
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
fn canonical_path(path: &str, value: &str) -> Result<CanonicalPath> {
    CanonicalPath::parse(value)
        .map_err(|e| ConfigError::at(path, format!("{value:?} is not a usable path: {e}")))
}

fn location(l: &raw::Location, path: &str) -> Result<(String, Option<String>)> {
    let h = l
        .header
        .as_ref()
        .ok_or_else(|| ConfigError::at(path, "only header locations are supported"))?;
    header_name(&h.name, &format!("{path}.header.name"))?;
    Ok((h.name.to_ascii_lowercase(), h.prefix.clone()))
}

fn header_name(name: &str, path: &str) -> Result<http::HeaderName> {
    http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .map_err(|_| ConfigError::at(path, format!("{name:?} is not a valid header name")))
}

fn header_modifier(h: &raw::HeaderModifier, path: &str) -> Result<HeaderModifier> {
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

fn url_rewrite(u: &raw::UrlRewrite, path: &str, matches: &[RouteMatch]) -> Result<UrlRewrite> {
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
