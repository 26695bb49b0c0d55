//! What MCP clients need from the directory (docs/sts.md §16): each tenant's dynamic client
//! registration policy, the public clients registered through it (written with the
//! applications and principals write paths, in one transaction), and the gateway route
//! resources (RFC 8707 `resource` values) registered for an application.

use crate::applications::{self, NewApplication, RedirectUri};
use crate::error::{DirectoryError, Result};
use crate::model::SpKind;
use crate::model::{AppKind, normalize_uri};
use crate::principals::{self, NewPrincipal};
use crate::secrets::sha256_hex;
use crate::store::Store;
use uuid::Uuid;

/// Who may register a client at the tenant's registration endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationMode {
    /// No registration endpoint (the default).
    Off,
    /// Anyone (rate limited): what MCP clients that know nothing of the tenant need.
    Open,
    /// Only with the tenant's initial access token (RFC 7591 §3).
    Token,
}

impl RegistrationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationMode::Off => "off",
            RegistrationMode::Open => "open",
            RegistrationMode::Token => "token",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "off" => RegistrationMode::Off,
            "open" => RegistrationMode::Open,
            "token" => RegistrationMode::Token,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationPolicy {
    pub mode: RegistrationMode,
    /// SHA-256 (hex) of the initial access token; set when `mode` is `Token`.
    pub initial_access_token_sha256: Option<String>,
}

impl RegistrationPolicy {
    pub const OFF: RegistrationPolicy = RegistrationPolicy {
        mode: RegistrationMode::Off,
        initial_access_token_sha256: None,
    };
}

impl Store {
    pub async fn registration_policy(&self, tenant: &Uuid) -> Result<RegistrationPolicy> {
        let row: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT mode, initial_access_token_sha256 FROM client_registration_policies WHERE tenant_id = $1",
        )
        .bind(tenant.to_string())
        .fetch_optional(self.pool())
        .await?;
        Ok(match row {
            None => RegistrationPolicy::OFF,
            Some((mode, hash)) => RegistrationPolicy {
                mode: RegistrationMode::parse(&mode).unwrap_or(RegistrationMode::Off),
                initial_access_token_sha256: hash,
            },
        })
    }

    /// Sets the policy; `Token` needs the initial access token, which is stored hashed.
    pub async fn set_registration_policy(
        &self,
        tenant: &Uuid,
        mode: RegistrationMode,
        initial_access_token: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let hash = match (mode, initial_access_token) {
            (RegistrationMode::Token, Some(t)) if t.len() >= 16 => Some(sha256_hex(t)),
            (RegistrationMode::Token, _) => {
                return Err(DirectoryError::Conflict(
                    "registration mode 'token' needs an initial access token of at least 16 characters".into(),
                ));
            }
            _ => None,
        };
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM client_registration_policies WHERE tenant_id = $1")
            .bind(tenant.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO client_registration_policies (tenant_id, mode, initial_access_token_sha256, updated_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(tenant.to_string())
        .bind(mode.as_str())
        .bind(hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes a dynamically registered client: a public client application with its redirect
    /// URIs and its service principal, in one transaction. Returns the new appId.
    pub async fn register_public_client(
        &self,
        tenant: &Uuid,
        display_name: &str,
        redirect_uris: &[RedirectUri],
    ) -> Result<Uuid> {
        let app_id = Uuid::new_v4();
        let mut tx = self.begin_write().await?;
        applications::insert(
            &mut tx,
            tenant,
            &NewApplication {
                id: Uuid::new_v4(),
                app_id,
                kind: AppKind::Application,
                display_name,
                scopes: &[],
                app_roles: &[],
                access_token_version: None,
                is_public_client: true,
                redirect_uris,
                inheritable_permissions: &[],
                owners: &[],
                sponsors: &[],
                signing_alg: "RS256",
            },
        )
        .await?;
        principals::insert(
            &mut tx,
            tenant,
            &NewPrincipal {
                id: Uuid::new_v4(),
                app_id,
                kind: SpKind::ServicePrincipal,
                display_name,
                enabled: true,
                blueprint_app_id: None,
                sponsors: &[],
            },
        )
        .await
        .map_err(DirectoryError::from)?;
        tx.commit().await?;
        Ok(app_id)
    }

    /// Registers a gateway route's resource URL for an application (replacing an earlier one).
    pub async fn set_protected_resource(
        &self,
        tenant: &Uuid,
        resource: &str,
        app_id: &Uuid,
    ) -> Result<()> {
        let key = normalize_uri(resource);
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM protected_resources WHERE tenant_id = $1 AND resource = $2")
            .bind(tenant.to_string())
            .bind(&key)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO protected_resources (tenant_id, resource, app_id) VALUES ($1, $2, $3)",
        )
        .bind(tenant.to_string())
        .bind(&key)
        .bind(app_id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The application a gateway route's resource URL was registered for.
    pub async fn protected_resource(&self, tenant: &Uuid, resource: &str) -> Result<Option<Uuid>> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT app_id FROM protected_resources WHERE tenant_id = $1 AND resource = $2",
        )
        .bind(tenant.to_string())
        .bind(normalize_uri(resource))
        .fetch_optional(self.pool())
        .await?;
        Ok(row.and_then(|(a,)| Uuid::parse_str(&a).ok()))
    }
}
