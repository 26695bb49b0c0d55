//! The directory's object model (docs/directory.md §2), as the STS reads it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone)]
pub struct Tenant {
    pub id: Uuid,
    pub display_name: String,
    pub domains: Vec<String>,
    pub allow_password_grant: bool,
    pub user_consent_allowed: bool,
    pub pairwise_secret: Vec<u8>,
    pub user_code_secret: Vec<u8>,
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant")
            .field("id", &self.id)
            .field("domains", &self.domains)
            .finish_non_exhaustive()
    }
}

impl Tenant {
    /// The name shown in error messages: the default domain, else the display name.
    pub fn name(&self) -> &str {
        self.domains
            .first()
            .map(String::as_str)
            .unwrap_or(&self.display_name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserKind {
    User,
    AgentUser,
}

impl UserKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UserKind::User => "user",
            UserKind::AgentUser => "agentUser",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(UserKind::User),
            "agentUser" => Some(UserKind::AgentUser),
            _ => None,
        }
    }
}

/// Directory roles that matter to token contents and the Graph API.
pub const ROLE_GLOBAL_ADMIN: &str = "Global Administrator";
pub const ROLE_AGENT_ID_ADMIN: &str = "Agent ID Administrator";
pub const ROLE_AGENT_ID_DEVELOPER: &str = "Agent ID Developer";
pub const KNOWN_ROLES: [&str; 3] = [
    ROLE_GLOBAL_ADMIN,
    ROLE_AGENT_ID_ADMIN,
    ROLE_AGENT_ID_DEVELOPER,
];

#[derive(Clone)]
pub struct User {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub kind: UserKind,
    pub upn: String,
    pub display_name: String,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub mail: Option<String>,
    pub account_enabled: bool,
    pub password_hash: Option<String>,
    pub identity_parent_id: Option<String>,
    pub roles: Vec<String>,
    pub sessions_revoked_at: Option<i64>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("upn", &self.upn)
            .field("kind", &self.kind)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

impl User {
    pub fn is_global_admin(&self) -> bool {
        self.roles.iter().any(|r| r == ROLE_GLOBAL_ADMIN)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PermissionScope {
    pub id: Uuid,
    pub value: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub is_enabled: bool,
    #[serde(default)]
    pub admin_consent_display_name: Option<String>,
    #[serde(default)]
    pub admin_consent_description: Option<String>,
    #[serde(default)]
    pub user_consent_display_name: Option<String>,
    #[serde(default)]
    pub user_consent_description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppRole {
    pub id: Uuid,
    pub value: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub allowed_member_types: Vec<String>,
    pub is_enabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum InheritableScopes {
    #[serde(rename = "allAllowed")]
    AllAllowed,
    #[serde(rename = "enumerated")]
    Enumerated { scopes: Vec<String> },
    #[serde(rename = "none")]
    NoScopes,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InheritablePermission {
    pub resource_app_id: String,
    pub inheritable_scopes: InheritableScopes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    Application,
    Blueprint,
}

impl AppKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AppKind::Application => "application",
            AppKind::Blueprint => "agentIdentityBlueprint",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "application" => Some(AppKind::Application),
            "agentIdentityBlueprint" => Some(AppKind::Blueprint),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Application {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub app_id: Uuid,
    pub kind: AppKind,
    pub display_name: String,
    pub identifier_uris: Vec<String>,
    pub scopes: Vec<PermissionScope>,
    pub app_roles: Vec<AppRole>,
    pub access_token_version: Option<i64>,
    pub is_public_client: bool,
    pub redirect_uris: Vec<String>,
    pub inheritable_permissions: Vec<InheritablePermission>,
    pub signing_alg: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpKind {
    ServicePrincipal,
    BlueprintPrincipal,
    AgentIdentity,
    BuiltIn,
}

impl SpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SpKind::ServicePrincipal => "servicePrincipal",
            SpKind::BlueprintPrincipal => "agentIdentityBlueprintPrincipal",
            SpKind::AgentIdentity => "agentIdentity",
            SpKind::BuiltIn => "builtIn",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "servicePrincipal" => Some(SpKind::ServicePrincipal),
            "agentIdentityBlueprintPrincipal" => Some(SpKind::BlueprintPrincipal),
            "agentIdentity" => Some(SpKind::AgentIdentity),
            "builtIn" => Some(SpKind::BuiltIn),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServicePrincipal {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub app_id: Uuid,
    pub kind: SpKind,
    pub display_name: String,
    pub account_enabled: bool,
    /// For agent identities: the parent blueprint's appId.
    pub blueprint_app_id: Option<Uuid>,
}

#[derive(Clone)]
pub struct PasswordCredential {
    pub key_id: Uuid,
    pub secret_sha256: String,
    pub start_at: i64,
    pub end_at: i64,
}

impl std::fmt::Debug for PasswordCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordCredential")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct KeyCredential {
    pub key_id: Uuid,
    pub cert_der: Vec<u8>,
    /// SHA-1 of the certificate DER, lowercase hex.
    pub thumbprint_sha1: String,
    /// SHA-256 of the certificate DER, lowercase hex.
    pub thumbprint_sha256: String,
    pub start_at: i64,
    pub end_at: i64,
}

#[derive(Debug, Clone)]
pub struct FederatedCredential {
    pub id: Uuid,
    pub name: String,
    pub issuer: String,
    pub subject: String,
    pub audience: String,
}

#[derive(Debug, Clone)]
pub struct TrustedIssuer {
    pub issuer: String,
    pub jwks: Option<agentid_claims::jwk::JwkSet>,
    pub allow_http: bool,
    /// PEM CA certificates the issuer's discovery and JWKS endpoints are served under.
    pub ca_bundle: Option<String>,
}

/// A resource a token can be issued for: a service principal with its application's API.
#[derive(Debug, Clone)]
pub struct Resource {
    pub sp_id: Uuid,
    pub app_id: Uuid,
    pub display_name: String,
    pub identifier_uris: Vec<String>,
    pub scopes: std::sync::Arc<Vec<PermissionScope>>,
    pub app_roles: std::sync::Arc<Vec<AppRole>>,
    /// 1 or 2.
    pub token_version: u8,
    pub signing_alg: String,
}

impl Resource {
    pub fn is_graph(&self) -> bool {
        self.app_id.to_string() == agentid_claims::wellknown::GRAPH_APP_ID
    }
    pub fn is_token_exchange(&self) -> bool {
        self.app_id.to_string() == agentid_claims::wellknown::TOKEN_EXCHANGE_APP_ID
    }
}

/// Normalises an identifier URI for matching: ASCII lowercase, one trailing `/` removed.
pub fn normalize_uri(uri: &str) -> String {
    let lower = uri.to_ascii_lowercase();
    lower.strip_suffix('/').map(str::to_string).unwrap_or(lower)
}
