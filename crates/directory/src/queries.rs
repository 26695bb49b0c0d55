//! Reads and small writes the token service needs. Every query is plain SQL that runs
//! unchanged on SQLite and PostgreSQL.

use crate::builtin;
use crate::error::{DirectoryError, Result};
use crate::model::*;
use crate::store::Store;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sqlx::FromRow;
use uuid::Uuid;

fn uuid(s: &str, what: &'static str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| DirectoryError::corrupt(what, e))
}

fn json<T: serde::de::DeserializeOwned>(s: &str, what: &'static str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| DirectoryError::corrupt(what, e))
}

#[derive(FromRow)]
struct TenantRow {
    id: String,
    display_name: String,
    domains: String,
    allow_password_grant: i64,
    user_consent_allowed: i64,
    pairwise_secret: String,
    user_code_secret: String,
}

impl TenantRow {
    fn into_model(self) -> Result<Tenant> {
        Ok(Tenant {
            id: uuid(&self.id, "tenant id")?,
            display_name: self.display_name,
            domains: json(&self.domains, "tenant domains")?,
            allow_password_grant: self.allow_password_grant != 0,
            user_consent_allowed: self.user_consent_allowed != 0,
            pairwise_secret: STANDARD
                .decode(self.pairwise_secret)
                .map_err(|e| DirectoryError::corrupt("secret", e))?,
            user_code_secret: STANDARD
                .decode(self.user_code_secret)
                .map_err(|e| DirectoryError::corrupt("secret", e))?,
        })
    }
}

const TENANT_COLS: &str = "id, display_name, domains, allow_password_grant, user_consent_allowed, pairwise_secret, user_code_secret";

#[derive(FromRow)]
pub(crate) struct UserRow {
    id: String,
    tenant_id: String,
    kind: String,
    upn: String,
    display_name: String,
    given_name: Option<String>,
    surname: Option<String>,
    mail: Option<String>,
    account_enabled: i64,
    password_hash: Option<String>,
    identity_parent_id: Option<String>,
    roles: String,
    sessions_revoked_at: Option<i64>,
}

pub(crate) const USER_COLS: &str = "id, tenant_id, kind, upn, display_name, given_name, surname, mail, account_enabled, password_hash, identity_parent_id, roles, sessions_revoked_at";

impl UserRow {
    pub(crate) fn into_model(self) -> Result<User> {
        Ok(User {
            id: uuid(&self.id, "user id")?,
            tenant_id: uuid(&self.tenant_id, "tenant id")?,
            kind: UserKind::parse(&self.kind)
                .ok_or_else(|| DirectoryError::corrupt("user kind", &self.kind))?,
            upn: self.upn,
            display_name: self.display_name,
            given_name: self.given_name,
            surname: self.surname,
            mail: self.mail,
            account_enabled: self.account_enabled != 0,
            password_hash: self.password_hash,
            identity_parent_id: self.identity_parent_id,
            roles: json(&self.roles, "user roles")?,
            sessions_revoked_at: self.sessions_revoked_at,
        })
    }
}

#[derive(FromRow)]
pub(crate) struct AppRow {
    id: String,
    tenant_id: String,
    app_id: String,
    kind: String,
    display_name: String,
    identifier_uris: String,
    scopes: String,
    app_roles: String,
    access_token_version: Option<i64>,
    is_public_client: i64,
    redirect_uris: String,
    inheritable_permissions: String,
    signing_alg: String,
}

pub(crate) const APP_COLS: &str = "id, tenant_id, app_id, kind, display_name, identifier_uris, scopes, app_roles, access_token_version, is_public_client, redirect_uris, inheritable_permissions, signing_alg";

impl AppRow {
    pub(crate) fn into_model(self) -> Result<Application> {
        Ok(Application {
            id: uuid(&self.id, "application id")?,
            tenant_id: uuid(&self.tenant_id, "tenant id")?,
            app_id: uuid(&self.app_id, "appId")?,
            kind: AppKind::parse(&self.kind)
                .ok_or_else(|| DirectoryError::corrupt("application kind", &self.kind))?,
            display_name: self.display_name,
            identifier_uris: json(&self.identifier_uris, "identifierUris")?,
            scopes: json(&self.scopes, "oauth2PermissionScopes")?,
            app_roles: json(&self.app_roles, "appRoles")?,
            access_token_version: self.access_token_version,
            is_public_client: self.is_public_client != 0,
            redirect_uris: json(&self.redirect_uris, "redirectUris")?,
            inheritable_permissions: json(&self.inheritable_permissions, "inheritablePermissions")?,
            signing_alg: self.signing_alg,
        })
    }
}

#[derive(FromRow)]
struct AppSpRow {
    #[sqlx(flatten)]
    app: AppRow,
    sp_id: Option<String>,
    sp_kind: Option<String>,
    sp_display_name: Option<String>,
    sp_enabled: Option<i64>,
}

#[derive(FromRow)]
struct SpRow {
    id: String,
    tenant_id: String,
    app_id: String,
    kind: String,
    display_name: String,
    account_enabled: i64,
    blueprint_app_id: Option<String>,
}

const SP_COLS: &str =
    "id, tenant_id, app_id, kind, display_name, account_enabled, blueprint_app_id";

impl SpRow {
    fn into_model(self) -> Result<ServicePrincipal> {
        Ok(ServicePrincipal {
            id: uuid(&self.id, "service principal id")?,
            tenant_id: uuid(&self.tenant_id, "tenant id")?,
            app_id: uuid(&self.app_id, "appId")?,
            kind: SpKind::parse(&self.kind)
                .ok_or_else(|| DirectoryError::corrupt("principal kind", &self.kind))?,
            display_name: self.display_name,
            account_enabled: self.account_enabled != 0,
            blueprint_app_id: self
                .blueprint_app_id
                .as_deref()
                .map(|s| uuid(s, "blueprint appId"))
                .transpose()?,
        })
    }
}

/// What a `client_id` names in a tenant (sts.md §6.3 lookup order).
#[derive(Debug, Clone)]
pub enum ClientRecord {
    /// An application (ordinary or blueprint), with its service principal if it has one.
    App {
        app: Application,
        sp: Option<ServicePrincipal>,
    },
    /// An agent identity, with its parent blueprint's application and principal.
    Agent {
        agent: ServicePrincipal,
        blueprint: Option<Application>,
        blueprint_sp: Option<ServicePrincipal>,
    },
    /// A Microsoft first-party client (only the Graph CLI public client is usable as a client).
    BuiltIn {
        def: &'static builtin::BuiltIn,
        sp: ServicePrincipal,
    },
}

impl Store {
    pub async fn tenant_by_id(&self, id: &Uuid) -> Result<Option<Tenant>> {
        let row: Option<TenantRow> =
            sqlx::query_as(&format!("SELECT {TENANT_COLS} FROM tenants WHERE id = $1"))
                .bind(id.to_string())
                .fetch_optional(self.pool())
                .await?;
        row.map(TenantRow::into_model).transpose()
    }

    /// Resolves the tenant path segment: a GUID in any case, or a domain (case-insensitive).
    pub async fn tenant_by_segment(&self, segment: &str) -> Result<Option<Tenant>> {
        if let Some(id) = agentid_claims::guid::parse(segment) {
            return self.tenant_by_id(&id).await;
        }
        let row: Option<TenantRow> = sqlx::query_as(&format!(
            "SELECT {} FROM tenants t JOIN tenant_domains d ON d.tenant_id = t.id WHERE d.domain_lower = $1",
            TENANT_COLS.split(", ").map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", ")
        ))
        .bind(segment.to_ascii_lowercase())
        .fetch_optional(self.pool())
        .await?;
        row.map(TenantRow::into_model).transpose()
    }

    pub async fn tenants(&self) -> Result<Vec<Tenant>> {
        let rows: Vec<TenantRow> = sqlx::query_as(&format!(
            "SELECT {TENANT_COLS} FROM tenants ORDER BY created_at"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(TenantRow::into_model).collect()
    }

    pub async fn user_by_id(&self, tenant: &Uuid, id: &Uuid) -> Result<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLS} FROM users WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.map(UserRow::into_model).transpose()
    }

    pub async fn user_by_upn(&self, tenant: &Uuid, upn: &str) -> Result<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLS} FROM users WHERE tenant_id = $1 AND upn_lower = $2"
        ))
        .bind(tenant.to_string())
        .bind(upn.to_lowercase())
        .fetch_optional(self.pool())
        .await?;
        row.map(UserRow::into_model).transpose()
    }

    pub async fn application_by_app_id(
        &self,
        tenant: &Uuid,
        app_id: &Uuid,
    ) -> Result<Option<Application>> {
        let row: Option<AppRow> = sqlx::query_as(&format!(
            "SELECT {APP_COLS} FROM applications WHERE tenant_id = $1 AND app_id = $2"
        ))
        .bind(tenant.to_string())
        .bind(app_id.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.map(AppRow::into_model).transpose()
    }

    pub async fn service_principal_by_app_id(
        &self,
        tenant: &Uuid,
        app_id: &Uuid,
    ) -> Result<Option<ServicePrincipal>> {
        let row: Option<SpRow> = sqlx::query_as(&format!(
            "SELECT {SP_COLS} FROM service_principals WHERE tenant_id = $1 AND app_id = $2"
        ))
        .bind(tenant.to_string())
        .bind(app_id.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.map(SpRow::into_model).transpose()
    }

    /// An application and its service principal (if any), in one query.
    pub async fn application_with_principal(
        &self,
        tenant: &Uuid,
        app_id: &Uuid,
    ) -> Result<Option<(Application, Option<ServicePrincipal>)>> {
        let cols = APP_COLS
            .split(", ")
            .map(|c| format!("a.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let row: Option<AppSpRow> = sqlx::query_as(&format!(
            "SELECT {cols}, s.id AS sp_id, s.kind AS sp_kind, s.display_name AS sp_display_name, s.account_enabled AS sp_enabled \
             FROM applications a LEFT JOIN service_principals s ON s.tenant_id = a.tenant_id AND s.app_id = a.app_id \
             WHERE a.tenant_id = $1 AND a.app_id = $2"
        ))
        .bind(tenant.to_string())
        .bind(app_id.to_string())
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let sp = match (row.sp_id, row.sp_kind, row.sp_display_name, row.sp_enabled) {
            (Some(id), Some(kind), Some(display_name), Some(enabled)) => Some(ServicePrincipal {
                id: uuid(&id, "service principal id")?,
                tenant_id: *tenant,
                app_id: *app_id,
                kind: SpKind::parse(&kind)
                    .ok_or_else(|| DirectoryError::corrupt("principal kind", &kind))?,
                display_name,
                account_enabled: enabled != 0,
                blueprint_app_id: None,
            }),
            _ => None,
        };
        Ok(Some((row.app.into_model()?, sp)))
    }

    /// Looks up a client by `client_id`: application appId, then agent identity id, then
    /// built-in (sts.md §6.3). Two queries whatever the kind: this is on every token request.
    pub async fn client(&self, tenant: &Uuid, client_id: &Uuid) -> Result<Option<ClientRecord>> {
        match self.service_principal_by_app_id(tenant, client_id).await? {
            Some(agent) if agent.kind == SpKind::AgentIdentity => {
                let (blueprint, blueprint_sp) = match agent.blueprint_app_id {
                    Some(bp) => match self.application_with_principal(tenant, &bp).await? {
                        Some((app, sp)) => (Some(app), sp),
                        None => (None, None),
                    },
                    None => (None, None),
                };
                Ok(Some(ClientRecord::Agent {
                    agent,
                    blueprint,
                    blueprint_sp,
                }))
            }
            Some(sp) if sp.kind == SpKind::BuiltIn => {
                Ok(builtin::by_app_id(&sp.app_id.to_string())
                    .map(|def| ClientRecord::BuiltIn { def, sp }))
            }
            sp => Ok(self
                .application_by_app_id(tenant, client_id)
                .await?
                .map(|app| ClientRecord::App { app, sp })),
        }
    }

    pub async fn password_credentials(
        &self,
        application_id: &Uuid,
    ) -> Result<Vec<PasswordCredential>> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT key_id, secret_sha256, start_at, end_at FROM password_credentials WHERE application_id = $1",
        )
        .bind(application_id.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|(k, h, s, e)| {
                Ok(PasswordCredential {
                    key_id: uuid(&k, "keyId")?,
                    secret_sha256: h,
                    start_at: s,
                    end_at: e,
                })
            })
            .collect()
    }

    pub async fn key_credentials(&self, application_id: &Uuid) -> Result<Vec<KeyCredential>> {
        let rows: Vec<(String, String, String, String, i64, i64)> = sqlx::query_as(
            "SELECT key_id, cert_der, thumbprint_sha1, thumbprint_sha256, start_at, end_at FROM key_credentials WHERE application_id = $1",
        )
        .bind(application_id.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|(k, der, t1, t256, s, e)| {
                Ok(KeyCredential {
                    key_id: uuid(&k, "keyId")?,
                    cert_der: STANDARD
                        .decode(der)
                        .map_err(|e| DirectoryError::corrupt("certificate", e))?,
                    thumbprint_sha1: t1,
                    thumbprint_sha256: t256,
                    start_at: s,
                    end_at: e,
                })
            })
            .collect()
    }

    pub async fn federated_credentials(
        &self,
        application_id: &Uuid,
    ) -> Result<Vec<FederatedCredential>> {
        let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
            "SELECT id, name, issuer, subject, audience FROM federated_credentials WHERE application_id = $1 ORDER BY name_lower",
        )
        .bind(application_id.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|(id, name, issuer, subject, audience)| {
                Ok(FederatedCredential {
                    id: uuid(&id, "federated credential id")?,
                    name,
                    issuer,
                    subject,
                    audience,
                })
            })
            .collect()
    }

    pub async fn trusted_issuer(
        &self,
        tenant: &Uuid,
        issuer: &str,
    ) -> Result<Option<TrustedIssuer>> {
        let row: Option<(String, Option<String>, i64, Option<String>)> =
            sqlx::query_as("SELECT issuer, jwks, allow_http, ca_bundle FROM trusted_issuers WHERE tenant_id = $1 AND issuer = $2")
                .bind(tenant.to_string())
                .bind(issuer)
                .fetch_optional(self.pool())
                .await?;
        row.map(|(issuer, jwks, allow_http, ca_bundle)| {
            Ok(TrustedIssuer {
                issuer,
                jwks: jwks
                    .as_deref()
                    .map(|j| json(j, "trusted issuer JWKS"))
                    .transpose()?,
                allow_http: allow_http != 0,
                ca_bundle,
            })
        })
        .transpose()
    }

    /// Finds a resource by appId (GUID) or identifier URI (case-insensitive, trailing `/` ignored).
    pub async fn resource(&self, tenant: &Uuid, identifier: &str) -> Result<Option<Resource>> {
        let app_id = match agentid_claims::guid::parse(identifier) {
            Some(id) => Some(id),
            None => {
                let norm = normalize_uri(identifier);
                if let Some(b) = builtin::BUILT_INS
                    .iter()
                    .find(|b| b.identifier_uris.iter().any(|u| normalize_uri(u) == norm))
                {
                    return Ok(Some(b.resource(tenant)));
                }
                let row: Option<(String,)> = sqlx::query_as(
                    "SELECT app_id FROM identifier_uris WHERE tenant_id = $1 AND uri_norm = $2",
                )
                .bind(tenant.to_string())
                .bind(norm)
                .fetch_optional(self.pool())
                .await?;
                match row {
                    Some((a,)) => Some(uuid(&a, "appId")?),
                    None => None,
                }
            }
        };
        let Some(app_id) = app_id else {
            return Ok(None);
        };
        if let Some(b) = builtin::by_app_id(&app_id.to_string()) {
            return Ok(if b.public_client {
                None
            } else {
                Some(b.resource(tenant))
            });
        }
        let Some(app) = self.application_by_app_id(tenant, &app_id).await? else {
            return Ok(None);
        };
        let Some(sp) = self.service_principal_by_app_id(tenant, &app_id).await? else {
            return Ok(None);
        };
        Ok(Some(Resource {
            sp_id: sp.id,
            app_id,
            display_name: sp.display_name,
            identifier_uris: app.identifier_uris,
            scopes: std::sync::Arc::new(app.scopes),
            app_roles: std::sync::Arc::new(app.app_roles),
            token_version: if app.access_token_version == Some(2) {
                2
            } else {
                1
            },
            signing_alg: app.signing_alg,
        }))
    }

    /// Scope strings of the delegated grants of `client_sp` on `resource_sp` that cover `user`:
    /// `AllPrincipals` grants, and `Principal` grants for that user.
    pub async fn granted_scopes(
        &self,
        client_sp: &Uuid,
        resource_sp: &Uuid,
        user: Option<&Uuid>,
    ) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT scope FROM oauth2_permission_grants WHERE client_id = $1 AND resource_id = $2 \
             AND (consent_type = 'AllPrincipals' OR (consent_type = 'Principal' AND principal_key = $3)) ORDER BY consent_type, id",
        )
        .bind(client_sp.to_string())
        .bind(resource_sp.to_string())
        .bind(user.map(Uuid::to_string).unwrap_or_default())
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(s,)| s).collect())
    }

    /// App role ids assigned to `principal` on `resource_sp`.
    pub async fn assigned_role_ids(
        &self,
        principal: &Uuid,
        resource_sp: &Uuid,
    ) -> Result<Vec<Uuid>> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT app_role_id FROM app_role_assignments WHERE principal_id = $1 AND resource_id = $2")
                .bind(principal.to_string())
                .bind(resource_sp.to_string())
                .fetch_all(self.pool())
                .await?;
        rows.into_iter().map(|(r,)| uuid(&r, "appRoleId")).collect()
    }

    /// Records a client assertion's `jti`. Returns `false` if the same `jti` was already seen
    /// with a different assertion (or at all, when `single_use`).
    pub async fn record_assertion(
        &self,
        tenant: &Uuid,
        client_id: &str,
        jti: &str,
        assertion_sha256: &str,
        expires_at: i64,
        single_use: bool,
    ) -> Result<bool> {
        let now = crate::now();
        let inserted = sqlx::query(
            "INSERT INTO assertion_replay (tenant_id, client_id, jti, assertion_sha256, expires_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant_id, client_id, jti) DO UPDATE SET assertion_sha256 = $4, expires_at = $5 \
             WHERE assertion_replay.expires_at < $6",
        )
        .bind(tenant.to_string())
        .bind(client_id)
        .bind(jti)
        .bind(assertion_sha256)
        .bind(expires_at)
        .bind(now)
        .execute(self.pool())
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(true);
        }
        if single_use {
            return Ok(false);
        }
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT assertion_sha256 FROM assertion_replay WHERE tenant_id = $1 AND client_id = $2 AND jti = $3",
        )
        .bind(tenant.to_string())
        .bind(client_id)
        .bind(jti)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_some_and(|(h,)| crate::secrets::ct_eq(&h, assertion_sha256)))
    }
}
