//! The validated, compiled config: what the request path reads. Built once per load by
//! `validate`, immutable afterwards, swapped atomically on reload.

use crate::jwt::JwtAuth;
use crate::rules::{Expr, RuleSet};
use regex::Regex;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub struct Snapshot {
    pub static_cfg: StaticConfig,
    pub settings: Settings,
    pub binds: Vec<Bind>,
    pub log: LogFields,
    pub metric_fields: Vec<(String, Expr)>,
    pub removed_metrics: Vec<String>,
    /// The normalized config with secrets redacted (`--print-effective`, `/config_dump`).
    pub effective: serde_json::Value,
}

impl std::fmt::Debug for Snapshot {
    /// The effective view only: compiled rules and keys have no useful Debug form.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("effective", &self.effective)
            .finish()
    }
}

/// Fields applied only at startup (a reload that changes them asks for a restart).
#[derive(Debug, Clone, PartialEq)]
pub struct StaticConfig {
    pub admin_addr: Option<SocketAddr>,
    pub stats_addr: Option<SocketAddr>,
    pub readiness_addr: Option<SocketAddr>,
    pub worker_threads: Option<usize>,
    pub termination_deadline: Duration,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub bind_address: IpAddr,
    pub jwt: crate::jwt::JwtSettings,
    pub audit: AuditSettings,
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub inject_stream_usage: InjectUsage,
    pub user_label: UserLabel,
    pub max_series_per_family: usize,
    pub session_ttl: Duration,
    pub connect_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_size: Option<usize>,
    /// `agentid.revocation`; `None` checks no revocation feed.
    pub revocation: Option<RevocationSettings>,
}

/// The revocation feed (docs/gateway.md §19).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationSettings {
    /// Issuers whose feed is polled; `None`: every `jwtAuth` provider's issuer.
    pub issuers: Option<Vec<String>>,
    pub poll: agentid_claims::revocation::PollSettings,
    /// For routes not named in `routes`.
    pub default: FailurePolicy,
    /// By route id (its name).
    pub routes: std::collections::HashMap<String, FailurePolicy>,
}

/// What a route does when its issuer's feed has not been refreshed for `grace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    pub mode: FailureMode,
    pub grace: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    /// Tokens are accepted (still refused when the last state held revokes them).
    Open,
    /// Every token of the issuer is refused with 503.
    Closed,
}

#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub stdout: bool,
    pub retain: usize,
    pub queue_size: usize,
    pub file: Option<AuditFile>,
    /// Shipping to the STS through a spool (docs/audit.md §6).
    pub ship: Option<ShipSettings>,
}

/// `agentid.audit.ship` (docs/audit.md §6.1).
#[derive(Debug, Clone)]
pub struct ShipSettings {
    pub token_endpoint: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub scope: String,
    pub url: String,
    pub root: Option<PathBuf>,
    pub spool_dir: PathBuf,
    pub max_spool_bytes: u64,
    pub batch_size: usize,
    pub flush_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct AuditFile {
    pub path: PathBuf,
    pub max_size_bytes: u64,
    pub max_files: u32,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub mcp_request_body_bytes: usize,
    pub llm_request_body_bytes: usize,
    pub response_tee_bytes: usize,
    pub max_request_header_bytes: usize,
    pub max_connections: usize,
    pub max_mcp_sessions: usize,
    pub max_mcp_sessions_per_principal: usize,
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    pub header_read: Duration,
    pub downstream_idle: Duration,
    pub mcp_initialize: Duration,
    pub mcp_request: Duration,
    pub mcp_target_retry: Duration,
    pub llm_response_headers: Duration,
    pub http_response_headers: Duration,
    pub token_exchange: Duration,
    /// Reading a whole MCP or LLM request body.
    pub request_body: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InjectUsage {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserLabel {
    Oid,
    Upn,
    None,
}

#[derive(Default)]
pub struct LogFields {
    pub filter: Option<Expr>,
    pub add: Vec<(String, Expr)>,
    pub remove: Vec<String>,
}

pub struct Bind {
    pub port: u16,
    pub listeners: Vec<Listener>,
}

pub struct Listener {
    pub name: Option<String>,
    pub index: usize,
    pub hostname: Option<HostPattern>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub routes: Vec<Arc<Route>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// `*.suffix`: stores `.suffix`.
    Wildcard(String),
}

impl HostPattern {
    pub fn parse(s: &str) -> HostPattern {
        match s.strip_prefix('*') {
            Some(suffix) => HostPattern::Wildcard(suffix.to_ascii_lowercase()),
            None => HostPattern::Exact(s.to_ascii_lowercase()),
        }
    }
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h.eq_ignore_ascii_case(host),
            HostPattern::Wildcard(suffix) => {
                host.len() > suffix.len() && host.to_ascii_lowercase().ends_with(suffix.as_str())
            }
        }
    }
}

pub struct Route {
    /// The route's name, or `<port>/<listener index>/<route index>` when unnamed.
    pub id: String,
    pub hostnames: Vec<HostPattern>,
    pub matches: Vec<RouteMatch>,
    pub policies: RoutePolicies,
    pub backends: Vec<Backend>,
}

pub struct RouteMatch {
    pub path: PathMatch,
    pub method: Option<String>,
    pub headers: Vec<(String, ValueMatch)>,
    pub query: Vec<(String, ValueMatch)>,
}

pub enum PathMatch {
    Exact(String),
    /// Stored without a trailing `/` (`/` itself is stored as empty).
    Prefix(String),
    Regex(Regex, String),
}

pub enum ValueMatch {
    Exact(String),
    Regex(Regex),
}

impl ValueMatch {
    pub fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatch::Exact(v) => v == value,
            ValueMatch::Regex(r) => r.is_match(value),
        }
    }
}

#[derive(Default)]
pub struct RoutePolicies {
    pub jwt: Option<Arc<JwtAuth>>,
    /// `mcpAuthentication`'s metadata and challenges; its validator is `jwt`.
    pub mcp_auth: Option<Arc<crate::mcp_auth::McpAuth>>,
    pub authorization: Option<RuleSet>,
    pub mcp_authorization: Option<RuleSet>,
    pub cors: Option<Cors>,
    pub response_headers: Option<HeaderModifier>,
    pub url_rewrite: Option<UrlRewrite>,
    pub upstream: UpstreamPolicy,
    pub request_timeout: Option<Duration>,
    pub backend_request_timeout: Option<Duration>,
}

/// The policies that apply to upstream requests; the most specific level wins per field
/// (target > backend > route), as a whole.
#[derive(Default, Clone)]
pub struct UpstreamPolicy {
    pub tls: Option<Arc<TlsPolicy>>,
    pub auth: Option<Arc<BackendAuth>>,
    pub headers: Option<Arc<HeaderModifier>>,
}

impl UpstreamPolicy {
    pub fn overlay(&self, more_specific: &UpstreamPolicy) -> UpstreamPolicy {
        UpstreamPolicy {
            tls: more_specific.tls.clone().or_else(|| self.tls.clone()),
            auth: more_specific.auth.clone().or_else(|| self.auth.clone()),
            headers: more_specific
                .headers
                .clone()
                .or_else(|| self.headers.clone()),
        }
    }
}

pub struct Cors {
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub allow_credentials: bool,
    pub max_age: Option<u64>,
}

#[derive(Debug, Default, Clone)]
pub struct HeaderModifier {
    pub add: Vec<(http::HeaderName, http::HeaderValue)>,
    pub set: Vec<(http::HeaderName, http::HeaderValue)>,
    pub remove: Vec<http::HeaderName>,
}

impl HeaderModifier {
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

pub struct UrlRewrite {
    pub authority: AuthorityRewrite,
    pub path: Option<PathRewrite>,
}

pub enum AuthorityRewrite {
    None,
    Auto,
    Full(String),
    Host(String),
    Port(u16),
}

pub enum PathRewrite {
    Full(crate::request_path::CanonicalPath),
    /// Empty, or a canonical path without its trailing `/`.
    Prefix(String),
}

/// `backendTLS`; the default is `backendTLS: {}` (system roots, full verification).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsPolicy {
    pub root: Option<PathBuf>,
    pub hostname: Option<String>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub insecure: bool,
    pub insecure_host: bool,
}

pub enum BackendAuth {
    Passthrough {
        header: http::HeaderName,
        prefix: String,
    },
    Key {
        value: Secret,
        header: http::HeaderName,
        prefix: String,
    },
    OnBehalfOf(Arc<OnBehalfOf>),
}

impl BackendAuth {
    pub fn kind(&self) -> &'static str {
        match self {
            BackendAuth::Passthrough { .. } => "passthrough",
            BackendAuth::Key { .. } => "key",
            BackendAuth::OnBehalfOf(_) => "onBehalfOf",
        }
    }
}

pub struct OnBehalfOf {
    pub mode: OboMode,
    pub header: http::HeaderName,
    /// `None`: the sidecar's value as is, or `Bearer ` before an STS token.
    pub prefix: Option<String>,
}

pub enum OboMode {
    Sidecar {
        url: String,
        api: String,
        scopes: Vec<String>,
    },
    Sts {
        token_endpoint: String,
        client_id: String,
        credential: OboCredential,
        scopes: Vec<String>,
        root: Option<PathBuf>,
    },
}

pub enum OboCredential {
    Secret(Secret),
    AssertionFile(PathBuf),
}

/// A secret value from the config; never printed.
#[derive(Clone)]
pub struct Secret(pub Arc<str>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

pub struct Backend {
    pub weight: u32,
    pub name: String,
    pub kind: BackendKind,
    pub policies: UpstreamPolicy,
    pub mcp_authorization: Option<RuleSet>,
}

pub enum BackendKind {
    Host { host: String, port: u16 },
    Mcp(Arc<McpBackend>),
    Ai(Arc<AiBackend>),
}

impl BackendKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            BackendKind::Host { .. } => "static",
            BackendKind::Mcp(_) => "mcp",
            BackendKind::Ai(_) => "ai",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixMode {
    Conditional,
    Always,
    Never,
}

pub struct McpBackend {
    pub targets: Vec<McpTarget>,
    pub stateless: bool,
    pub prefix_mode: PrefixMode,
    pub fail_closed: bool,
    pub dns_rebinding_protection: bool,
}

impl McpBackend {
    pub fn prefixed(&self) -> bool {
        match self.prefix_mode {
            PrefixMode::Always => true,
            PrefixMode::Never => false,
            PrefixMode::Conditional => self.targets.len() > 1,
        }
    }
}

pub struct McpTarget {
    pub name: String,
    pub transport: TargetTransport,
    pub policies: UpstreamPolicy,
}

pub enum TargetTransport {
    /// Streamable HTTP at this URL, over the TLS composed at load (`upstream_tls`).
    Http(TargetEndpoint),
    /// Legacy HTTP+SSE at this URL (the GET endpoint).
    Sse(TargetEndpoint),
    Stdio {
        cmd: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        clear_env: bool,
    },
}

pub enum AiProvider {
    OpenAi {
        model: Option<String>,
    },
    Azure {
        resource_name: String,
        api_version: String,
        model: Option<String>,
    },
}

impl AiProvider {
    pub fn name(&self) -> &'static str {
        match self {
            AiProvider::OpenAi { .. } => "openai",
            AiProvider::Azure { .. } => "azure",
        }
    }
    pub fn model_override(&self) -> Option<&str> {
        match self {
            AiProvider::OpenAi { model } | AiProvider::Azure { model, .. } => model.as_deref(),
        }
    }
}

pub struct AiBackend {
    pub name: String,
    pub provider: AiProvider,
    pub host_override: Option<(String, u16)>,
    pub path_override: Option<String>,
}

/// What a target connects with (composed at load by `upstream_tls`): its URL (scheme `https` exactly when `tls` is set) and TLS.
#[derive(Debug, Clone)]
pub struct TargetEndpoint {
    pub url: url::Url,
    pub tls: Option<Arc<TlsPolicy>>,
}
