//! App role assignments (docs/directory.md §2.6): the only code that writes the
//! `app_role_assignments` table, for the Graph API and tenant files.

use crate::error::Result;
use crate::model::{AppRole, Resource};
use crate::store::uuid;
use crate::store::{AnyConnection, Store};
use sqlx::FromRow;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum AssignmentError {
    /// One assignment per (principal, resource, role).
    #[error("Permission being assigned already exists on the object.")]
    Exists,
    /// No enabled role with that id (or value) that this kind of principal may hold.
    #[error("Permission being assigned was not found on application.")]
    RoleNotFound,
    /// Blueprints hold `AgentIdentity.CreateAsManager` implicitly (docs/directory.md §2.6).
    #[error("AgentIdentity.CreateAsManager is implicit for blueprints and cannot be assigned.")]
    ImplicitRole,
    #[error(transparent)]
    Directory(#[from] crate::DirectoryError),
}

/// The role of `resource` that `pick` selects, if it may be assigned: enabled, open to
/// `member` (`User` or `Application`) when given, and not the implicit blueprint role.
pub fn assignable_role<'r>(
    resource: &'r Resource,
    member: Option<&str>,
    pick: impl Fn(&AppRole) -> bool,
) -> Result<&'r AppRole, AssignmentError> {
    let role = resource
        .app_roles
        .iter()
        .find(|r| {
            pick(r)
                && r.is_enabled
                && member.is_none_or(|m| r.allowed_member_types.iter().any(|t| t == m))
        })
        .ok_or(AssignmentError::RoleNotFound)?;
    if role.value == "AgentIdentity.CreateAsManager" {
        return Err(AssignmentError::ImplicitRole);
    }
    Ok(role)
}

impl From<AssignmentError> for crate::DirectoryError {
    fn from(e: AssignmentError) -> Self {
        match e {
            AssignmentError::Directory(d) => d,
            other => crate::DirectoryError::Conflict(other.to_string()),
        }
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

/// Writes an assignment; [`AssignmentError::Exists`] when the principal already has the role
/// on the resource. The statement does not fail on a duplicate, so a transaction that goes on
/// (a tenant file re-applied) stays usable on PostgreSQL.
pub async fn insert(
    conn: &mut AnyConnection,
    tenant: &Uuid,
    a: &AssignmentRow,
) -> Result<(), AssignmentError> {
    let inserted = sqlx::query(
        "INSERT INTO app_role_assignments (id, tenant_id, principal_id, principal_type, resource_id, app_role_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (principal_id, resource_id, app_role_id) DO NOTHING",
    )
    .bind(&a.id)
    .bind(tenant.to_string())
    .bind(&a.principal_id)
    .bind(&a.principal_type)
    .bind(&a.resource_id)
    .bind(&a.app_role_id)
    .bind(a.created_at)
    .execute(&mut *conn)
    .await
    .map_err(crate::DirectoryError::from)?
    .rows_affected();
    if inserted == 1 {
        Ok(())
    } else {
        Err(AssignmentError::Exists)
    }
}

impl Store {
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

    pub async fn create_assignment(&self, tenant: &Uuid, a: &AssignmentRow) -> Result<()> {
        let mut tx = self.begin_write().await?;
        insert(&mut tx, tenant, a).await?;
        tx.commit().await?;
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
