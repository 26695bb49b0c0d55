//! Who is calling the Graph API (docs/directory.md §4.1, §6): the verified token, its live
//! principals, and the permission checks.

use super::odata::GraphError;
use crate::state::StsState;
use agentid_directory::model::{
    Application, ROLE_AGENT_ID_ADMIN, ROLE_AGENT_ID_DEVELOPER, ROLE_GLOBAL_ADMIN, SpKind, Tenant,
    User,
};
use axum::http::HeaderMap;
use serde_json::Value;
use uuid::Uuid;

/// The delegated scopes of the console's calls: what its pages read and its actions write.
const CONSOLE_SCOPES: [&str; 6] = [
    "Application.ReadWrite.All",
    "AgentIdentityBlueprint.ReadWrite.All",
    "AgentIdentityBlueprintPrincipal.Create",
    "DelegatedPermissionGrant.ReadWrite.All",
    "User.ReadWrite.All",
    "Directory.AccessAsUser.All",
];

pub struct Caller {
    pub tenant: Tenant,
    /// The signed-in user of a delegated token.
    pub user: Option<User>,
    /// The calling client's appId and service principal id.
    pub client_app_id: Uuid,
    pub client_sp_id: Uuid,
    pub client_kind: SpKind,
    scp: Vec<String>,
    roles: Vec<String>,
}

impl Caller {
    pub async fn from_headers(sts: &StsState, headers: &HeaderMap) -> Result<Caller, GraphError> {
        let Some(claims) = crate::userinfo::verified_bearer_for(sts, headers).await else {
            return Err(GraphError::unauthenticated());
        };
        // Signature, issuer of the token's tenant, Graph audience, lifetime: checked.
        let s = |k: &str| claims.get(k).and_then(Value::as_str);
        let tid = s("tid")
            .and_then(agentid_claims::guid::parse)
            .ok_or_else(GraphError::unauthenticated)?;
        let tenant = sts
            .store
            .tenant_by_id(&tid)
            .await?
            .ok_or_else(GraphError::unauthenticated)?;
        let client_app_id = s("appid")
            .or(s("azp"))
            .and_then(agentid_claims::guid::parse)
            .ok_or_else(GraphError::unauthenticated)?;
        let client = sts
            .store
            .service_principal_by_app_id(&tid, &client_app_id)
            .await?
            .ok_or_else(GraphError::unauthenticated)?;
        if !client.account_enabled {
            return Err(GraphError::unauthenticated());
        }
        if let Some(bp) = client.blueprint_app_id {
            let live = sts
                .store
                .service_principal_by_app_id(&tid, &bp)
                .await?
                .is_some_and(|b| b.account_enabled);
            if !live {
                return Err(GraphError::unauthenticated());
            }
        }
        let user = if s("idtyp") == Some("user") {
            let oid = s("oid")
                .and_then(agentid_claims::guid::parse)
                .ok_or_else(GraphError::unauthenticated)?;
            let u = sts
                .store
                .user_by_id(&tid, &oid)
                .await?
                .ok_or_else(GraphError::unauthenticated)?;
            let iat = claims
                .get("iat")
                .and_then(agentid_claims::jwt::numeric_date)
                .unwrap_or(0);
            if !u.account_enabled || u.sessions_revoked_at.is_some_and(|r| r >= iat) {
                return Err(GraphError::unauthenticated());
            }
            Some(u)
        } else {
            None
        };
        let scp = s("scp")
            .map(|v| {
                v.split(' ')
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let roles = claims
            .get("roles")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Caller {
            tenant,
            user,
            client_app_id,
            client_sp_id: client.id,
            client_kind: client.kind,
            scp,
            roles,
        })
    }

    /// The web console acting for a signed-in administrator (docs/console.md §4): a delegated
    /// caller with the console's first-party scopes; every handler still checks the user's
    /// directory role, so the scopes alone grant nothing.
    pub fn console_admin(tenant: Tenant, user: User) -> Caller {
        let app = agentid_directory::builtin::CONSOLE_APP_ID;
        Caller {
            client_app_id: Uuid::parse_str(app).expect("literal GUID"),
            client_sp_id: agentid_directory::builtin::sp_id(&tenant.id, app),
            client_kind: SpKind::BuiltIn,
            scp: CONSOLE_SCOPES.iter().map(|s| s.to_string()).collect(),
            roles: Vec::new(),
            user: Some(user),
            tenant,
        }
    }

    /// The console creating an agent identity for an administrator: Graph lets only the parent
    /// blueprint do that (app-only, `AgentIdentity.CreateAsManager`), as `agentid admin agent
    /// create` does with the blueprint's secret.
    pub fn console_blueprint(
        tenant: Tenant,
        blueprint_app_id: Uuid,
        blueprint_sp_id: Uuid,
    ) -> Caller {
        Caller {
            client_app_id: blueprint_app_id,
            client_sp_id: blueprint_sp_id,
            client_kind: SpKind::BlueprintPrincipal,
            scp: Vec::new(),
            roles: vec!["AgentIdentity.CreateAsManager".into()],
            user: None,
            tenant,
        }
    }

    pub fn delegated(&self) -> bool {
        self.user.is_some()
    }

    /// Holds one of the delegated scopes (delegated tokens) or application roles (app-only).
    pub fn has(&self, delegated: &[&str], application: &[&str]) -> bool {
        if self.delegated() {
            self.scp
                .iter()
                .any(|s| delegated.iter().any(|d| d.eq_ignore_ascii_case(s)))
        } else {
            self.roles
                .iter()
                .any(|r| application.iter().any(|a| a.eq_ignore_ascii_case(r)))
        }
    }

    /// Global Administrator or Agent ID Administrator.
    pub fn admin(&self) -> bool {
        self.user.as_ref().is_some_and(|u| {
            u.roles
                .iter()
                .any(|r| r == ROLE_GLOBAL_ADMIN || r == ROLE_AGENT_ID_ADMIN)
        })
    }

    pub fn developer(&self) -> bool {
        self.user
            .as_ref()
            .is_some_and(|u| u.roles.iter().any(|r| r == ROLE_AGENT_ID_DEVELOPER))
    }

    /// The signed-in user, or the calling principal, owns the application.
    pub fn owns(&self, owners: &[String]) -> bool {
        let me = self.user.as_ref().map(|u| u.id.to_string());
        owners
            .iter()
            .any(|o| Some(o) == me.as_ref() || *o == self.client_sp_id.to_string())
    }

    // ---- permission sets of docs/directory.md §6 ----

    pub fn read_apps(&self) -> bool {
        self.has(
            &[
                "Application.Read.All",
                "Application.ReadWrite.All",
                "Directory.Read.All",
            ],
            &[
                "Application.Read.All",
                "Application.ReadWrite.All",
                "Directory.Read.All",
            ],
        )
    }

    pub fn read_blueprints(&self) -> bool {
        self.read_apps()
            || self.has(
                &[
                    "AgentIdentityBlueprint.Read.All",
                    "AgentIdentityBlueprint.ReadWrite.All",
                ],
                &[
                    "AgentIdentityBlueprint.Read.All",
                    "AgentIdentityBlueprint.ReadWrite.All",
                ],
            )
    }

    pub fn write_apps(&self, owners: &[String]) -> bool {
        if self.delegated() {
            self.has(&["Application.ReadWrite.All"], &[]) && (self.admin() || self.owns(owners))
        } else {
            self.has(&[], &["Application.ReadWrite.All"])
                || (self.has(&[], &["Application.ReadWrite.OwnedBy"]) && self.owns(owners))
        }
    }

    pub fn write_blueprint(&self, owners: &[String]) -> bool {
        self.write_apps(owners)
            || if self.delegated() {
                (self.has(
                    &[
                        "AgentIdentityBlueprint.ReadWrite.All",
                        "AgentIdentityBlueprint.UpdateAuthProperties.All",
                    ],
                    &[],
                ) && (self.admin() || self.owns(owners)))
                    || (self.has(&["AgentIdentityBlueprint.Create"], &[]) && self.owns(owners))
            } else {
                self.has(
                    &[],
                    &[
                        "AgentIdentityBlueprint.ReadWrite.All",
                        "AgentIdentityBlueprint.UpdateAuthProperties.All",
                    ],
                )
            }
    }

    pub fn delete_blueprint(&self, owners: &[String]) -> bool {
        self.write_apps(owners)
            || if self.delegated() {
                self.has(
                    &[
                        "AgentIdentityBlueprint.DeleteRestore.All",
                        "AgentIdentityBlueprint.ReadWrite.All",
                    ],
                    &[],
                ) && (self.admin() || self.owns(owners))
            } else {
                self.has(
                    &[],
                    &[
                        "AgentIdentityBlueprint.DeleteRestore.All",
                        "AgentIdentityBlueprint.ReadWrite.All",
                    ],
                )
            }
    }

    pub fn manage_credentials(&self, app: &Application, owners: &[String]) -> bool {
        let blueprint = app.kind == agentid_directory::model::AppKind::Blueprint;
        self.write_apps(owners)
            || (blueprint
                && if self.delegated() {
                    self.has(
                        &[
                            "AgentIdentityBlueprint.AddRemoveCreds.All",
                            "AgentIdentityBlueprint.ReadWrite.All",
                        ],
                        &[],
                    ) && (self.admin() || self.owns(owners))
                } else {
                    self.has(&[], &["AgentIdentityBlueprint.AddRemoveCreds.All"])
                })
    }

    pub fn create_blueprint(&self) -> Result<(), GraphError> {
        if !self.delegated() {
            return Err(GraphError::wrong_identity_type());
        }
        let allowed = self.has(
            &[
                "AgentIdentityBlueprint.Create",
                "AgentIdentityBlueprint.ReadWrite.All",
            ],
            &[],
        ) && (self.admin() || self.developer());
        if allowed {
            Ok(())
        } else {
            Err(GraphError::denied())
        }
    }

    pub fn create_blueprint_principal(&self, owners: &[String]) -> bool {
        self.write_apps(owners)
            || if self.delegated() {
                self.has(&["AgentIdentityBlueprintPrincipal.Create"], &[])
                    && (self.admin() || self.owns(owners))
            } else {
                self.has(
                    &[],
                    &[
                        "AgentIdentityBlueprintPrincipal.Create",
                        "Application.ReadWrite.All",
                    ],
                )
            }
    }

    pub fn read_grants(&self) -> bool {
        self.has(
            &[
                "DelegatedPermissionGrant.Read.All",
                "DelegatedPermissionGrant.ReadWrite.All",
                "Directory.Read.All",
            ],
            &[
                "DelegatedPermissionGrant.ReadWrite.All",
                "Directory.Read.All",
            ],
        )
    }

    pub fn manage_grants(&self) -> bool {
        if self.delegated() {
            self.has(&["DelegatedPermissionGrant.ReadWrite.All"], &[]) && self.admin()
        } else {
            self.has(&[], &["DelegatedPermissionGrant.ReadWrite.All"])
        }
    }

    pub fn read_users(&self) -> bool {
        self.has(
            &["User.ReadBasic.All", "User.Read.All", "Directory.Read.All"],
            &["User.Read.All", "Directory.Read.All"],
        )
    }

    pub fn read_audit(&self) -> bool {
        if self.delegated() {
            self.has(&["AuditLog.Read.All"], &[]) && self.admin()
        } else {
            self.has(&[], &["AuditLog.Read.All"])
        }
    }

    /// Revoking a token by its `uti`: Global or Agent ID Administrators, or applications, with
    /// the permission that also disables and deletes agents.
    pub fn revoke_tokens(&self) -> bool {
        let perms = ["Application.ReadWrite.All", "Directory.ReadWrite.All"];
        if self.delegated() {
            self.has(&perms, &[]) && self.admin()
        } else {
            self.has(&[], &perms)
        }
    }

    pub fn manage_policy(&self) -> bool {
        if self.delegated() {
            self.has(&["Policy.ReadWrite.ApplicationConfiguration"], &[]) && self.admin()
        } else {
            self.has(&[], &["Policy.ReadWrite.ApplicationConfiguration"])
        }
    }
}
