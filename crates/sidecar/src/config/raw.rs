//! The configuration as written: upstream's section and key names, every value optional.
//! Sections the sidecar owns (`Sidecar`, `DownstreamApis:<name>`) refuse unknown keys, because a
//! typo there silently changes security or routing; `AzureAd` tolerates the many keys of
//! Microsoft.Identity.Web that do not apply here (they are logged).

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, de::IgnoredAny};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawRoot {
    #[serde(rename = "AzureAd")]
    pub azure_ad: RawAzureAd,
    #[serde(rename = "DownstreamApis")]
    pub downstream_apis: BTreeMap<String, RawApi>,
    #[serde(rename = "Sidecar")]
    pub sidecar: RawSidecar,
    #[serde(rename = "Logging")]
    pub logging: RawLogging,
    #[serde(rename = "Kestrel")]
    pub kestrel: RawKestrel,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RawAzureAd {
    pub instance: Option<String>,
    pub authority: Option<String>,
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub audience: Option<String>,
    pub audiences: Vec<String>,
    pub scopes: Option<String>,
    pub valid_issuers: Vec<String>,
    #[serde(rename = "SendX5C")]
    pub send_x5c: Option<bool>,
    pub client_credentials: Vec<RawCredential>,
    pub token_decryption_credentials: Option<IgnoredAny>,
}

/// Keys of `AzureAd` the sidecar reads; the others are ignored with a debug log.
pub const AZURE_AD_KEYS: &[&str] = &[
    "Instance",
    "Authority",
    "TenantId",
    "ClientId",
    "Audience",
    "Audiences",
    "Scopes",
    "ValidIssuers",
    "SendX5C",
    "ClientCredentials",
    "TokenDecryptionCredentials",
];

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RawCredential {
    pub source_type: Option<String>,
    pub client_secret: Option<String>,
    pub signed_assertion_file_disk_path: Option<String>,
    pub signed_assertion_file_path: Option<String>,
    pub certificate_disk_path: Option<String>,
    pub certificate_key_path: Option<String>,
    pub certificate_password: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase", deny_unknown_fields)]
pub struct RawApi {
    pub base_url: Option<String>,
    pub relative_path: Option<String>,
    pub http_method: Option<String>,
    pub scopes: Option<ScopeList>,
    pub request_app_token: Option<bool>,
    pub accept_header: Option<String>,
    pub content_type: Option<String>,
    pub extra_header_parameters: BTreeMap<String, String>,
    pub extra_query_parameters: BTreeMap<String, String>,
    pub acquire_token_options: RawAcquireTokenOptions,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RawAcquireTokenOptions {
    pub tenant: Option<String>,
    pub claims: Option<String>,
    pub correlation_id: Option<String>,
    pub force_refresh: Option<bool>,
    pub fmi_path: Option<String>,
    pub pop_public_key: Option<String>,
    pub long_running_web_api_session_key: Option<String>,
    pub managed_identity: RawManagedIdentity,
}

/// Keys of `AcquireTokenOptions` the sidecar reads; others (`AuthenticationScheme`, …) warn.
pub const ACQUIRE_TOKEN_OPTIONS_KEYS: &[&str] = &[
    "Tenant",
    "Claims",
    "CorrelationId",
    "ForceRefresh",
    "FmiPath",
    "PopPublicKey",
    "LongRunningWebApiSessionKey",
    "ManagedIdentity",
];

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RawManagedIdentity {
    pub user_assigned_client_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase", deny_unknown_fields)]
pub struct RawSidecar {
    pub listen_url: Option<String>,
    pub health_listen_url: Option<String>,
    pub allow_remote_callers: Option<bool>,
    pub allowed_hosts: Vec<String>,
    pub allow_overrides: RawAllowOverrides,
    pub allowed_agent_identities: Vec<String>,
    pub allow_outbound_redirects: Option<bool>,
    pub downstream_timeout_seconds: Option<u64>,
    pub downstream_response_headers: Vec<String>,
    pub max_request_body_bytes: Option<u64>,
    pub max_response_body_bytes: Option<u64>,
    pub authority_timeout_seconds: Option<u64>,
    pub drain_timeout_seconds: Option<u64>,
    pub token_cache: RawTokenCache,
    pub revocation: RawRevocation,
    pub extra_ca_bundle_path: Option<String>,
    pub allow_insecure_authority: Option<bool>,
    pub enable_open_api: Option<bool>,
    pub log_format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase", deny_unknown_fields)]
pub struct RawAllowOverrides {
    pub get_authorization_header: Option<bool>,
    pub get_authorization_header_unauthenticated: Option<bool>,
    pub call_downstream_api: Option<bool>,
    pub call_downstream_api_unauthenticated: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase", deny_unknown_fields)]
pub struct RawTokenCache {
    pub max_entries: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RawLogging {
    pub log_level: RawLogLevel,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RawLogLevel {
    pub default: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RawKestrel {
    pub endpoints: RawKestrelEndpoints,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RawKestrelEndpoints {
    pub http: RawKestrelEndpoint,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RawKestrelEndpoint {
    pub url: Option<String>,
}

/// `Scopes`: an indexed list, or one string split on whitespace (both forms are in use).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ScopeList(pub Vec<String>);

impl<'de> Deserialize<'de> for ScopeList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ScopeList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a space-separated string or a list of scopes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ScopeList, E> {
                Ok(ScopeList(
                    v.split_whitespace().map(str::to_string).collect(),
                ))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ScopeList, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.extend(s.split_whitespace().map(str::to_string));
                }
                Ok(ScopeList(out))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, _map: A) -> Result<ScopeList, A::Error> {
                Err(de::Error::custom(
                    "expected a list (Scopes__0, Scopes__1, …) or a space-separated string",
                ))
            }
        }
        d.deserialize_any(V)
    }
}

/// `Sidecar:Revocation` (docs/sidecar.md §18).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase", deny_unknown_fields)]
pub struct RawRevocation {
    pub enabled: Option<bool>,
    pub poll_interval_seconds: Option<u64>,
    pub long_poll_wait_seconds: Option<u64>,
    pub grace_period_seconds: Option<u64>,
    pub failure_mode: Option<String>,
}
