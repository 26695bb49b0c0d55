//! Users and agent users (docs/directory.md §2.2): the only code that writes the `users` table.
//! The Graph API and tenant files both go through [`insert`] and [`update`]; the Graph-facing
//! [`Store`] methods wrap them in one transaction each (`Store::begin_write`).

use crate::error::{DirectoryError, Result, is_unique_violation};
use crate::model::{User, UserKind};
use crate::store::{AnyConnection, Changes, Store};
use crate::store::{json, uuid};
use sqlx::FromRow;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// Entra's text for a duplicate `userPrincipalName` (case-insensitive, per tenant).
    #[error("Another object with the same value for property userPrincipalName already exists.")]
    UpnTaken,
    /// The UPN's domain must be one of the tenant's (Entra's text).
    #[error(
        "The domain portion of the userPrincipalName property is invalid. You must use one of the verified domain names in your organization."
    )]
    UpnDomain,
    #[error("The password must be at least 8 characters.")]
    PasswordTooShort,
    /// One agent user per agent identity (docs/directory.md §2.2).
    #[error("The agent identity already has an agent user.")]
    AgentUserExists,
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

impl From<sqlx::Error> for UserError {
    fn from(e: sqlx::Error) -> Self {
        if is_unique_violation(&e) {
            UserError::UpnTaken
        } else {
            UserError::Directory(e.into())
        }
    }
}

impl From<UserError> for DirectoryError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::Directory(d) => d,
            other => DirectoryError::Conflict(other.to_string()),
        }
    }
}

/// A UPN whose domain is one of the tenant's verified domains (case-insensitive).
pub fn check_upn_domain(upn: &str, domains: &[String]) -> Result<(), UserError> {
    let ok = upn
        .rsplit_once('@')
        .is_some_and(|(_, d)| domains.iter().any(|x| x.eq_ignore_ascii_case(d)));
    if ok {
        Ok(())
    } else {
        Err(UserError::UpnDomain)
    }
}

/// A password set through Graph: at least 8 characters.
pub fn check_new_password(password: &str) -> Result<(), UserError> {
    if password.chars().count() < 8 {
        return Err(UserError::PasswordTooShort);
    }
    Ok(())
}

/// A user row as it is first written.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    pub id: Uuid,
    pub kind: UserKind,
    pub upn: &'a str,
    pub display_name: &'a str,
    pub given_name: Option<&'a str>,
    pub surname: Option<&'a str>,
    pub mail: Option<&'a str>,
    pub enabled: bool,
    /// Argon2id PHC string; agent users have none.
    pub password_hash: Option<&'a str>,
    /// Agent users: the agent identity they belong to.
    pub identity_parent_id: Option<Uuid>,
    pub roles: &'a [String],
}

/// Properties to change; `None` leaves a property as it is.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub upn: Option<String>,
    pub display_name: Option<String>,
    pub given_name: Option<Option<String>>,
    pub surname: Option<Option<String>>,
    pub mail: Option<Option<String>>,
    pub account_enabled: Option<bool>,
    /// Argon2id PHC string of a new password (`Some(None)` removes it).
    pub password_hash: Option<Option<String>>,
    pub roles: Option<Vec<String>>,
}

/// Writes a new user. A taken UPN is [`UserError::UpnTaken`].
pub async fn insert(
    conn: &mut AnyConnection,
    tenant: &Uuid,
    u: &NewUser<'_>,
) -> Result<(), UserError> {
    sqlx::query(
        "INSERT INTO users (id, tenant_id, kind, upn, upn_lower, display_name, given_name, surname, mail, account_enabled, \
         password_hash, identity_parent_id, roles, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(u.id.to_string())
    .bind(tenant.to_string())
    .bind(u.kind.as_str())
    .bind(u.upn)
    .bind(u.upn.to_lowercase())
    .bind(u.display_name)
    .bind(u.given_name)
    .bind(u.surname)
    .bind(u.mail)
    .bind(u.enabled as i64)
    .bind(u.password_hash)
    .bind(u.identity_parent_id.map(|p| p.to_string()))
    .bind(serde_json::to_string(u.roles).expect("json"))
    .bind(crate::now())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Applies a patch in one statement. Session revocation is the caller's decision
/// ([`revoke_sessions_in`]): Graph revokes on a new password or on disabling.
pub async fn update(conn: &mut AnyConnection, id: &Uuid, p: &UserPatch) -> Result<(), UserError> {
    let mut c = Changes::default();
    if let Some(upn) = &p.upn {
        c.text("upn", upn.clone())
            .text("upn_lower", upn.to_lowercase());
    }
    if let Some(v) = &p.display_name {
        c.text("display_name", v.clone());
    }
    for (col, v) in [
        ("given_name", &p.given_name),
        ("surname", &p.surname),
        ("mail", &p.mail),
        ("password_hash", &p.password_hash),
    ] {
        if let Some(v) = v {
            c.text(col, v.clone());
        }
    }
    if let Some(e) = p.account_enabled {
        c.int("account_enabled", Some(e as i64));
    }
    if let Some(r) = &p.roles {
        c.json("roles", r);
    }
    c.apply(conn, "users", &id.to_string()).await?;
    Ok(())
}

/// Ends the user's sessions: refresh tokens issued before now stop working, and the
/// revocation feed lists the user (docs/sts.md §17) so access tokens stop working too.
pub async fn revoke_sessions_in(conn: &mut AnyConnection, id: &Uuid) -> Result<()> {
    crate::revocations::on_user_sessions_revoked(conn, &id.to_string()).await?;
    sqlx::query("UPDATE users SET sessions_revoked_at = $1 WHERE id = $2")
        .bind(crate::now())
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

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

impl Store {
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

    /// Every user of a tenant (people and agent users), by creation, in one query.
    pub async fn users(&self, tenant: &Uuid) -> Result<Vec<User>> {
        let rows: Vec<UserRow> = sqlx::query_as(&format!(
            "SELECT {} FROM users WHERE tenant_id = $1 ORDER BY created_at, id",
            USER_COLS
        ))
        .bind(tenant.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(UserRow::into_model).collect()
    }

    /// Creates a person (Graph `POST /users`).
    pub async fn create_user(&self, tenant: &Uuid, new: &NewUser<'_>) -> Result<User> {
        let mut tx = self.begin_write().await?;
        insert(&mut tx, tenant, new).await?;
        tx.commit().await?;
        self.user_by_id(tenant, &new.id)
            .await?
            .ok_or_else(|| DirectoryError::NotFound("user".into()))
    }

    /// Creates the agent user of an agent identity; there is at most one per agent.
    pub async fn create_agent_user(&self, tenant: &Uuid, new: &NewUser<'_>) -> Result<User> {
        let mut tx = self.begin_write().await?;
        if let Some(parent) = new.identity_parent_id {
            let existing: Option<(String,)> = sqlx::query_as(
                "SELECT id FROM users WHERE tenant_id = $1 AND identity_parent_id = $2",
            )
            .bind(tenant.to_string())
            .bind(parent.to_string())
            .fetch_optional(&mut *tx)
            .await?;
            if existing.is_some() {
                return Err(UserError::AgentUserExists.into());
            }
        }
        insert(&mut tx, tenant, new).await?;
        tx.commit().await?;
        self.user_by_id(tenant, &new.id)
            .await?
            .ok_or_else(|| DirectoryError::NotFound("user".into()))
    }

    /// Applies a patch; a new password or disabling the account revokes existing sessions.
    pub async fn update_user(&self, user: &User, p: &UserPatch) -> Result<()> {
        let mut tx = self.begin_write().await?;
        update(&mut tx, &user.id, p).await?;
        if p.password_hash.is_some() || p.account_enabled == Some(false) {
            revoke_sessions_in(&mut tx, &user.id).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn revoke_sessions(&self, user: &Uuid) -> Result<()> {
        let mut tx = self.begin_write().await?;
        revoke_sessions_in(&mut tx, user).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a user with its grants, assignments and refresh tokens (docs/directory.md §2.8).
    pub async fn delete_user(&self, user: &User) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let id = user.id.to_string();
        sqlx::query(
            "DELETE FROM oauth2_permission_grants WHERE consent_type = 'Principal' AND principal_key = $1",
        )
        .bind(&id)
        .execute(&mut *tx)
        .await?;
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
}
