//! Applications and agent identity blueprints (docs/directory.md §2.3): what they may hold
//! ([`uris`], [`check_permission_value`]) and the only code that writes the `applications`
//! and `identifier_uris` tables. Graph and tenant files call [`insert`], [`update`] and
//! [`claim_identifier_uris`]; the [`Store`] methods wrap them in one transaction each.

mod uris;

pub use uris::*;

use crate::builtin;
use crate::error::{DirectoryError, Result, is_unique_violation};
use crate::model::{
    AppKind, AppRole, Application, InheritablePermission, PermissionScope, normalize_uri,
};
use crate::model::{ServicePrincipal, SpKind};
use crate::store::{AnyConnection, Changes, Store};
use crate::store::{json, uuid};
use sqlx::FromRow;
use uuid::Uuid;

/// Blueprints a tenant may hold (docs/directory.md §2.1).
pub const MAX_BLUEPRINTS_PER_TENANT: i64 = 250;

#[derive(Debug, thiserror::Error)]
pub enum ApplicationError {
    /// The URI is one of a Microsoft built-in application's.
    #[error("The identifier URI '{uri}' is already in use.")]
    IdentifierUriBuiltIn { index: usize, uri: String },
    /// Another application of the tenant holds the URI (compared normalised).
    #[error(
        "Another object with the same value for property identifierUris already exists: '{uri}'."
    )]
    IdentifierUriTaken { index: usize, uri: String },
    #[error("The tenant has reached its limit of 250 agent identity blueprints.")]
    BlueprintLimit,
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

impl From<sqlx::Error> for ApplicationError {
    fn from(e: sqlx::Error) -> Self {
        ApplicationError::Directory(e.into())
    }
}

impl From<ApplicationError> for DirectoryError {
    fn from(e: ApplicationError) -> Self {
        match e {
            ApplicationError::Directory(d) => d,
            other => DirectoryError::Conflict(other.to_string()),
        }
    }
}

/// A scope or app role `value` that is not 1–120 characters without spaces, not starting
/// with `.`, or that repeats another of the application (compared case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermissionValueError {
    #[error(
        "'{0}' is not a valid permission value (1–120 characters, no spaces, not starting with '.')."
    )]
    Invalid(String),
    #[error("Duplicate permission value '{0}'.")]
    Duplicate(String),
    /// Entra's rule: an enabled permission is disabled before it is removed or renamed.
    #[error("Permission (scope or role) cannot be deleted or updated unless disabled first.")]
    EnabledChanged,
}

/// Every enabled scope of `old` is still in `new`, with the same id and value.
pub fn check_enabled_scopes_kept(
    old: &[PermissionScope],
    new: &[PermissionScope],
) -> Result<(), PermissionValueError> {
    for o in old.iter().filter(|s| s.is_enabled) {
        if !new.iter().any(|n| n.id == o.id && n.value == o.value) {
            return Err(PermissionValueError::EnabledChanged);
        }
    }
    Ok(())
}

/// Entra's rule for a scope or role `value`.
pub fn check_permission_value(v: &str) -> Result<(), PermissionValueError> {
    if v.is_empty() || v.len() > 120 || v.contains(' ') || v.starts_with('.') {
        return Err(PermissionValueError::Invalid(v.to_string()));
    }
    Ok(())
}

/// Every value valid and none repeated; the index and error of the first that is not.
pub fn check_permission_values<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<(), (usize, PermissionValueError)> {
    let mut seen = std::collections::HashSet::new();
    for (i, v) in values.into_iter().enumerate() {
        check_permission_value(v).map_err(|e| (i, e))?;
        if !seen.insert(v.to_lowercase()) {
            return Err((i, PermissionValueError::Duplicate(v.to_string())));
        }
    }
    Ok(())
}

/// An application row as it is first written; identifier URIs follow with
/// [`claim_identifier_uris`].
#[derive(Debug, Clone)]
pub struct NewApplication<'a> {
    pub id: Uuid,
    pub app_id: Uuid,
    pub kind: AppKind,
    pub display_name: &'a str,
    pub scopes: &'a [PermissionScope],
    pub app_roles: &'a [AppRole],
    pub access_token_version: Option<i64>,
    pub is_public_client: bool,
    pub redirect_uris: &'a [RedirectUri],
    pub inheritable_permissions: &'a [InheritablePermission],
    pub owners: &'a [String],
    pub sponsors: &'a [String],
    pub signing_alg: &'a str,
}

/// Properties to change; `None` leaves a property as it is.
#[derive(Debug, Clone, Default)]
pub struct ApplicationPatch {
    pub display_name: Option<String>,
    pub identifier_uris: Option<Vec<IdentifierUri>>,
    pub scopes: Option<Vec<PermissionScope>>,
    pub app_roles: Option<Vec<AppRole>>,
    pub access_token_version: Option<Option<i64>>,
    pub optional_claims: Option<Option<serde_json::Value>>,
    pub required_resource_access: Option<serde_json::Value>,
    pub is_public_client: Option<bool>,
    pub redirect_uris: Option<Vec<RedirectUri>>,
    pub inheritable_permissions: Option<Vec<InheritablePermission>>,
    pub owners: Option<Vec<String>>,
    pub sponsors: Option<Vec<String>>,
    pub signing_alg: Option<String>,
}

fn uri_strings(uris: &[RedirectUri]) -> Vec<&str> {
    uris.iter().map(RedirectUri::as_str).collect()
}

/// Writes a new application row (without identifier URIs).
pub async fn insert(
    conn: &mut AnyConnection,
    tenant: &Uuid,
    a: &NewApplication<'_>,
) -> Result<(), ApplicationError> {
    sqlx::query(
        "INSERT INTO applications (id, tenant_id, app_id, kind, display_name, identifier_uris, scopes, app_roles, \
         access_token_version, is_public_client, redirect_uris, inheritable_permissions, owners, sponsors, signing_alg, created_at) \
         VALUES ($1, $2, $3, $4, $5, '[]', $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(a.id.to_string())
    .bind(tenant.to_string())
    .bind(a.app_id.to_string())
    .bind(a.kind.as_str())
    .bind(a.display_name)
    .bind(serde_json::to_string(a.scopes).expect("json"))
    .bind(serde_json::to_string(a.app_roles).expect("json"))
    .bind(a.access_token_version)
    .bind(a.is_public_client as i64)
    .bind(serde_json::to_string(&uri_strings(a.redirect_uris)).expect("json"))
    .bind(serde_json::to_string(a.inheritable_permissions).expect("json"))
    .bind(serde_json::to_string(a.owners).expect("json"))
    .bind(serde_json::to_string(a.sponsors).expect("json"))
    .bind(a.signing_alg)
    .bind(crate::now())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Applies a patch to the application with object id `id` and appId `app_id`, in one
/// statement plus, when the identifier URIs change, their index.
pub async fn update(
    conn: &mut AnyConnection,
    tenant: &Uuid,
    id: &Uuid,
    app_id: &Uuid,
    p: &ApplicationPatch,
) -> Result<(), ApplicationError> {
    let mut c = Changes::default();
    if let Some(v) = &p.display_name {
        c.text("display_name", v.clone());
    }
    if let Some(v) = &p.scopes {
        c.json("scopes", v);
    }
    if let Some(v) = &p.app_roles {
        c.json("app_roles", v);
    }
    if let Some(v) = p.access_token_version {
        c.int("access_token_version", v);
    }
    if let Some(v) = &p.optional_claims {
        c.text("optional_claims", v.as_ref().map(|v| v.to_string()));
    }
    if let Some(v) = &p.required_resource_access {
        c.text("required_resource_access", v.to_string());
    }
    if let Some(v) = p.is_public_client {
        c.int("is_public_client", Some(v as i64));
    }
    if let Some(v) = &p.redirect_uris {
        c.json("redirect_uris", &uri_strings(v));
    }
    if let Some(v) = &p.inheritable_permissions {
        c.json("inheritable_permissions", v);
    }
    if let Some(v) = &p.owners {
        c.json("owners", v);
    }
    if let Some(v) = &p.sponsors {
        c.json("sponsors", v);
    }
    if let Some(v) = &p.signing_alg {
        c.text("signing_alg", v.clone());
    }
    c.apply(conn, "applications", &id.to_string()).await?;
    if let Some(uris) = &p.identifier_uris {
        claim_identifier_uris(conn, tenant, id, app_id, uris).await?;
    }
    Ok(())
}

/// Makes `uris` the application's identifier URIs: none may be a built-in's, and none may be
/// held by another application of the tenant (the `identifier_uris` index enforces it).
pub async fn claim_identifier_uris(
    conn: &mut AnyConnection,
    tenant: &Uuid,
    id: &Uuid,
    app_id: &Uuid,
    uris: &[IdentifierUri],
) -> Result<(), ApplicationError> {
    let uris: Vec<&str> = uris.iter().map(IdentifierUri::as_str).collect();
    for (index, u) in uris.iter().enumerate() {
        let n = normalize_uri(u);
        if builtin::BUILT_INS
            .iter()
            .any(|b| b.identifier_uris.iter().any(|x| normalize_uri(x) == n))
        {
            return Err(ApplicationError::IdentifierUriBuiltIn {
                index,
                uri: u.to_string(),
            });
        }
    }
    sqlx::query("UPDATE applications SET identifier_uris = $1 WHERE id = $2")
        .bind(serde_json::to_string(&uris).expect("json"))
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM identifier_uris WHERE tenant_id = $1 AND app_id = $2")
        .bind(tenant.to_string())
        .bind(app_id.to_string())
        .execute(&mut *conn)
        .await?;
    for (index, u) in uris.iter().enumerate() {
        sqlx::query(
            "INSERT INTO identifier_uris (tenant_id, uri_norm, app_id) VALUES ($1, $2, $3)",
        )
        .bind(tenant.to_string())
        .bind(normalize_uri(u))
        .bind(app_id.to_string())
        .execute(&mut *conn)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                ApplicationError::IdentifierUriTaken {
                    index,
                    uri: u.to_string(),
                }
            } else {
                e.into()
            }
        })?;
    }
    Ok(())
}

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

/// Which list of people an application keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum People {
    Owners,
    Sponsors,
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

impl Store {
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
        let rows: Vec<AppRow> = sqlx::query_as(&format!(
            "SELECT {} FROM applications WHERE tenant_id = $1{filter} ORDER BY created_at, id",
            APP_COLS
        ))
        .bind(tenant.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(AppRow::into_model).collect()
    }

    /// Creates an application or blueprint (Graph `POST /applications`); blueprints are
    /// limited to [`MAX_BLUEPRINTS_PER_TENANT`].
    pub async fn create_application(
        &self,
        tenant: &Uuid,
        kind: AppKind,
        display_name: &str,
        owners: &[String],
        sponsors: &[String],
    ) -> Result<Application, ApplicationError> {
        let mut tx = self.begin_write().await?;
        if kind == AppKind::Blueprint {
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM applications WHERE tenant_id = $1 AND kind = 'agentIdentityBlueprint'")
                .bind(tenant.to_string())
                .fetch_one(&mut *tx)
                .await?;
            if n >= MAX_BLUEPRINTS_PER_TENANT {
                return Err(ApplicationError::BlueprintLimit);
            }
        }
        let app_id = Uuid::new_v4();
        let new = NewApplication {
            id: Uuid::new_v4(),
            app_id,
            kind,
            display_name,
            scopes: &[],
            app_roles: &[],
            access_token_version: None,
            is_public_client: false,
            redirect_uris: &[],
            inheritable_permissions: &[],
            owners,
            sponsors,
            signing_alg: "RS256",
        };
        insert(&mut tx, tenant, &new).await?;
        tx.commit().await?;
        Ok(self
            .application_by_app_id(tenant, &app_id)
            .await?
            .ok_or_else(|| DirectoryError::NotFound("application".into()))?)
    }

    /// Applies a validated patch in one transaction; a new display name is also the name of
    /// the application's principal.
    pub async fn update_application(&self, app: &Application, p: &ApplicationPatch) -> Result<()> {
        let mut tx = self.begin_write().await?;
        update(&mut tx, &app.tenant_id, &app.id, &app.app_id, p).await?;
        if let Some(d) = &p.display_name {
            let patch = crate::principals::PrincipalPatch {
                display_name: Some(d.clone()),
                ..Default::default()
            };
            crate::principals::update_of_app(&mut tx, &app.tenant_id, &app.app_id, &patch).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Replaces an application's `owners` or `sponsors` (object ids).
    pub async fn set_app_people(
        &self,
        app: &Application,
        which: People,
        ids: &[String],
    ) -> Result<()> {
        let ids = Some(ids.to_vec());
        let patch = match which {
            People::Owners => ApplicationPatch {
                owners: ids,
                ..Default::default()
            },
            People::Sponsors => ApplicationPatch {
                sponsors: ids,
                ..Default::default()
            },
        };
        self.update_application(app, &patch).await
    }

    /// Deletes an application with its principal, credentials and (blueprints) its agents.
    pub async fn delete_application(&self, app: &Application) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let t = app.tenant_id.to_string();
        let a = app.app_id.to_string();
        if app.kind == AppKind::Blueprint {
            crate::principals::delete_agents_of(&mut tx, &t, &a).await?;
        }
        let sp: Option<(String,)> = sqlx::query_as(
            "SELECT id FROM service_principals WHERE tenant_id = $1 AND app_id = $2",
        )
        .bind(&t)
        .bind(&a)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((sp,)) = sp {
            crate::principals::delete_rows(&mut tx, &t, &sp).await?;
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
}
