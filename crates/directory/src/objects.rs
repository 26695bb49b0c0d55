//! Writes and listings behind the Graph-compatible API (directory.md §5). Each write is one
//! transaction; uniqueness violations surface as [`DirectoryError::Conflict`].

use crate::applications::{IdentifierUri, RedirectUri};
use crate::builtin;
use crate::error::{DirectoryError, Result};
use crate::model::*;
use crate::secrets;
use crate::store::Store;
use sqlx::FromRow;
use uuid::Uuid;

/// Properties of an application that only the Graph API shows.
#[derive(Debug, Clone, FromRow)]
pub struct AppExtras {
    pub description: Option<String>,
    pub required_resource_access: String,
    pub optional_claims: Option<String>,
    pub owners: String,
    pub sponsors: String,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct SpRecord {
    pub sp: ServicePrincipal,
    pub sponsors: Vec<String>,
    pub tags: Vec<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct GrantRow {
    pub id: String,
    pub client_id: String,
    pub consent_type: String,
    pub principal_key: String,
    pub resource_id: String,
    pub scope: String,
}

#[derive(Debug, Clone)]
pub struct NewPassword {
    pub key_id: Uuid,
    pub display_name: Option<String>,
    pub hint: String,
    pub start_at: i64,
    pub end_at: i64,
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(<redacted>)")
    }
}

/// A secret shown once.
pub struct SecretText(pub String);

fn conflict(e: sqlx::Error, msg: &str) -> DirectoryError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            DirectoryError::Conflict(msg.to_string())
        }
        _ => e.into(),
    }
}

impl Store {
    pub async fn application_by_object_id(
        &self,
        tenant: &Uuid,
        id: &Uuid,
    ) -> Result<Option<Application>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT app_id FROM applications WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.to_string())
                .bind(id.to_string())
                .fetch_optional(self.pool())
                .await?;
        match row {
            Some((app_id,)) => {
                self.application_by_app_id(
                    tenant,
                    &Uuid::parse_str(&app_id).map_err(|e| DirectoryError::corrupt("appId", e))?,
                )
                .await
            }
            None => Ok(None),
        }
    }

    pub async fn application_extras(&self, id: &Uuid) -> Result<AppExtras> {
        Ok(sqlx::query_as("SELECT description, required_resource_access, optional_claims, owners, sponsors, created_at FROM applications WHERE id = $1")
            .bind(id.to_string())
            .fetch_one(self.pool())
            .await?)
    }

    /// All applications of a tenant (optionally only blueprints), by creation, in one query.
    pub async fn applications(
        &self,
        tenant: &Uuid,
        blueprints_only: bool,
    ) -> Result<Vec<Application>> {
        let filter = if blueprints_only {
            " AND kind = 'agentIdentityBlueprint'"
        } else {
            ""
        };
        let rows: Vec<crate::queries::AppRow> = sqlx::query_as(&format!(
            "SELECT {} FROM applications WHERE tenant_id = $1{filter} ORDER BY created_at, id",
            crate::queries::APP_COLS
        ))
        .bind(tenant.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(crate::queries::AppRow::into_model)
            .collect()
    }

    /// Creates an application or blueprint; blueprints are limited to 250 per tenant.
    pub async fn create_application(
        &self,
        tenant: &Uuid,
        kind: AppKind,
        display_name: &str,
        owners: &[String],
        sponsors: &[String],
    ) -> Result<Application> {
        let mut tx = self.pool().begin().await?;
        if kind == AppKind::Blueprint {
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM applications WHERE tenant_id = $1 AND kind = 'agentIdentityBlueprint'")
                .bind(tenant.to_string())
                .fetch_one(&mut *tx)
                .await?;
            if n >= 250 {
                return Err(DirectoryError::Conflict(
                    "AgentBlueprint_LimitExceeded".into(),
                ));
            }
        }
        let id = Uuid::new_v4();
        let app_id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO applications (id, tenant_id, app_id, kind, display_name, owners, sponsors, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id.to_string())
        .bind(tenant.to_string())
        .bind(app_id.to_string())
        .bind(kind.as_str())
        .bind(display_name)
        .bind(serde_json::to_string(owners).expect("json"))
        .bind(serde_json::to_string(sponsors).expect("json"))
        .bind(crate::now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.application_by_app_id(tenant, &app_id)
            .await?
            .ok_or_else(|| DirectoryError::NotFound("application".into()))
    }

    /// Applies a validated patch to an application. `identifier_uris` were checked against
    /// Entra's rules by [`IdentifierUri::parse`]; here they are checked for uniqueness.
    #[allow(clippy::too_many_arguments)]
    pub async fn update_application(
        &self,
        app: &Application,
        display_name: Option<&str>,
        identifier_uris: Option<&[IdentifierUri]>,
        scopes: Option<&[PermissionScope]>,
        app_roles: Option<&[AppRole]>,
        access_token_version: Option<Option<i64>>,
        optional_claims: Option<Option<&serde_json::Value>>,
        required_resource_access: Option<&serde_json::Value>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let id = app.id.to_string();
        if let Some(d) = display_name {
            sqlx::query("UPDATE applications SET display_name = $1 WHERE id = $2")
                .bind(d)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE service_principals SET display_name = $1 WHERE tenant_id = $2 AND app_id = $3")
                .bind(d)
                .bind(app.tenant_id.to_string())
                .bind(app.app_id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        if let Some(uris) = identifier_uris {
            let uris: Vec<&str> = uris.iter().map(IdentifierUri::as_str).collect();
            for u in &uris {
                let n = normalize_uri(u);
                if builtin::BUILT_INS
                    .iter()
                    .any(|b| b.identifier_uris.iter().any(|x| normalize_uri(x) == n))
                {
                    return Err(DirectoryError::Conflict(format!(
                        "The identifier URI '{u}' is already in use."
                    )));
                }
            }
            sqlx::query("UPDATE applications SET identifier_uris = $1 WHERE id = $2")
                .bind(serde_json::to_string(&uris).expect("json"))
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM identifier_uris WHERE tenant_id = $1 AND app_id = $2")
                .bind(app.tenant_id.to_string())
                .bind(app.app_id.to_string())
                .execute(&mut *tx)
                .await?;
            for u in &uris {
                sqlx::query("INSERT INTO identifier_uris (tenant_id, uri_norm, app_id) VALUES ($1, $2, $3)")
                    .bind(app.tenant_id.to_string())
                    .bind(normalize_uri(u))
                    .bind(app.app_id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| conflict(e, &format!("Another object with the same value for property identifierUris already exists: '{u}'.")))?;
            }
        }
        if let Some(s) = scopes {
            sqlx::query("UPDATE applications SET scopes = $1 WHERE id = $2")
                .bind(serde_json::to_string(s).expect("json"))
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(r) = app_roles {
            sqlx::query("UPDATE applications SET app_roles = $1 WHERE id = $2")
                .bind(serde_json::to_string(r).expect("json"))
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(v) = access_token_version {
            sqlx::query("UPDATE applications SET access_token_version = $1 WHERE id = $2")
                .bind(v)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(oc) = optional_claims {
            sqlx::query("UPDATE applications SET optional_claims = $1 WHERE id = $2")
                .bind(oc.map(|v| v.to_string()))
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(rra) = required_resource_access {
            sqlx::query("UPDATE applications SET required_resource_access = $1 WHERE id = $2")
                .bind(rra.to_string())
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes an application with its principal, credentials and (blueprints) its agents.
    pub async fn delete_application(&self, app: &Application) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let t = app.tenant_id.to_string();
        let a = app.app_id.to_string();
        if app.kind == AppKind::Blueprint {
            let agents: Vec<(String,)> = sqlx::query_as(
                "SELECT id FROM service_principals WHERE tenant_id = $1 AND blueprint_app_id = $2",
            )
            .bind(&t)
            .bind(&a)
            .fetch_all(&mut *tx)
            .await?;
            for (agent,) in agents {
                delete_principal_rows(&mut tx, &t, &agent).await?;
            }
        }
        let sp: Option<(String,)> = sqlx::query_as(
            "SELECT id FROM service_principals WHERE tenant_id = $1 AND app_id = $2",
        )
        .bind(&t)
        .bind(&a)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((sp,)) = sp {
            delete_principal_rows(&mut tx, &t, &sp).await?;
        }
        sqlx::query("DELETE FROM identifier_uris WHERE tenant_id = $1 AND app_id = $2")
            .bind(&t)
            .bind(&a)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM applications WHERE id = $1")
            .bind(app.id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn add_password(
        &self,
        tenant: &Uuid,
        app: &Application,
        display_name: Option<&str>,
        end_at: Option<i64>,
    ) -> Result<(NewPassword, SecretText)> {
        let secret = secrets::random_client_secret();
        let now = crate::now();
        let p = NewPassword {
            key_id: Uuid::new_v4(),
            display_name: display_name.map(str::to_string),
            hint: secret.chars().take(3).collect(),
            start_at: now,
            end_at: end_at.unwrap_or(now + 2 * 365 * 86400),
        };
        sqlx::query(
            "INSERT INTO password_credentials (key_id, tenant_id, application_id, display_name, hint, secret_sha256, start_at, end_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(p.key_id.to_string())
        .bind(tenant.to_string())
        .bind(app.id.to_string())
        .bind(&p.display_name)
        .bind(&p.hint)
        .bind(secrets::sha256_hex(&secret))
        .bind(p.start_at)
        .bind(p.end_at)
        .execute(self.pool())
        .await?;
        Ok((p, SecretText(secret)))
    }

    /// Password credentials as Graph lists them (no secret).
    pub async fn password_credential_list(
        &self,
        app: &Uuid,
    ) -> Result<Vec<(String, Option<String>, String, i64, i64)>> {
        Ok(sqlx::query_as("SELECT key_id, display_name, hint, start_at, end_at FROM password_credentials WHERE application_id = $1 ORDER BY start_at")
            .bind(app.to_string())
            .fetch_all(self.pool())
            .await?)
    }

    pub async fn remove_password(&self, app: &Uuid, key_id: &Uuid) -> Result<bool> {
        Ok(sqlx::query(
            "DELETE FROM password_credentials WHERE application_id = $1 AND key_id = $2",
        )
        .bind(app.to_string())
        .bind(key_id.to_string())
        .execute(self.pool())
        .await?
        .rows_affected()
            == 1)
    }

    /// Creates a federated credential; at most 20 per application, (issuer, subject) and name unique.
    pub async fn create_fic(
        &self,
        tenant: &Uuid,
        app: &Uuid,
        f: &FederatedCredential,
        description: Option<&str>,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let (n,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM federated_credentials WHERE application_id = $1")
                .bind(app.to_string())
                .fetch_one(&mut *tx)
                .await?;
        if n >= 20 {
            return Err(DirectoryError::NotFound("limit".into()));
        }
        sqlx::query(
            "INSERT INTO federated_credentials (id, tenant_id, application_id, name, name_lower, issuer, subject, audience, description) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(f.id.to_string())
        .bind(tenant.to_string())
        .bind(app.to_string())
        .bind(&f.name)
        .bind(f.name.to_lowercase())
        .bind(&f.issuer)
        .bind(&f.subject)
        .bind(&f.audience)
        .bind(description)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, "FederatedIdentityCredential with the same name or the same issuer and subject already exists."))?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn fic_description(&self, id: &Uuid) -> Result<Option<String>> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT description FROM federated_credentials WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(self.pool())
                .await?;
        Ok(row.and_then(|(d,)| d))
    }

    pub async fn update_fic(
        &self,
        f: &FederatedCredential,
        description: Option<&str>,
    ) -> Result<()> {
        sqlx::query("UPDATE federated_credentials SET issuer = $1, subject = $2, audience = $3, description = $4 WHERE id = $5")
            .bind(&f.issuer)
            .bind(&f.subject)
            .bind(&f.audience)
            .bind(description)
            .bind(f.id.to_string())
            .execute(self.pool())
            .await
            .map_err(|e| conflict(e, "FederatedIdentityCredential with the same issuer and subject already exists."))?;
        Ok(())
    }

    pub async fn delete_fic(&self, id: &Uuid) -> Result<()> {
        sqlx::query("DELETE FROM federated_credentials WHERE id = $1")
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Creates the principal of an application (a blueprint's is a blueprint principal).
    pub async fn create_service_principal(&self, app: &Application) -> Result<ServicePrincipal> {
        let kind = if app.kind == AppKind::Blueprint {
            SpKind::BlueprintPrincipal
        } else {
            SpKind::ServicePrincipal
        };
        let id = Uuid::new_v4();
        sqlx::query("INSERT INTO service_principals (id, tenant_id, app_id, kind, display_name, account_enabled, created_at) VALUES ($1, $2, $3, $4, $5, 1, $6)")
            .bind(id.to_string())
            .bind(app.tenant_id.to_string())
            .bind(app.app_id.to_string())
            .bind(kind.as_str())
            .bind(&app.display_name)
            .bind(crate::now())
            .execute(self.pool())
            .await
            .map_err(|e| conflict(e, "The service principal for this application already exists."))?;
        self.service_principal_by_app_id(&app.tenant_id, &app.app_id)
            .await?
            .ok_or_else(|| DirectoryError::NotFound("service principal".into()))
    }

    /// Creates an agent identity under a blueprint; at most 250 per blueprint.
    pub async fn create_agent_identity(
        &self,
        tenant: &Uuid,
        display_name: &str,
        blueprint: &Uuid,
        sponsors: &[String],
    ) -> Result<ServicePrincipal> {
        let mut tx = self.pool().begin().await?;
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM service_principals WHERE tenant_id = $1 AND blueprint_app_id = $2")
            .bind(tenant.to_string())
            .bind(blueprint.to_string())
            .fetch_one(&mut *tx)
            .await?;
        if n >= 250 {
            return Err(DirectoryError::Conflict(
                "AgentIdentity_LimitExceeded".into(),
            ));
        }
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO service_principals (id, tenant_id, app_id, kind, display_name, account_enabled, blueprint_app_id, sponsors, created_at) \
             VALUES ($1, $2, $3, 'agentIdentity', $4, 1, $5, $6, $7)",
        )
        .bind(id.to_string())
        .bind(tenant.to_string())
        .bind(id.to_string())
        .bind(display_name)
        .bind(blueprint.to_string())
        .bind(serde_json::to_string(sponsors).expect("json"))
        .bind(crate::now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.service_principal_by_app_id(tenant, &id)
            .await?
            .ok_or_else(|| DirectoryError::NotFound("agent identity".into()))
    }

    pub async fn service_principal_record(
        &self,
        tenant: &Uuid,
        id: &Uuid,
    ) -> Result<Option<SpRecord>> {
        let row: Option<(String, String, String, i64)> =
            sqlx::query_as("SELECT app_id, sponsors, tags, created_at FROM service_principals WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.to_string())
                .bind(id.to_string())
                .fetch_optional(self.pool())
                .await?;
        let Some((app_id, sponsors, tags, created_at)) = row else {
            return Ok(None);
        };
        let app_id = Uuid::parse_str(&app_id).map_err(|e| DirectoryError::corrupt("appId", e))?;
        let Some(sp) = self.service_principal_by_app_id(tenant, &app_id).await? else {
            return Ok(None);
        };
        Ok(Some(SpRecord {
            sp,
            sponsors: serde_json::from_str(&sponsors).unwrap_or_default(),
            tags: serde_json::from_str(&tags).unwrap_or_default(),
            created_at,
        }))
    }

    /// Principals of a tenant, optionally of one kind, by creation.
    pub async fn service_principals(
        &self,
        tenant: &Uuid,
        kind: Option<SpKind>,
    ) -> Result<Vec<SpRecord>> {
        let ids: Vec<(String,)> = match kind {
            Some(k) => sqlx::query_as("SELECT id FROM service_principals WHERE tenant_id = $1 AND kind = $2 ORDER BY created_at, id")
                .bind(tenant.to_string())
                .bind(k.as_str())
                .fetch_all(self.pool())
                .await?,
            None => sqlx::query_as("SELECT id FROM service_principals WHERE tenant_id = $1 ORDER BY created_at, id")
                .bind(tenant.to_string())
                .fetch_all(self.pool())
                .await?,
        };
        let mut out = Vec::new();
        for (id,) in ids {
            if let Some(r) = self
                .service_principal_record(
                    tenant,
                    &Uuid::parse_str(&id).map_err(|e| DirectoryError::corrupt("id", e))?,
                )
                .await?
            {
                out.push(r);
            }
        }
        Ok(out)
    }

    pub async fn set_principal_enabled(&self, id: &Uuid, enabled: bool) -> Result<()> {
        sqlx::query("UPDATE service_principals SET account_enabled = $1 WHERE id = $2")
            .bind(enabled as i64)
            .bind(id.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Deletes a principal; a blueprint principal takes its agent identities with it.
    pub async fn delete_service_principal(&self, sp: &ServicePrincipal) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let t = sp.tenant_id.to_string();
        if sp.kind == SpKind::BlueprintPrincipal {
            let agents: Vec<(String,)> = sqlx::query_as(
                "SELECT id FROM service_principals WHERE tenant_id = $1 AND blueprint_app_id = $2",
            )
            .bind(&t)
            .bind(sp.app_id.to_string())
            .fetch_all(&mut *tx)
            .await?;
            for (agent,) in agents {
                delete_principal_rows(&mut tx, &t, &agent).await?;
            }
        }
        delete_principal_rows(&mut tx, &t, &sp.id.to_string()).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn grants(&self, tenant: &Uuid) -> Result<Vec<GrantRow>> {
        Ok(sqlx::query_as("SELECT id, client_id, consent_type, principal_key, resource_id, scope FROM oauth2_permission_grants WHERE tenant_id = $1 ORDER BY id")
            .bind(tenant.to_string())
            .fetch_all(self.pool())
            .await?)
    }

    pub async fn grant(&self, tenant: &Uuid, id: &str) -> Result<Option<GrantRow>> {
        Ok(sqlx::query_as("SELECT id, client_id, consent_type, principal_key, resource_id, scope FROM oauth2_permission_grants WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.to_string())
            .bind(id)
            .fetch_optional(self.pool())
            .await?)
    }

    pub async fn create_grant(&self, tenant: &Uuid, g: &GrantRow) -> Result<()> {
        sqlx::query("INSERT INTO oauth2_permission_grants (id, tenant_id, client_id, consent_type, principal_key, resource_id, scope) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&g.id)
            .bind(tenant.to_string())
            .bind(&g.client_id)
            .bind(&g.consent_type)
            .bind(&g.principal_key)
            .bind(&g.resource_id)
            .bind(&g.scope)
            .execute(self.pool())
            .await
            .map_err(|e| conflict(e, "Permission entry already exists."))?;
        Ok(())
    }

    pub async fn set_grant_scope(&self, id: &str, scope: &str) -> Result<()> {
        sqlx::query("UPDATE oauth2_permission_grants SET scope = $1 WHERE id = $2")
            .bind(scope)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn delete_grant(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM oauth2_permission_grants WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The service principal with this object id (any kind), including built-ins.
    pub async fn principal_by_object_id(
        &self,
        tenant: &Uuid,
        id: &Uuid,
    ) -> Result<Option<ServicePrincipal>> {
        Ok(self
            .service_principal_record(tenant, id)
            .await?
            .map(|r| r.sp))
    }

    pub async fn create_agent_user(
        &self,
        tenant: &Uuid,
        upn: &str,
        display_name: &str,
        parent: &Uuid,
        enabled: bool,
    ) -> Result<User> {
        let id = Uuid::new_v4();
        let mut tx = self.pool().begin().await?;
        let existing: Option<(String,)> =
            sqlx::query_as("SELECT id FROM users WHERE tenant_id = $1 AND identity_parent_id = $2")
                .bind(tenant.to_string())
                .bind(parent.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        if existing.is_some() {
            return Err(DirectoryError::Conflict(
                "The agent identity already has an agent user.".into(),
            ));
        }
        sqlx::query(
            "INSERT INTO users (id, tenant_id, kind, upn, upn_lower, display_name, account_enabled, identity_parent_id, roles, created_at) VALUES ($1, $2, 'agentUser', $3, $4, $5, $6, $7, '[]', $8)",
        )
        .bind(id.to_string())
        .bind(tenant.to_string())
        .bind(upn)
        .bind(upn.to_lowercase())
        .bind(display_name)
        .bind(enabled as i64)
        .bind(parent.to_string())
        .bind(crate::now())
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, "Another object with the same value for property userPrincipalName already exists."))?;
        tx.commit().await?;
        self.user_by_id(tenant, &id)
            .await?
            .ok_or_else(|| DirectoryError::NotFound("user".into()))
    }
}

/// Removes a principal and everything that names it (directory.md §2.8).
async fn delete_principal_rows(
    tx: &mut sqlx::AnyConnection,
    tenant: &str,
    sp_id: &str,
) -> Result<()> {
    let app_id: Option<(String,)> =
        sqlx::query_as("SELECT app_id FROM service_principals WHERE id = $1")
            .bind(sp_id)
            .fetch_optional(&mut *tx)
            .await?;
    sqlx::query("DELETE FROM oauth2_permission_grants WHERE client_id = $1 OR resource_id = $1")
        .bind(sp_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM app_role_assignments WHERE principal_id = $1 OR resource_id = $1")
        .bind(sp_id)
        .execute(&mut *tx)
        .await?;
    if let Some((app_id,)) = app_id {
        sqlx::query("DELETE FROM refresh_tokens WHERE tenant_id = $1 AND client_id = $2")
            .bind(tenant)
            .bind(&app_id)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM service_principals WHERE id = $1")
        .bind(sp_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

impl Store {
    /// Every user of a tenant (people and agent users), by creation, in one query.
    pub async fn users(&self, tenant: &Uuid) -> Result<Vec<User>> {
        let rows: Vec<crate::queries::UserRow> = sqlx::query_as(&format!(
            "SELECT {} FROM users WHERE tenant_id = $1 ORDER BY created_at, id",
            crate::queries::USER_COLS
        ))
        .bind(tenant.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(crate::queries::UserRow::into_model)
            .collect()
    }
}

/// An app role assignment as stored.
#[derive(Debug, Clone, FromRow)]
pub struct AssignmentRow {
    pub id: String,
    pub principal_id: String,
    pub principal_type: String,
    pub resource_id: String,
    pub app_role_id: String,
    pub created_at: i64,
}

impl Store {
    pub async fn create_assignment(&self, tenant: &Uuid, a: &AssignmentRow) -> Result<()> {
        sqlx::query("INSERT INTO app_role_assignments (id, tenant_id, principal_id, principal_type, resource_id, app_role_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&a.id)
            .bind(tenant.to_string())
            .bind(&a.principal_id)
            .bind(&a.principal_type)
            .bind(&a.resource_id)
            .bind(&a.app_role_id)
            .bind(a.created_at)
            .execute(self.pool())
            .await
            .map_err(|e| conflict(e, "Permission being assigned already exists on the object."))?;
        Ok(())
    }

    /// Assignments where `id` is the principal (`by_resource` false) or the resource (true).
    pub async fn assignments(
        &self,
        tenant: &Uuid,
        id: &Uuid,
        by_resource: bool,
    ) -> Result<Vec<AssignmentRow>> {
        let sql = if by_resource {
            "SELECT id, principal_id, principal_type, resource_id, app_role_id, created_at FROM app_role_assignments WHERE tenant_id = $1 AND resource_id = $2 ORDER BY created_at, id"
        } else {
            "SELECT id, principal_id, principal_type, resource_id, app_role_id, created_at FROM app_role_assignments WHERE tenant_id = $1 AND principal_id = $2 ORDER BY created_at, id"
        };
        Ok(sqlx::query_as(sql)
            .bind(tenant.to_string())
            .bind(id.to_string())
            .fetch_all(self.pool())
            .await?)
    }

    pub async fn delete_assignment(&self, tenant: &Uuid, id: &str) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM app_role_assignments WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.to_string())
                .bind(id)
                .execute(self.pool())
                .await?
                .rows_affected()
                == 1,
        )
    }
}

/// A trusted issuer as the extension API shows it.
#[derive(Debug, Clone, FromRow)]
pub struct TrustedIssuerRow {
    pub id: String,
    pub issuer: String,
    pub jwks: Option<String>,
    pub allow_http: i64,
    pub description: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// PEM CA certificates for the issuer's discovery and JWKS endpoints.
    pub ca_bundle: Option<String>,
}

const TI_COLS: &str =
    "id, issuer, jwks, allow_http, description, created_at, updated_at, ca_bundle";

impl Store {
    pub async fn trusted_issuers(&self, tenant: &Uuid) -> Result<Vec<TrustedIssuerRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {TI_COLS} FROM trusted_issuers WHERE tenant_id = $1 ORDER BY created_at, id"
        ))
        .bind(tenant.to_string())
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn trusted_issuer_by_id(
        &self,
        tenant: &Uuid,
        id: &str,
    ) -> Result<Option<TrustedIssuerRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {TI_COLS} FROM trusted_issuers WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant.to_string())
        .bind(id)
        .fetch_optional(self.pool())
        .await?)
    }

    pub async fn put_trusted_issuer(
        &self,
        tenant: &Uuid,
        t: &TrustedIssuerRow,
        create: bool,
    ) -> Result<()> {
        let q = if create {
            sqlx::query("INSERT INTO trusted_issuers (id, tenant_id, issuer, jwks, allow_http, description, created_at, updated_at, ca_bundle) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                .bind(&t.id)
                .bind(tenant.to_string())
                .bind(&t.issuer)
                .bind(&t.jwks)
                .bind(t.allow_http)
                .bind(&t.description)
                .bind(t.created_at)
                .bind(t.updated_at)
                .bind(&t.ca_bundle)
        } else {
            sqlx::query("UPDATE trusted_issuers SET jwks = $1, allow_http = $2, description = $3, updated_at = $4, ca_bundle = $5 WHERE id = $6 AND tenant_id = $7")
                .bind(&t.jwks)
                .bind(t.allow_http)
                .bind(&t.description)
                .bind(t.updated_at)
                .bind(&t.ca_bundle)
                .bind(&t.id)
                .bind(tenant.to_string())
        };
        q.execute(self.pool())
            .await
            .map_err(|e| conflict(e, "A trusted issuer with the same issuer already exists."))?;
        Ok(())
    }

    pub async fn delete_trusted_issuer(&self, tenant: &Uuid, id: &str) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM trusted_issuers WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.to_string())
                .bind(id)
                .execute(self.pool())
                .await?
                .rows_affected()
                == 1,
        )
    }
}

/// Profile properties settable through the Graph API.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub display_name: Option<String>,
    pub given_name: Option<Option<String>>,
    pub surname: Option<Option<String>>,
    pub mail: Option<Option<String>>,
    pub account_enabled: Option<bool>,
    /// Argon2id PHC string of a new password.
    pub password_hash: Option<String>,
}

impl Store {
    pub async fn create_user(
        &self,
        tenant: &Uuid,
        upn: &str,
        display_name: &str,
        password_hash: &str,
        enabled: bool,
        patch: &UserPatch,
    ) -> Result<User> {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO users (id, tenant_id, kind, upn, upn_lower, display_name, given_name, surname, mail, account_enabled, password_hash, roles, created_at) \
             VALUES ($1, $2, 'user', $3, $4, $5, $6, $7, $8, $9, $10, '[]', $11)",
        )
        .bind(id.to_string())
        .bind(tenant.to_string())
        .bind(upn)
        .bind(upn.to_lowercase())
        .bind(display_name)
        .bind(patch.given_name.clone().flatten())
        .bind(patch.surname.clone().flatten())
        .bind(patch.mail.clone().flatten())
        .bind(enabled as i64)
        .bind(password_hash)
        .bind(crate::now())
        .execute(self.pool())
        .await
        .map_err(|e| conflict(e, "Another object with the same value for property userPrincipalName already exists."))?;
        self.user_by_id(tenant, &id)
            .await?
            .ok_or_else(|| DirectoryError::NotFound("user".into()))
    }

    /// Applies a patch; a new password or disabling the account revokes existing sessions.
    pub async fn update_user(&self, user: &User, p: &UserPatch) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let id = user.id.to_string();
        if let Some(v) = &p.display_name {
            sqlx::query("UPDATE users SET display_name = $1 WHERE id = $2")
                .bind(v)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        for (col, v) in [
            ("given_name", &p.given_name),
            ("surname", &p.surname),
            ("mail", &p.mail),
        ] {
            if let Some(v) = v {
                sqlx::query(&format!("UPDATE users SET {col} = $1 WHERE id = $2"))
                    .bind(v.clone())
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let revoke = p.password_hash.is_some() || p.account_enabled == Some(false);
        if let Some(e) = p.account_enabled {
            sqlx::query("UPDATE users SET account_enabled = $1 WHERE id = $2")
                .bind(e as i64)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(h) = &p.password_hash {
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                .bind(h)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        if revoke {
            sqlx::query("UPDATE users SET sessions_revoked_at = $1 WHERE id = $2")
                .bind(crate::now())
                .bind(&id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn revoke_sessions(&self, user: &Uuid) -> Result<()> {
        sqlx::query("UPDATE users SET sessions_revoked_at = $1 WHERE id = $2")
            .bind(crate::now())
            .bind(user.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Deletes a user with its grants, assignments and refresh tokens (directory.md §2.8).
    pub async fn delete_user(&self, user: &User) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let id = user.id.to_string();
        sqlx::query("DELETE FROM oauth2_permission_grants WHERE consent_type = 'Principal' AND principal_key = $1").bind(&id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM app_role_assignments WHERE principal_id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM refresh_tokens WHERE user_id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_inheritable_permissions(
        &self,
        app: &Application,
        perms: &[InheritablePermission],
    ) -> Result<()> {
        sqlx::query("UPDATE applications SET inheritable_permissions = $1 WHERE id = $2")
            .bind(serde_json::to_string(perms).expect("json"))
            .bind(app.id.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

impl Store {
    /// Replaces an application's `owners` or `sponsors` (object ids).
    pub async fn set_app_people(&self, app: &Uuid, column: People, ids: &[String]) -> Result<()> {
        sqlx::query(&format!(
            "UPDATE applications SET {} = $1 WHERE id = $2",
            column.as_str()
        ))
        .bind(serde_json::to_string(ids).expect("json"))
        .bind(app.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Replaces an agent identity's sponsors.
    pub async fn set_principal_sponsors(&self, sp: &Uuid, ids: &[String]) -> Result<()> {
        sqlx::query("UPDATE service_principals SET sponsors = $1 WHERE id = $2")
            .bind(serde_json::to_string(ids).expect("json"))
            .bind(sp.to_string())
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

/// Which list of people an application keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum People {
    Owners,
    Sponsors,
}

impl People {
    fn as_str(self) -> &'static str {
        match self {
            People::Owners => "owners",
            People::Sponsors => "sponsors",
        }
    }
}

impl Store {
    /// Redirect URIs (web, spa and public client lists together) and the public-client flag.
    pub async fn set_redirects(
        &self,
        app: &Uuid,
        uris: Option<&[RedirectUri]>,
        public_client: Option<bool>,
    ) -> Result<()> {
        if let Some(u) = uris {
            let u: Vec<&str> = u.iter().map(RedirectUri::as_str).collect();
            sqlx::query("UPDATE applications SET redirect_uris = $1 WHERE id = $2")
                .bind(serde_json::to_string(&u).expect("json"))
                .bind(app.to_string())
                .execute(self.pool())
                .await?;
        }
        if let Some(p) = public_client {
            sqlx::query("UPDATE applications SET is_public_client = $1 WHERE id = $2")
                .bind(p as i64)
                .bind(app.to_string())
                .execute(self.pool())
                .await?;
        }
        Ok(())
    }
}
