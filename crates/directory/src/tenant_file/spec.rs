//! The serde shape of the tenant file. Unknown keys are errors that name their path.

use super::TenantFileError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantFile {
    #[serde(default)]
    pub tenant: TenantSpec,
    #[serde(default)]
    pub users: Vec<UserSpec>,
    #[serde(default)]
    pub applications: Vec<AppSpec>,
    #[serde(default)]
    pub blueprints: Vec<BlueprintSpec>,
    #[serde(default)]
    pub grants: Vec<GrantSpec>,
    #[serde(default)]
    pub app_role_assignments: Vec<RoleAssignmentSpec>,
    #[serde(default)]
    pub trusted_issuers: Vec<TrustedIssuerSpec>,
    /// How MCP clients sign in (docs/sts.md §16); absent leaves the settings as they are.
    pub mcp_clients: Option<McpClientsSpec>,
    /// Directory of the file, for resolving relative `file:` paths.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantSpec {
    pub id: Option<uuid::Uuid>,
    pub domain: Option<String>,
    pub display_name: Option<String>,
    pub allow_password_grant: Option<bool>,
    pub user_consent_allowed: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserSpec {
    pub name: String,
    pub upn: String,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub surname: Option<String>,
    pub mail: Option<String>,
    pub password: Option<String>,
    pub password_hash: Option<String>,
    pub id: Option<uuid::Uuid>,
    pub enabled: Option<bool>,
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSpec {
    pub display_name: Option<String>,
    pub value: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateSpec {
    pub file: Option<PathBuf>,
    pub pem: Option<String>,
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FicSpec {
    pub name: String,
    pub issuer: String,
    pub subject: String,
    #[serde(default)]
    pub audiences: Vec<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppSpec {
    pub name: String,
    pub display_name: Option<String>,
    pub app_id: Option<uuid::Uuid>,
    #[serde(default)]
    pub identifier_uris: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub app_roles: Vec<String>,
    pub access_token_version: Option<u8>,
    #[serde(default)]
    pub public_client: bool,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub secrets: Vec<SecretSpec>,
    #[serde(default)]
    pub certificates: Vec<CertificateSpec>,
    #[serde(default)]
    pub federated_credentials: Vec<FicSpec>,
    #[serde(default)]
    pub owners: Vec<String>,
    pub token_signing_algorithm: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentUserSpec {
    pub upn: String,
    pub display_name: Option<String>,
    pub id: Option<uuid::Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentSpec {
    pub name: String,
    pub display_name: Option<String>,
    pub id: Option<uuid::Uuid>,
    #[serde(default)]
    pub sponsors: Vec<String>,
    pub enabled: Option<bool>,
    pub agent_user: Option<AgentUserSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlueprintSpec {
    pub name: String,
    pub display_name: Option<String>,
    pub app_id: Option<uuid::Uuid>,
    #[serde(default)]
    pub sponsors: Vec<String>,
    #[serde(default)]
    pub owners: Vec<String>,
    #[serde(default)]
    pub identifier_uris: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub app_roles: Vec<String>,
    pub access_token_version: Option<u8>,
    #[serde(default)]
    pub inherit_delegated_permissions: bool,
    #[serde(default)]
    pub secrets: Vec<SecretSpec>,
    #[serde(default)]
    pub certificates: Vec<CertificateSpec>,
    #[serde(default)]
    pub federated_credentials: Vec<FicSpec>,
    pub enabled: Option<bool>,
    #[serde(default)]
    pub agents: Vec<AgentSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrantSpec {
    pub client: String,
    pub resource: String,
    pub scopes: Vec<String>,
    #[serde(default = "all_principals")]
    pub consent_type: String,
    pub principal: Option<String>,
}

fn all_principals() -> String {
    "AllPrincipals".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleAssignmentSpec {
    pub principal: String,
    pub resource: String,
    pub role: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwksSource {
    pub file: Option<PathBuf>,
    pub inline: Option<agentid_claims::jwk::JwkSet>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrustedIssuerSpec {
    pub issuer: String,
    pub jwks: Option<JwksSource>,
    #[serde(default)]
    pub discovery: bool,
    #[serde(default)]
    pub allow_http: bool,
    pub description: Option<String>,
    /// PEM CA certificates the issuer's endpoints are served under (for `discovery`).
    pub ca_bundle: Option<String>,
    /// A file holding them (e.g. a service account's `ca.crt`), relative to the tenant file.
    pub ca_file: Option<PathBuf>,
}

/// `mcpClients`: dynamic client registration, client ID metadata documents, and the gateway
/// route resources registered for applications (docs/tenant-file.md §3).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct McpClientsSpec {
    pub registration: Option<RegistrationSpec>,
    pub client_id_metadata_documents: Option<MetadataDocumentsSpec>,
    #[serde(default)]
    pub protected_resources: Vec<ProtectedResourceSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RegistrationModeSpec {
    Off,
    Open,
    Token,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistrationSpec {
    pub mode: RegistrationModeSpec,
    /// Required for `token`; stored as its SHA-256 only.
    pub initial_access_token: Option<String>,
}

impl std::fmt::Debug for RegistrationSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrationSpec")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MetadataDocumentModeSpec {
    Off,
    #[default]
    Open,
    AllowList,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetadataDocumentsSpec {
    #[serde(default)]
    pub mode: MetadataDocumentModeSpec,
    #[serde(default)]
    pub allow_hosts: Vec<String>,
    #[serde(default)]
    pub deny_hosts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProtectedResourceSpec {
    /// The gateway route's resource URL (what MCP clients send as `resource`).
    pub resource: String,
    /// The handle of an application or blueprint in this file whose tokens the route accepts.
    pub application: String,
}

impl TenantFile {
    /// Parses YAML; errors name the path of the offending key (`blueprints[0].agents[1].foo`).
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self, TenantFileError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let mut file: TenantFile = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let mut inner = e.into_inner().to_string();
            // serde_yaml prefixes the path of the enclosing value; ours is more precise.
            if let Some((prefix, rest)) = inner.split_once(": ")
                && path.starts_with(prefix)
            {
                inner = rest.to_string();
            }
            TenantFileError::invalid(
                // An error in the document itself (or under an empty key) has no path of its own.
                if path == "." || path.trim_matches('.').is_empty() {
                    "(top level)".into()
                } else {
                    path
                },
                inner,
            )
        })?;
        file.base_dir = base_dir.to_path_buf();
        Ok(file)
    }

    pub fn load(path: &Path) -> Result<Self, TenantFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TenantFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, path.parent().unwrap_or(Path::new(".")))
    }

    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_its_path() {
        let y = "blueprints:\n  - name: bp\n    agents:\n      - name: a\n      - name: b\n        foo: 1\n";
        let e = TenantFile::parse(y, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("blueprints[0].agents[1]"), "{e}");
        assert!(e.contains("unknown field `foo`"), "{e}");
        // Found by the property test: an empty key at the top level.
        match TenantFile::parse("{\"\"𐺀", Path::new(".")) {
            Err(TenantFileError::Invalid { path, .. }) => assert_eq!(path, "(top level)"),
            other => panic!("{other:?}"),
        }
    }
}
