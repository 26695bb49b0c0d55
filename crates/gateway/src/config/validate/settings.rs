//! The top-level `config` block and `agentid` settings (docs/gateway.md §2.3).

use super::common::{Result, V, addr, dur};
use crate::config::error::ConfigError;
use crate::config::model::*;
use crate::config::raw;
use crate::jwt::JwtSettings;
use serde_json::Value;
use std::net::IpAddr;
use std::time::Duration;

impl V<'_> {
    pub(super) fn static_config(&self, c: &raw::Config) -> Result<StaticConfig> {
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

    pub(super) fn settings(
        &mut self,
        c: &raw::Config,
        a: Option<&raw::Agentid>,
    ) -> Result<Settings> {
        let a = a.cloned().unwrap_or_default();
        let bind_address: IpAddr = match &a.bind_address {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(s) => s.parse().map_err(|_| {
                ConfigError::at("agentid.bindAddress", format!("{s:?} is not an IP address"))
            })?,
        };
        let jwt = jwt_settings(&a.jwt.clone().unwrap_or_default())?;
        let revocation = super::revocation::revocation(a.revocation.as_ref(), jwt.clock_skew)?;
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
            ship: au.ship.as_ref().map(|s| self.audit_ship(s)).transpose()?,
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
            revocation,
        })
    }
}

/// hyper's smallest HTTP/1 read buffer; `maxRequestHeaderBytes` bounds it.
pub const MIN_REQUEST_HEADER_BYTES: usize = agentid_listener::MIN_HEADER_BYTES;

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

impl V<'_> {
    /// `agentid.audit.ship` (docs/audit.md §6.1).
    fn audit_ship(&self, s: &raw::AuditShip) -> Result<ShipSettings> {
        let p = "agentid.audit.ship";
        for (key, url) in [("tokenEndpoint", &s.token_endpoint), ("url", &s.url)] {
            let ok = url::Url::parse(url).is_ok_and(|u| {
                (u.scheme() == "https" || u.scheme() == "http") && u.host().is_some()
            });
            if !ok {
                return Err(ConfigError::at(
                    format!("{p}.{key}"),
                    format!("{url:?} is not an http(s) URL"),
                ));
            }
        }
        if agentid_claims::guid::parse(&s.client_id).is_none() {
            return Err(ConfigError::at(
                format!("{p}.clientId"),
                "must be the gateway application's appId (a GUID)",
            ));
        }
        let batch_size = s.batch_size.unwrap_or(500);
        if !(1..=1000).contains(&batch_size) {
            return Err(ConfigError::at(
                format!("{p}.batchSize"),
                "must be 1 to 1000",
            ));
        }
        let max_spool_bytes = s.max_spool_bytes.unwrap_or(64 * 1024 * 1024);
        if max_spool_bytes < 1024 * 1024 {
            return Err(ConfigError::at(
                format!("{p}.maxSpoolBytes"),
                "must be at least 1048576",
            ));
        }
        if s.spool_dir.is_empty() {
            return Err(ConfigError::at(
                format!("{p}.spoolDir"),
                "must not be empty",
            ));
        }
        Ok(ShipSettings {
            token_endpoint: s.token_endpoint.clone(),
            client_id: s.client_id.clone(),
            client_secret: self.secret(&s.client_secret, &format!("{p}.clientSecret"))?,
            scope: s
                .scope
                .clone()
                .unwrap_or_else(|| "https://graph.microsoft.com/.default".into()),
            url: s.url.clone(),
            root: s
                .root
                .as_deref()
                .map(|r| self.readable(&format!("{p}.root"), r))
                .transpose()?,
            spool_dir: self.resolve(&s.spool_dir),
            max_spool_bytes,
            batch_size,
            flush_interval: dur(
                &format!("{p}.flushInterval"),
                &s.flush_interval,
                Duration::from_secs(1),
            )?,
        })
    }
}
