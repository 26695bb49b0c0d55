//! Configuration: read once at startup from the same keys as Microsoft's sidecar
//! (`AzureAd__*`, `DownstreamApis__*`, plus agentid's `Sidecar__*`), validated into the typed,
//! immutable [`Config`] that every request reads through an `Arc`. Nothing here changes after
//! startup (docs/sidecar.md §5.1, §12).

mod build;
mod de;
pub mod listen;
mod raw;
mod tree;

pub use build::load;
pub use de::parse_bool;
pub use listen::ListenAddr;

use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    ReadFile { path: String, reason: String },
    #[error("config file {path} is not valid JSON: {reason}")]
    ParseFile { path: String, reason: String },
    #[error("configuration key {key}: {message}")]
    Invalid { key: String, message: String },
    #[error("configuration key {key} is required")]
    Missing { key: String },
    #[error("configuration key {key}: unsupported credential SourceType '{source_type}'")]
    UnsupportedSourceType { key: String, source_type: String },
    #[error(
        "configuration key {key}: encrypted certificate keys are not supported (CertificatePassword must be empty)"
    )]
    CertificatePassword { key: String },
    #[error(
        "configuration key AzureAd__TokenDecryptionCredentials: encrypted (JWE) inbound tokens are not supported"
    )]
    TokenDecryption,
    #[error(
        "no client credential: set AzureAd__ClientCredentials__0__SourceType (ClientSecret, SignedAssertionFilePath or Path) or AZURE_FEDERATED_TOKEN_FILE"
    )]
    NoCredential,
    #[error(
        "configuration keys DownstreamApis__{first} and DownstreamApis__{second} differ only in case"
    )]
    ApiNameCollision { first: String, second: String },
}

/// A secret value: never printed, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// One blueprint credential (docs/sidecar.md §9.3), in index order.
#[derive(Debug, Clone, PartialEq)]
pub enum CredentialConfig {
    ClientSecret {
        index: usize,
        secret: Secret,
    },
    /// A federated (for example Kubernetes service-account) token read from a file.
    AssertionFile {
        index: usize,
        path: PathBuf,
    },
    /// private_key_jwt with a certificate and key from PEM files.
    Certificate {
        index: usize,
        cert_path: PathBuf,
        key_path: Option<PathBuf>,
    },
}

impl CredentialConfig {
    pub fn index(&self) -> usize {
        match self {
            CredentialConfig::ClientSecret { index, .. }
            | CredentialConfig::AssertionFile { index, .. }
            | CredentialConfig::Certificate { index, .. } => *index,
        }
    }
}

/// `AcquireTokenOptions` of a configured API or of an override (docs/sidecar.md §3.2).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AcquireTokenOptions {
    pub tenant: Option<String>,
    pub claims: Option<String>,
    pub correlation_id: Option<Uuid>,
    pub force_refresh: bool,
    pub fmi_path: Option<String>,
    pub pop_public_key: Option<String>,
    pub long_running_session_key: Option<String>,
    pub managed_identity_client_id: Option<String>,
}

/// One `DownstreamApis:<name>` entry (docs/sidecar.md §4). An unconfigured name resolves to
/// `ApiOptions::default()`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiOptions {
    pub base_url: Option<url::Url>,
    pub relative_path: String,
    pub http_method: String,
    pub scopes: Vec<String>,
    pub request_app_token: bool,
    pub accept_header: String,
    pub content_type: String,
    pub extra_headers: Vec<(String, String)>,
    pub extra_query: Vec<(String, String)>,
    pub acquire: AcquireTokenOptions,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            base_url: None,
            relative_path: String::new(),
            http_method: "GET".into(),
            scopes: vec![],
            request_app_token: false,
            accept_header: "application/json".into(),
            content_type: "application/json".into(),
            extra_headers: vec![],
            extra_query: vec![],
            acquire: AcquireTokenOptions::default(),
        }
    }
}

/// The configured APIs, looked up case-insensitively.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Apis {
    entries: Vec<(String, ApiOptions)>,
}

impl Apis {
    pub fn new(entries: Vec<(String, ApiOptions)>) -> Self {
        Self { entries }
    }

    /// The configured name (as spelled in the configuration) and its options.
    pub fn get(&self, name: &str) -> Option<(&str, &ApiOptions)> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(n, o)| (n.as_str(), o))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &ApiOptions)> {
        self.entries.iter().map(|(n, o)| (n.as_str(), o))
    }
}

/// `Sidecar__AllowOverrides__*` (docs/sidecar.md §2, §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowOverrides {
    pub get_authorization_header: bool,
    pub get_authorization_header_unauthenticated: bool,
    pub call_downstream_api: bool,
    pub call_downstream_api_unauthenticated: bool,
}

impl Default for AllowOverrides {
    fn default() -> Self {
        Self {
            get_authorization_header: true,
            get_authorization_header_unauthenticated: false,
            call_downstream_api: true,
            call_downstream_api_unauthenticated: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// The `Sidecar` section and process settings (docs/sidecar.md §12.5).
#[derive(Debug, Clone, PartialEq)]
pub struct SidecarSettings {
    pub listen: Vec<ListenAddr>,
    pub health_listen: Option<Vec<ListenAddr>>,
    pub allow_remote_callers: bool,
    /// Host names the sidecar answers to besides `localhost`, loopback addresses and the
    /// address a connection arrived on (`Sidecar__AllowedHosts__N`; lower case, no port; a
    /// leading `*.` matches subdomains).
    pub allowed_hosts: Vec<String>,
    pub allow_overrides: AllowOverrides,
    /// Lower-case GUIDs; `None` when no allow-list is configured.
    pub allowed_agents: Option<Vec<String>>,
    pub allow_outbound_redirects: bool,
    pub downstream_timeout: Duration,
    pub downstream_response_headers: Vec<String>,
    pub max_request_body_bytes: u64,
    pub max_response_body_bytes: u64,
    pub authority_timeout: Duration,
    /// How long SIGTERM waits for in-flight requests (docs/architecture.md §7).
    pub drain_timeout: Duration,
    pub cache_max_entries: usize,
    /// `Sidecar:Revocation`; `None` when disabled (docs/sidecar.md §18).
    pub revocation: Option<RevocationSettings>,
    pub extra_ca_bundle: Option<PathBuf>,
    /// PEM certificates to trust in addition to the built-in roots (bundle and `SSL_CERT_FILE`).
    pub extra_ca_pem: Vec<Vec<u8>>,
    pub allow_insecure_authority: bool,
    pub enable_openapi: bool,
    pub log_format: LogFormat,
    /// A `tracing` filter directive (from `Logging__LogLevel__Default` or `RUST_LOG`).
    pub log_filter: String,
}

/// The revocation feed of the authority's tenant (docs/sidecar.md §18).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationSettings {
    pub poll: agentid_claims::revocation::PollSettings,
    /// How long the feed may go unrefreshed before `fail_open` decides.
    pub grace: Duration,
    /// After the grace period: `true` keeps handing out tokens, `false` refuses (503).
    pub fail_open: bool,
}

/// Required inbound scopes (`AzureAd__Scopes`, any-of).
#[derive(Debug, Clone, PartialEq)]
pub struct RequiredScopes {
    pub raw: String,
    pub any_of: Vec<String>,
}

/// The whole, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Authority base with a trailing `/` (`https://login.microsoftonline.com/`).
    pub instance: String,
    pub tenant_id: String,
    pub client_id: String,
    pub audiences: Vec<String>,
    pub required_scopes: Option<RequiredScopes>,
    pub valid_issuers: Vec<String>,
    pub send_x5c: bool,
    pub credentials: Vec<CredentialConfig>,
    pub apis: Apis,
    pub sidecar: SidecarSettings,
    /// Messages to log once logging is set up: (event, message).
    pub warnings: Vec<(String, String)>,
    /// Keys that were read but have no effect here (logged at debug).
    pub ignored_keys: Vec<String>,
}

/// Where configuration comes from. [`ConfigSources::from_process`] reads the real process;
/// tests pass their own variables so that parallel tests never share an environment.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    pub env: Vec<(String, String)>,
    /// `--config`; else `AGENTID_SIDECAR_CONFIG`; else `./appsettings.json` when
    /// `search_default_file` is set and it exists.
    pub file: Option<PathBuf>,
    pub search_default_file: bool,
    pub listen: Option<String>,
    pub health_listen: Option<String>,
}

impl ConfigSources {
    pub fn from_process(
        file: Option<PathBuf>,
        listen: Option<String>,
        health_listen: Option<String>,
    ) -> Self {
        Self {
            env: std::env::vars().collect(),
            file,
            search_default_file: true,
            listen,
            health_listen,
        }
    }

    /// Only the given variables (for tests and embedding).
    pub fn from_vars<K: AsRef<str>, V: AsRef<str>>(vars: &[(K, V)]) -> Self {
        Self {
            env: vars
                .iter()
                .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string()))
                .collect(),
            ..Self::default()
        }
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.trim().is_empty())
    }
}

impl Config {
    /// The effective configuration as JSON with secrets shown as `***` (`--check-config`).
    pub fn describe(&self) -> serde_json::Value {
        use serde_json::json;
        let creds: Vec<_> = self
            .credentials
            .iter()
            .map(|c| match c {
                CredentialConfig::ClientSecret { index, .. } => {
                    json!({"index": index, "SourceType": "ClientSecret", "ClientSecret": "***"})
                }
                CredentialConfig::AssertionFile { index, path } => {
                    json!({"index": index, "SourceType": "SignedAssertionFilePath", "SignedAssertionFileDiskPath": path})
                }
                CredentialConfig::Certificate {
                    index,
                    cert_path,
                    key_path,
                } => {
                    json!({"index": index, "SourceType": "Path", "CertificateDiskPath": cert_path, "CertificateKeyPath": key_path})
                }
            })
            .collect();
        let apis: serde_json::Map<String, serde_json::Value> = self
            .apis
            .iter()
            .map(|(n, a)| {
                (
                    n.to_string(),
                    json!({
                        "BaseUrl": a.base_url.as_ref().map(|u| u.to_string()),
                        "RelativePath": a.relative_path,
                        "HttpMethod": a.http_method,
                        "Scopes": a.scopes,
                        "RequestAppToken": a.request_app_token,
                        "AcceptHeader": a.accept_header,
                        "ContentType": a.content_type,
                        "ExtraHeaderParameters": a.extra_headers.iter().map(|(k, _)| (k.clone(), json!("***"))).collect::<serde_json::Map<_, _>>(),
                        "ExtraQueryParameters": a.extra_query.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                        "AcquireTokenOptions": {
                            "Tenant": a.acquire.tenant, "FmiPath": a.acquire.fmi_path,
                            "ForceRefresh": a.acquire.force_refresh,
                            "Claims": a.acquire.claims.as_ref().map(|_| "***"),
                        },
                    }),
                )
            })
            .collect();
        let s = &self.sidecar;
        json!({
            "AzureAd": {
                "Instance": self.instance, "TenantId": self.tenant_id, "ClientId": self.client_id,
                "Audiences": self.audiences, "Scopes": self.required_scopes.as_ref().map(|r| &r.raw),
                "ValidIssuers": self.valid_issuers, "SendX5C": self.send_x5c,
                "ClientCredentials": creds,
            },
            "DownstreamApis": apis,
            "Sidecar": {
                "ListenUrl": s.listen.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
                "HealthListenUrl": s.health_listen.as_ref().map(|h| h.iter().map(|l| l.to_string()).collect::<Vec<_>>()),
                "AllowRemoteCallers": s.allow_remote_callers,
                "AllowOverrides": {
                    "GetAuthorizationHeader": s.allow_overrides.get_authorization_header,
                    "GetAuthorizationHeaderUnauthenticated": s.allow_overrides.get_authorization_header_unauthenticated,
                    "CallDownstreamApi": s.allow_overrides.call_downstream_api,
                    "CallDownstreamApiUnauthenticated": s.allow_overrides.call_downstream_api_unauthenticated,
                },
                "AllowedAgentIdentities": s.allowed_agents,
                "AllowOutboundRedirects": s.allow_outbound_redirects,
                "DownstreamTimeoutSeconds": s.downstream_timeout.as_secs(),
                "DownstreamResponseHeaders": s.downstream_response_headers,
                "MaxRequestBodyBytes": s.max_request_body_bytes,
                "MaxResponseBodyBytes": s.max_response_body_bytes,
                "AuthorityTimeoutSeconds": s.authority_timeout.as_secs(),
                "DrainTimeoutSeconds": s.drain_timeout.as_secs(),
                "TokenCache": {"MaxEntries": s.cache_max_entries},
                "Revocation": s.revocation.as_ref().map(|r| serde_json::json!({
                    "Enabled": true,
                    "PollIntervalSeconds": r.poll.interval.as_secs(),
                    "LongPollWaitSeconds": r.poll.wait.as_secs(),
                    "GracePeriodSeconds": r.grace.as_secs(),
                    "FailureMode": if r.fail_open { "open" } else { "closed" },
                })),
                "ExtraCaBundlePath": s.extra_ca_bundle,
                "AllowInsecureAuthority": s.allow_insecure_authority,
                "EnableOpenApi": s.enable_openapi,
                "LogFormat": match s.log_format { LogFormat::Json => "json", LogFormat::Text => "text" },
                "LogFilter": s.log_filter,
            },
        })
    }
}
