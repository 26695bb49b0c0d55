//! Principals present in every tenant with Microsoft's real ids (docs/directory.md §3).

use crate::model::{AppRole, PermissionScope, Resource};
use agentid_claims::wellknown::*;
use std::sync::Arc;
use uuid::Uuid;

type Permissions = (Arc<Vec<PermissionScope>>, Arc<Vec<AppRole>>);

#[derive(Debug)]
pub struct BuiltIn {
    pub app_id: &'static str,
    pub display_name: &'static str,
    pub identifier_uris: &'static [&'static str],
    pub token_version: u8,
    pub user_scopes: &'static [&'static str],
    pub admin_scopes: &'static [&'static str],
    pub app_roles: &'static [&'static str],
    pub public_client: bool,
    /// Name usable in tenant files (`resource: graph`).
    pub handle: &'static str,
}

const GRAPH_ADMIN_SCOPES: &[&str] = &[
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.AccessAsUser.All",
    "Application.Read.All",
    "Application.ReadWrite.All",
    "AppRoleAssignment.ReadWrite.All",
    "DelegatedPermissionGrant.Read.All",
    "DelegatedPermissionGrant.ReadWrite.All",
    "AgentIdentityBlueprint.Create",
    "AgentIdentityBlueprint.Read.All",
    "AgentIdentityBlueprint.ReadWrite.All",
    "AgentIdentityBlueprint.AddRemoveCreds.All",
    "AgentIdentityBlueprint.UpdateAuthProperties.All",
    "AgentIdentityBlueprint.DeleteRestore.All",
    "AgentIdentityBlueprintPrincipal.Create",
    "AgentIdUser.ReadWrite.All",
    "Policy.ReadWrite.ApplicationConfiguration",
    "AuditLog.Read.All",
];

const GRAPH_ROLES: &[&str] = &[
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Application.Read.All",
    "Application.ReadWrite.All",
    "Application.ReadWrite.OwnedBy",
    "AppRoleAssignment.ReadWrite.All",
    "DelegatedPermissionGrant.ReadWrite.All",
    "AgentIdentityBlueprint.Create",
    "AgentIdentityBlueprint.Read.All",
    "AgentIdentityBlueprint.ReadWrite.All",
    "AgentIdentityBlueprint.AddRemoveCreds.All",
    "AgentIdentityBlueprint.UpdateAuthProperties.All",
    "AgentIdentityBlueprint.DeleteRestore.All",
    "AgentIdentityBlueprintPrincipal.Create",
    "AgentIdentity.CreateAsManager",
    "AgentIdUser.ReadWrite.All",
    "AgentIdUser.ReadWrite.IdentityParentedBy",
    "Policy.ReadWrite.ApplicationConfiguration",
    "AuditLog.Read.All",
    // agentid's: a gateway shipping its decision events (docs/audit.md §4.1).
    "AuditEvents.Write",
];

pub const BUILT_INS: &[BuiltIn] = &[
    BuiltIn {
        app_id: GRAPH_APP_ID,
        display_name: "Microsoft Graph",
        identifier_uris: &[
            "https://graph.microsoft.com",
            "https://graph.microsoft.com/",
        ],
        token_version: 1,
        user_scopes: &[
            "openid",
            "profile",
            "email",
            "offline_access",
            "User.Read",
            "User.ReadWrite",
            "User.ReadBasic.All",
        ],
        admin_scopes: GRAPH_ADMIN_SCOPES,
        app_roles: GRAPH_ROLES,
        public_client: false,
        handle: "graph",
    },
    BuiltIn {
        app_id: COGNITIVE_SERVICES_APP_ID,
        display_name: "Azure Cognitive Services",
        identifier_uris: &[
            "https://cognitiveservices.azure.com",
            "https://cognitiveservices.azure.com/",
        ],
        token_version: 1,
        user_scopes: &["user_impersonation"],
        admin_scopes: &[],
        app_roles: &[],
        public_client: false,
        handle: "cognitive-services",
    },
    BuiltIn {
        app_id: TOKEN_EXCHANGE_APP_ID,
        display_name: "AAD Token Exchange",
        identifier_uris: &[TOKEN_EXCHANGE_URI],
        token_version: 2,
        user_scopes: &[],
        admin_scopes: &[],
        app_roles: &[],
        public_client: false,
        handle: "token-exchange",
    },
    BuiltIn {
        app_id: GRAPH_CLI_APP_ID,
        display_name: "Microsoft Graph Command Line Tools",
        identifier_uris: &[],
        token_version: 1,
        user_scopes: &[],
        admin_scopes: &[],
        app_roles: &[],
        public_client: true,
        handle: "graph-cli",
    },
    BuiltIn {
        app_id: CONSOLE_APP_ID,
        display_name: "agentid console",
        identifier_uris: &[],
        token_version: 2,
        user_scopes: &[],
        admin_scopes: &[],
        app_roles: &[],
        public_client: true,
        handle: "console",
    },
];

/// The web console's public client (docs/console.md §2): it signs administrators in with the
/// STS's own authorization code + PKCE flow; its one redirect URI is `{sts}/console/callback`.
pub const CONSOLE_APP_ID: &str = "a9e1c0de-7c0d-4a6e-9b1e-c0de5ecc0de1";

/// The console's redirect URI on the STS served at `base`.
pub fn console_redirect_uri(base: &str) -> String {
    format!("{}/console/callback", base.trim_end_matches('/'))
}

/// Redirect URIs of the built-in public client.
pub const GRAPH_CLI_REDIRECT_URIS: &[&str] = &[
    "http://localhost",
    "https://login.microsoftonline.com/common/oauth2/nativeclient",
];

pub fn by_app_id(app_id: &str) -> Option<&'static BuiltIn> {
    BUILT_INS
        .iter()
        .find(|b| b.app_id.eq_ignore_ascii_case(app_id))
}

pub fn by_handle(handle: &str) -> Option<&'static BuiltIn> {
    BUILT_INS.iter().find(|b| b.handle == handle)
}

/// Permission ids identical in every installation: Graph's real ids where the demo or clients
/// may know them, otherwise UUIDv5 of `urn:agentid:builtin:{appId}:{scope|role}:{value}`.
pub fn permission_id(app_id: &str, kind: &str, value: &str) -> Uuid {
    if app_id == GRAPH_APP_ID && kind == "scope" {
        let real = match value {
            "User.Read" => Some("e1fe6dd8-ba31-4d61-89e7-88639da4683d"),
            "openid" => Some("37f7f235-527c-4136-accd-4a02d197296e"),
            "profile" => Some("14dad69e-099b-42c9-810b-d002981feec1"),
            "email" => Some("64a6cdd6-aab1-4aaf-94b8-3cc8405e90d0"),
            "offline_access" => Some("7427e0e9-2fba-42fe-b0c0-848c9e6a8182"),
            _ => None,
        };
        if let Some(id) = real {
            return Uuid::parse_str(id).expect("literal GUID");
        }
    }
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("urn:agentid:builtin:{app_id}:{kind}:{value}").as_bytes(),
    )
}

/// The service principal id of a built-in in a tenant: deterministic, so every replica and
/// every re-initialisation agrees.
pub fn sp_id(tenant: &Uuid, app_id: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("urn:agentid:tenant:{tenant}:sp:{app_id}").as_bytes(),
    )
}

impl BuiltIn {
    pub fn scopes(&self) -> Vec<PermissionScope> {
        let mk = |value: &&str, kind: &str| PermissionScope {
            id: permission_id(self.app_id, "scope", value),
            value: value.to_string(),
            kind: kind.to_string(),
            is_enabled: true,
            admin_consent_display_name: Some(value.to_string()),
            admin_consent_description: None,
            user_consent_display_name: Some(value.to_string()),
            user_consent_description: None,
        };
        self.user_scopes
            .iter()
            .map(|v| mk(v, "User"))
            .chain(self.admin_scopes.iter().map(|v| mk(v, "Admin")))
            .collect()
    }

    pub fn roles(&self) -> Vec<AppRole> {
        self.app_roles
            .iter()
            .map(|v| AppRole {
                id: permission_id(self.app_id, "role", v),
                value: v.to_string(),
                display_name: Some(v.to_string()),
                description: None,
                allowed_member_types: vec!["Application".into()],
                is_enabled: true,
            })
            .collect()
    }

    /// Scopes and roles, computed once per process (their ids are UUIDv5s: hashing per token adds up).
    fn shared(&self) -> &'static Permissions {
        static ALL: std::sync::OnceLock<Vec<Permissions>> = std::sync::OnceLock::new();
        let all = ALL.get_or_init(|| {
            BUILT_INS
                .iter()
                .map(|b| (Arc::new(b.scopes()), Arc::new(b.roles())))
                .collect()
        });
        let i = BUILT_INS
            .iter()
            .position(|b| b.app_id == self.app_id)
            .expect("a built-in");
        &all[i]
    }

    pub fn resource(&self, tenant: &Uuid) -> Resource {
        Resource {
            sp_id: sp_id(tenant, self.app_id),
            app_id: Uuid::parse_str(self.app_id).expect("literal GUID"),
            display_name: self.display_name.to_string(),
            identifier_uris: self.identifier_uris.iter().map(|s| s.to_string()).collect(),
            scopes: self.shared().0.clone(),
            app_roles: self.shared().1.clone(),
            token_version: self.token_version,
            signing_alg: "RS256".into(),
        }
    }
}

impl crate::Store {
    /// Adds the principal of each built-in a tenant lacks: tenants created before a built-in
    /// existed (the console's client, docs/console.md §2) get it on the next start.
    pub async fn ensure_builtin_principals(&self) -> crate::error::Result<()> {
        for t in self.tenants().await? {
            for b in BUILT_INS {
                let app_id = Uuid::parse_str(b.app_id).expect("built-in appId");
                if self
                    .service_principal_by_app_id(&t.id, &app_id)
                    .await?
                    .is_some()
                {
                    continue;
                }
                let sp = crate::principals::NewPrincipal {
                    id: sp_id(&t.id, b.app_id),
                    app_id,
                    kind: crate::model::SpKind::BuiltIn,
                    display_name: b.display_name,
                    enabled: true,
                    blueprint_app_id: None,
                    sponsors: &[],
                };
                let mut tx = self.begin_write().await?;
                crate::principals::insert(&mut tx, &t.id, &sp)
                    .await
                    .map_err(|e| match e {
                        crate::principals::PrincipalError::Directory(d) => d,
                        other => crate::DirectoryError::Conflict(other.to_string()),
                    })?;
                tx.commit().await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_ids_match_directory_spec() {
        assert_eq!(
            permission_id(GRAPH_APP_ID, "scope", "AgentIdentityBlueprint.Create").to_string(),
            "6f38d1d4-0fa7-5c6e-876a-66e935896562"
        );
        assert_eq!(
            permission_id(GRAPH_APP_ID, "role", "AgentIdentity.CreateAsManager").to_string(),
            "a5abca4a-6b33-585b-8c07-f390e7981f67"
        );
        assert_eq!(
            permission_id(COGNITIVE_SERVICES_APP_ID, "scope", "user_impersonation").to_string(),
            "1623c61f-f7f3-5121-bc70-c07f3f410372"
        );
        assert_eq!(
            permission_id(GRAPH_APP_ID, "scope", "User.Read").to_string(),
            "e1fe6dd8-ba31-4d61-89e7-88639da4683d"
        );
    }
}
