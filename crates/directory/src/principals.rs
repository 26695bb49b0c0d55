//! Service principals, blueprint principals, agent identities and the built-in principals
//! (docs/directory.md §2.5): the only code that writes the `service_principals` table, and the
//! cascade that removes a principal with everything naming it (docs/directory.md §2.8).

use crate::error::{DirectoryError, Result, is_unique_violation};
use crate::model::{AppKind, Application, ServicePrincipal, SpKind};
use crate::store::uuid;
use crate::store::{AnyConnection, Changes, Store};
use sqlx::FromRow;
use uuid::Uuid;

/// Agent identities a blueprint may have (docs/directory.md §2.1).
pub const MAX_AGENTS_PER_BLUEPRINT: i64 = 250;

#[derive(Debug, thiserror::Error)]
pub enum PrincipalError {
    /// The application already has its principal (or the id is taken).
    #[error("The service principal for this application already exists.")]
    Exists,
    #[error("The blueprint has reached its limit of 250 agent identities.")]
    AgentLimit,
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

impl From<sqlx::Error> for PrincipalError {
    fn from(e: sqlx::Error) -> Self {
        if is_unique_violation(&e) {
            PrincipalError::Exists
        } else {
            PrincipalError::Directory(e.into())
        }
    }
}

impl From<PrincipalError> for DirectoryError {
    fn from(e: PrincipalError) -> Self {
        match e {
            PrincipalError::Directory(d) => d,
            other => DirectoryError::Conflict(other.to_string()),
        }
    }
}

/// A principal row as it is first written. An agent identity's appId is its own id.
#[derive(Debug, Clone)]
pub struct NewPrincipal<'a> {
    pub id: Uuid,
    pub app_id: Uuid,
    pub kind: SpKind,
    pub display_name: &'a str,
    pub enabled: bool,
    /// Agent identities: the parent blueprint's appId.
    pub blueprint_app_id: Option<Uuid>,
    pub sponsors: &'a [String],
}

/// Properties to change; `None` leaves a property as it is.
#[derive(Debug, Clone, Default)]
pub struct PrincipalPatch {
    pub display_name: Option<String>,
    pub account_enabled: Option<bool>,
    pub sponsors: Option<Vec<String>>,
}

/// A principal with the properties only the Graph API shows.
#[derive(Debug, Clone)]
pub struct SpRecord {
    pub sp: ServicePrincipal,
    pub sponsors: Vec<String>,
    pub tags: Vec<String>,
    pub created_at: i64,
}

pub async fn insert(
    conn: &mut AnyConnection,
    tenant: &Uuid,
    p: &NewPrincipal<'_>,
) -> Result<(), PrincipalError> {
    sqlx::query(
        "INSERT INTO service_principals (id, tenant_id, app_id, kind, display_name, account_enabled, blueprint_app_id, sponsors, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(p.id.to_string())
    .bind(tenant.to_string())
    .bind(p.app_id.to_string())
    .bind(p.kind.as_str())
    .bind(p.display_name)
    .bind(p.enabled as i64)
    .bind(p.blueprint_app_id.map(|b| b.to_string()))
    .bind(serde_json::to_string(p.sponsors).expect("json"))
    .bind(crate::now())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn changes(p: &PrincipalPatch) -> Changes {
    let mut c = Changes::default();
    if let Some(v) = &p.display_name {
        c.text("display_name", v.clone());
    }
    if let Some(v) = p.account_enabled {
        c.int("account_enabled", Some(v as i64));
    }
    if let Some(v) = &p.sponsors {
        c.json("sponsors", v);
    }
    c
}

/// Applies a patch; disabling or re-enabling an agent identity or blueprint bumps the
/// tenant's revocation version in the same transaction (docs/sts.md §17).
pub async fn update(conn: &mut AnyConnection, id: &Uuid, p: &PrincipalPatch) -> Result<()> {
    if let Some(enabled) = p.account_enabled {
        crate::revocations::on_principal_enabled(conn, &id.to_string(), enabled).await?;
    }
    changes(p)
        .apply(conn, "service_principals", &id.to_string())
        .await?;
    Ok(())
}

/// [`update`] for the principal of the application `app_id`, if it has one.
pub async fn update_of_app(
    conn: &mut AnyConnection,
    tenant: &Uuid,
    app_id: &Uuid,
    p: &PrincipalPatch,
) -> Result<()> {
    if let Some(enabled) = p.account_enabled {
        let sp: Option<(String,)> = sqlx::query_as(
            "SELECT id FROM service_principals WHERE tenant_id = $1 AND app_id = $2",
        )
        .bind(tenant.to_string())
        .bind(app_id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        if let Some((sp,)) = sp {
            crate::revocations::on_principal_enabled(conn, &sp, enabled).await?;
        }
    }
    changes(p)
        .apply_where(
            conn,
            "service_principals",
            &[
                ("tenant_id", &tenant.to_string()),
                ("app_id", &app_id.to_string()),
            ],
        )
        .await?;
    Ok(())
}

/// Removes a principal and everything that names it (docs/directory.md §2.8).
pub(crate) async fn delete_rows(conn: &mut AnyConnection, tenant: &str, sp_id: &str) -> Result<()> {
    // The feed lists a deleted agent or blueprint until its tokens have expired (docs/sts.md §17).
    crate::revocations::on_principal_deleted(conn, sp_id).await?;
    let app_id: Option<(String,)> =
        sqlx::query_as("SELECT app_id FROM service_principals WHERE id = $1")
            .bind(sp_id)
            .fetch_optional(&mut *conn)
            .await?;
    sqlx::query("DELETE FROM oauth2_permission_grants WHERE client_id = $1 OR resource_id = $1")
        .bind(sp_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM app_role_assignments WHERE principal_id = $1 OR resource_id = $1")
        .bind(sp_id)
        .execute(&mut *conn)
        .await?;
    if let Some((app_id,)) = app_id {
        sqlx::query("DELETE FROM refresh_tokens WHERE tenant_id = $1 AND client_id = $2")
            .bind(tenant)
            .bind(&app_id)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query("DELETE FROM service_principals WHERE id = $1")
        .bind(sp_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Removes every agent identity of the blueprint `blueprint_app_id`.
pub(crate) async fn delete_agents_of(
    conn: &mut AnyConnection,
    tenant: &str,
    blueprint_app_id: &str,
) -> Result<()> {
    let agents: Vec<(String,)> = sqlx::query_as(
        "SELECT id FROM service_principals WHERE tenant_id = $1 AND blueprint_app_id = $2",
    )
    .bind(tenant)
    .bind(blueprint_app_id)
    .fetch_all(&mut *conn)
    .await?;
    for (agent,) in agents {
        delete_rows(conn, tenant, &agent).await?;
    }
    Ok(())
}

#[derive(FromRow)]
pub(crate) struct SpRow {
    id: String,
    tenant_id: String,
    app_id: String,
    kind: String,
    display_name: String,
    account_enabled: i64,
    blueprint_app_id: Option<String>,
}

pub(crate) const SP_COLS: &str =
    "id, tenant_id, app_id, kind, display_name, account_enabled, blueprint_app_id";

impl SpRow {
    pub(crate) fn into_model(self) -> Result<ServicePrincipal> {
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

impl Store {
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

    /// Creates the principal of an application (a blueprint's is a blueprint principal).
    pub async fn create_service_principal(&self, app: &Application) -> Result<ServicePrincipal> {
        let kind = if app.kind == AppKind::Blueprint {
            SpKind::BlueprintPrincipal
        } else {
            SpKind::ServicePrincipal
        };
        let new = NewPrincipal {
            id: Uuid::new_v4(),
            app_id: app.app_id,
            kind,
            display_name: &app.display_name,
            enabled: true,
            blueprint_app_id: None,
            sponsors: &[],
        };
        let mut tx = self.begin_write().await?;
        insert(&mut tx, &app.tenant_id, &new).await?;
        tx.commit().await?;
        self.service_principal_by_app_id(&app.tenant_id, &app.app_id)
            .await?
            .ok_or_else(|| DirectoryError::NotFound("service principal".into()))
    }

    /// Creates an agent identity under a blueprint; at most [`MAX_AGENTS_PER_BLUEPRINT`].
    pub async fn create_agent_identity(
        &self,
        tenant: &Uuid,
        display_name: &str,
        blueprint: &Uuid,
        sponsors: &[String],
    ) -> Result<ServicePrincipal, PrincipalError> {
        let mut tx = self.begin_write().await?;
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM service_principals WHERE tenant_id = $1 AND blueprint_app_id = $2")
            .bind(tenant.to_string())
            .bind(blueprint.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(DirectoryError::from)?;
        if n >= MAX_AGENTS_PER_BLUEPRINT {
            return Err(PrincipalError::AgentLimit);
        }
        let id = Uuid::new_v4();
        let new = NewPrincipal {
            id,
            app_id: id,
            kind: SpKind::AgentIdentity,
            display_name,
            enabled: true,
            blueprint_app_id: Some(*blueprint),
            sponsors,
        };
        insert(&mut tx, tenant, &new).await?;
        tx.commit().await.map_err(DirectoryError::from)?;
        Ok(self
            .service_principal_by_app_id(tenant, &id)
            .await?
            .ok_or_else(|| DirectoryError::NotFound("agent identity".into()))?)
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

    pub async fn update_principal(&self, id: &Uuid, p: &PrincipalPatch) -> Result<()> {
        let mut tx = self.begin_write().await?;
        update(&mut tx, id, p).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a principal; a blueprint principal takes its agent identities with it.
    pub async fn delete_service_principal(&self, sp: &ServicePrincipal) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let t = sp.tenant_id.to_string();
        if sp.kind == SpKind::BlueprintPrincipal {
            delete_agents_of(&mut tx, &t, &sp.app_id.to_string()).await?;
        }
        delete_rows(&mut tx, &t, &sp.id.to_string()).await?;
        tx.commit().await?;
        Ok(())
    }
}
