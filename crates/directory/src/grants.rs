//! Delegated permission grants (`oauth2PermissionGrants`, docs/directory.md §2.6): the only code
//! that writes the `oauth2_permission_grants` table. Graph, tenant files and the consent page
//! all go through [`insert`] and [`set_scope`].

use crate::error::{DirectoryError, Result, is_unique_violation};
use crate::model::Resource;
use crate::store::{AnyConnection, Store};
use sqlx::FromRow;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// One grant per (client, resource, consent type, principal).
    #[error("Permission entry already exists.")]
    Exists,
    /// A scope that is not an enabled delegated permission of the resource.
    #[error("'{scope}' is not a delegated permission of {resource}.")]
    UnknownScope {
        index: usize,
        scope: String,
        resource: String,
    },
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

/// OpenID Connect scopes: granted on Microsoft Graph, which exposes no such permission.
pub const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// A grant's scope string for `resource`: each scope an enabled delegated permission of it (or
/// an OIDC scope on Graph), repeats dropped (case-insensitively), joined by spaces.
pub fn normalize_scope<'a>(
    resource: &Resource,
    scopes: impl IntoIterator<Item = &'a str>,
) -> Result<String, GrantError> {
    let mut out: Vec<&str> = Vec::new();
    for (index, s) in scopes.into_iter().enumerate() {
        let oidc = resource.is_graph() && OIDC_SCOPES.iter().any(|o| o.eq_ignore_ascii_case(s));
        if !oidc
            && !resource
                .scopes
                .iter()
                .any(|d| d.is_enabled && d.value.eq_ignore_ascii_case(s))
        {
            return Err(GrantError::UnknownScope {
                index,
                scope: s.to_string(),
                resource: resource.display_name.clone(),
            });
        }
        if !out.iter().any(|x| x.eq_ignore_ascii_case(s)) {
            out.push(s);
        }
    }
    Ok(out.join(" "))
}

impl From<GrantError> for DirectoryError {
    fn from(e: GrantError) -> Self {
        match e {
            GrantError::Directory(d) => d,
            other => DirectoryError::Conflict(other.to_string()),
        }
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct GrantRow {
    pub id: String,
    pub client_id: String,
    pub consent_type: String,
    /// The user's object id for `Principal` grants; empty for `AllPrincipals`.
    pub principal_key: String,
    pub resource_id: String,
    pub scope: String,
}

/// A new grant id: 32 random bytes, base64url (the shape of Entra's grant ids).
pub fn new_grant_id() -> String {
    crate::secrets::random_token()
}

pub async fn insert(
    conn: &mut AnyConnection,
    tenant: &Uuid,
    g: &GrantRow,
) -> Result<(), GrantError> {
    sqlx::query("INSERT INTO oauth2_permission_grants (id, tenant_id, client_id, consent_type, principal_key, resource_id, scope) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(&g.id)
        .bind(tenant.to_string())
        .bind(&g.client_id)
        .bind(&g.consent_type)
        .bind(&g.principal_key)
        .bind(&g.resource_id)
        .bind(&g.scope)
        .execute(&mut *conn)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                GrantError::Exists
            } else {
                GrantError::Directory(e.into())
            }
        })?;
    Ok(())
}

pub async fn set_scope(conn: &mut AnyConnection, id: &str, scope: &str) -> Result<()> {
    sqlx::query("UPDATE oauth2_permission_grants SET scope = $1 WHERE id = $2")
        .bind(scope)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The grant for (client, resource, consent type, principal), if there is one.
pub async fn find(
    conn: &mut AnyConnection,
    client_sp: &str,
    resource_sp: &str,
    consent_type: &str,
    principal_key: &str,
) -> Result<Option<GrantRow>> {
    Ok(sqlx::query_as(
        "SELECT id, client_id, consent_type, principal_key, resource_id, scope FROM oauth2_permission_grants \
         WHERE client_id = $1 AND resource_id = $2 AND consent_type = $3 AND principal_key = $4",
    )
    .bind(client_sp)
    .bind(resource_sp)
    .bind(consent_type)
    .bind(principal_key)
    .fetch_optional(&mut *conn)
    .await?)
}

impl Store {
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
        let mut tx = self.begin_write().await?;
        insert(&mut tx, tenant, g).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_grant_scope(&self, id: &str, scope: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        set_scope(&mut tx, id, scope).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a grant; in the same transaction the feed lists it as revoked and the tenant's
    /// revocation version is bumped (docs/sts.md §17), so readers refuse the delegated tokens
    /// issued under it.
    pub async fn delete_grant(&self, id: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        crate::revocations::on_grant_deleted(&mut tx, id).await?;
        sqlx::query("DELETE FROM oauth2_permission_grants WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds scopes to the (client, resource, consent type, principal) grant, creating it if
    /// needed (the consent page).
    pub async fn merge_grant(
        &self,
        tenant: &Uuid,
        client_sp: &str,
        resource_sp: &str,
        consent_type: &str,
        principal: &str,
        scopes: &[String],
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        match find(&mut tx, client_sp, resource_sp, consent_type, principal).await? {
            Some(g) => {
                let mut all: Vec<String> = g
                    .scope
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                for s in scopes {
                    if !all.iter().any(|x| x.eq_ignore_ascii_case(s)) {
                        all.push(s.clone());
                    }
                }
                set_scope(&mut tx, &g.id, &all.join(" ")).await?;
            }
            None => {
                let g = GrantRow {
                    id: new_grant_id(),
                    client_id: client_sp.to_string(),
                    consent_type: consent_type.to_string(),
                    principal_key: principal.to_string(),
                    resource_id: resource_sp.to_string(),
                    scope: scopes.join(" "),
                };
                insert(&mut tx, tenant, &g).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
