//! Lookups across entities that the token service makes on every request: tenants, the client
//! behind a `client_id`, the resource behind an audience, and assertion replay. Reads of one
//! entity live in that entity's module. Every query is plain SQL that runs unchanged on SQLite
//! and PostgreSQL.

use crate::builtin;
use crate::error::{DirectoryError, Result};
use crate::model::*;
use crate::store::{Store, json, uuid};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sqlx::FromRow;
use uuid::Uuid;

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

/// What a `client_id` names in a tenant (docs/sts.md §6.3 lookup order).
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

    /// Looks up a client by `client_id`: application appId, then agent identity id, then
    /// built-in (docs/sts.md §6.3). Two queries whatever the kind: this is on every token request.
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
