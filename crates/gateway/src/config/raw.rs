//! The config file as written: serde structs for agentid's subset of AgentGateway's standalone
//! format plus the `agentid:` extension block. Strict everywhere (`deny_unknown_fields`); one-of
//! shapes are plain structs of options here and are checked, with their JSON path, by
//! `validate`. Values that need parsing (durations, CEL, regexes, addresses) stay strings here.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct File {
    #[serde(default)]
    pub config: Option<Config>,
    #[serde(default)]
    pub binds: Vec<Bind>,
    #[serde(default)]
    pub frontend_policies: Option<FrontendPolicies>,
    #[serde(default)]
    pub agentid: Option<Agentid>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    pub admin_addr: Option<String>,
    pub stats_addr: Option<String>,
    pub readiness_addr: Option<String>,
    pub worker_threads: Option<Value>,
    pub connection_termination_deadline: Option<String>,
    pub logging: Option<Logging>,
    pub metrics: Option<Metrics>,
    pub tracing: Option<Tracing>,
    pub backend: Option<BackendConfig>,
    pub mcp: Option<McpConfig>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Logging {
    pub level: Option<Value>,
    pub format: Option<String>,
    pub filter: Option<String>,
    pub fields: Option<Fields>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Fields {
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metrics {
    pub fields: Option<MetricFields>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MetricFields {
    #[serde(default)]
    pub add: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Tracing {
    pub otlp_endpoint: Option<String>,
    pub otlp_protocol: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub path: Option<String>,
    pub random_sampling: Option<Value>,
    pub client_sampling: Option<Value>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackendConfig {
    pub connect_timeout: Option<String>,
    pub pool_idle_timeout: Option<String>,
    pub pool_max_size: Option<usize>,
    pub keepalives: Option<Keepalives>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Keepalives {
    pub enabled: Option<bool>,
    pub time: Option<String>,
    pub interval: Option<String>,
    pub retries: Option<u32>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct McpConfig {
    pub session_ttl: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FrontendPolicies {
    pub access_log: Option<AccessLog>,
    pub logging: Option<AccessLog>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AccessLog {
    pub filter: Option<String>,
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Bind {
    pub port: u16,
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Listener {
    pub name: Option<String>,
    pub hostname: Option<String>,
    pub protocol: Option<String>,
    pub tls: Option<ListenerTls>,
    #[serde(default)]
    pub routes: Vec<Route>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListenerTls {
    pub cert: Option<String>,
    pub key: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Route {
    pub name: Option<String>,
    #[serde(default)]
    pub hostnames: Vec<String>,
    #[serde(default)]
    pub matches: Vec<Match>,
    pub policies: Option<RoutePolicies>,
    #[serde(default)]
    pub backends: Vec<RouteBackend>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Match {
    pub path: Option<PathMatch>,
    pub method: Option<String>,
    #[serde(default)]
    pub headers: Vec<ValueMatch>,
    #[serde(default)]
    pub query: Vec<ValueMatch>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PathMatch {
    pub exact: Option<String>,
    pub path_prefix: Option<String>,
    pub regex: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ValueMatch {
    pub name: String,
    pub value: StringMatch,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StringMatch {
    pub exact: Option<String>,
    pub regex: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RoutePolicies {
    pub jwt_auth: Option<JwtAuth>,
    pub mcp_authentication: Option<McpAuthentication>,
    pub authorization: Option<Rules>,
    pub mcp_authorization: Option<Rules>,
    pub cors: Option<Cors>,
    pub request_header_modifier: Option<HeaderModifier>,
    pub response_header_modifier: Option<HeaderModifier>,
    pub url_rewrite: Option<UrlRewrite>,
    #[serde(rename = "backendTLS")]
    pub backend_tls: Option<BackendTls>,
    pub backend_auth: Option<BackendAuth>,
    pub timeout: Option<Timeout>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtAuth {
    pub mode: Option<String>,
    pub issuer: Option<String>,
    pub audiences: Option<Vec<String>>,
    pub jwks: Option<Value>,
    pub jwt_validation_options: Option<JwtValidationOptions>,
    pub providers: Option<Vec<JwtProvider>>,
    pub location: Option<Location>,
}

/// AgentGateway's `mcpAuthentication` (docs/gateway.md §18): `jwtAuth` plus what MCP clients
/// discover from the 401. `clientId`/`clientSecret`/`authorizationLocation` are AgentGateway's
/// and refused as unsupported (agentid's STS needs no token-endpoint proxy).
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct McpAuthentication {
    pub issuer: Option<String>,
    pub audiences: Option<Vec<String>>,
    pub jwks: Option<Value>,
    pub mode: Option<String>,
    pub provider: Option<Value>,
    pub resource_metadata: Option<serde_json::Map<String, Value>>,
    pub jwt_validation_options: Option<JwtValidationOptions>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtProvider {
    pub issuer: Option<String>,
    pub audiences: Option<Vec<String>>,
    pub jwks: Option<Value>,
    pub jwt_validation_options: Option<JwtValidationOptions>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtValidationOptions {
    pub required_claims: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Location {
    pub header: Option<HeaderLocation>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderLocation {
    pub name: String,
    pub prefix: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rules {
    /// Each rule is a string (an allow rule) or a one-key map; decoded by `validate`.
    #[serde(default)]
    pub rules: Vec<Value>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cors {
    #[serde(default)]
    pub allow_origins: Vec<String>,
    #[serde(default)]
    pub allow_methods: Vec<String>,
    #[serde(default)]
    pub allow_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    pub allow_credentials: Option<bool>,
    pub max_age: Option<Value>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderModifier {
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UrlRewrite {
    pub authority: Option<Value>,
    pub path: Option<PathRewrite>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PathRewrite {
    pub full: Option<String>,
    pub prefix: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackendTls {
    pub root: Option<String>,
    pub hostname: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub insecure: Option<bool>,
    pub insecure_host: Option<bool>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackendAuth {
    pub passthrough: Option<Passthrough>,
    pub key: Option<Value>,
    pub on_behalf_of: Option<OnBehalfOf>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Passthrough {
    pub location: Option<Location>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeyValue {
    pub value: Value,
    pub location: Option<Location>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileRef {
    pub file: String,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OnBehalfOf {
    pub sidecar: Option<OboSidecar>,
    pub sts: Option<OboSts>,
    pub location: Option<Location>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OboSidecar {
    pub url: String,
    pub api: String,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OboSts {
    pub token_endpoint: String,
    pub client_id: String,
    pub client_secret: Option<Value>,
    pub client_assertion_file: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub root: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Timeout {
    pub request_timeout: Option<String>,
    pub backend_request_timeout: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteBackend {
    pub weight: Option<u32>,
    pub policies: Option<BackendPolicies>,
    pub host: Option<String>,
    pub mcp: Option<McpBackend>,
    pub ai: Option<AiBackend>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackendPolicies {
    pub request_header_modifier: Option<HeaderModifier>,
    #[serde(rename = "backendTLS")]
    pub backend_tls: Option<BackendTls>,
    pub backend_auth: Option<BackendAuth>,
    pub mcp_authorization: Option<Rules>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TargetPolicies {
    pub request_header_modifier: Option<HeaderModifier>,
    #[serde(rename = "backendTLS")]
    pub backend_tls: Option<BackendTls>,
    pub backend_auth: Option<BackendAuth>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct McpBackend {
    #[serde(default)]
    pub targets: Vec<McpTarget>,
    pub stateful_mode: Option<String>,
    pub prefix_mode: Option<String>,
    pub failure_mode: Option<String>,
    pub dns_rebinding_protection: Option<bool>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct McpTarget {
    pub name: String,
    pub policies: Option<TargetPolicies>,
    pub mcp: Option<TargetHost>,
    pub sse: Option<TargetHost>,
    pub stdio: Option<Stdio>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TargetHost {
    pub host: String,
    pub port: Option<u16>,
    pub path: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct Stdio {
    pub cmd: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub clear_env: bool,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AiBackend {
    pub name: Option<String>,
    pub provider: Option<AiProvider>,
    pub host_override: Option<String>,
    pub path_override: Option<String>,
    pub policies: Option<TargetPolicies>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AiProvider {
    #[serde(rename = "openAI")]
    pub open_ai: Option<OpenAiProvider>,
    pub azure: Option<AzureProvider>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OpenAiProvider {
    pub model: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AzureProvider {
    pub resource_name: String,
    pub resource_type: Option<String>,
    pub api_version: Option<String>,
    pub model: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Agentid {
    pub bind_address: Option<String>,
    pub jwt: Option<AgentidJwt>,
    pub audit: Option<AgentidAudit>,
    pub limits: Option<AgentidLimits>,
    pub timeouts: Option<AgentidTimeouts>,
    pub llm: Option<AgentidLlm>,
    pub metrics: Option<AgentidMetrics>,
    pub revocation: Option<AgentidRevocation>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentidJwt {
    pub clock_skew: Option<String>,
    pub jwks_refresh_interval: Option<String>,
    pub jwks_min_refresh_interval: Option<String>,
    pub jwks_fetch_timeout: Option<String>,
    pub verified_token_cache_size: Option<u64>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentidAudit {
    pub stdout: Option<bool>,
    pub retain: Option<usize>,
    pub queue_size: Option<usize>,
    pub file: Option<AuditFile>,
    pub ship: Option<AuditShip>,
}

/// `agentid.audit.ship`: the STS that stores the events (docs/audit.md §6.1).
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuditShip {
    pub token_endpoint: String,
    pub client_id: String,
    pub client_secret: Value,
    pub scope: Option<String>,
    pub url: String,
    pub root: Option<String>,
    pub spool_dir: String,
    pub max_spool_bytes: Option<u64>,
    pub batch_size: Option<usize>,
    pub flush_interval: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuditFile {
    pub path: String,
    pub max_size_bytes: Option<u64>,
    pub max_files: Option<u32>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentidLimits {
    pub mcp_request_body_bytes: Option<usize>,
    pub llm_request_body_bytes: Option<usize>,
    pub response_tee_bytes: Option<usize>,
    pub max_request_header_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_mcp_sessions: Option<usize>,
    pub max_mcp_sessions_per_principal: Option<usize>,
    pub max_stdio_processes: Option<usize>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentidTimeouts {
    pub header_read: Option<String>,
    pub downstream_idle: Option<String>,
    pub mcp_initialize: Option<String>,
    pub mcp_request: Option<String>,
    pub mcp_target_retry: Option<String>,
    pub llm_response_headers: Option<String>,
    pub http_response_headers: Option<String>,
    pub token_exchange: Option<String>,
    pub request_body: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentidLlm {
    pub inject_stream_usage: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentidMetrics {
    pub user_label: Option<String>,
    pub max_series_per_family: Option<usize>,
}

/// `agentid.revocation` (docs/gateway.md §19).
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentidRevocation {
    pub issuers: Option<Vec<String>>,
    pub poll_interval: Option<String>,
    pub long_poll_wait: Option<String>,
    pub grace_period: Option<String>,
    pub failure_mode: Option<String>,
    #[serde(default)]
    pub routes: Vec<AgentidRevocationRoute>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentidRevocationRoute {
    pub route: String,
    pub failure_mode: Option<String>,
    pub grace_period: Option<String>,
}
