//! Device codes and the browser flows that approve them.

use crate::error::Result;
use crate::store::Store;
use sqlx::FromRow;

#[derive(Debug, Clone, FromRow)]
pub struct DeviceCode {
    pub device_code_sha256: String,
    pub tenant_id: String,
    pub client_id: String,
    pub scope: String,
    pub user_code_hmac: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub interval_secs: i64,
    pub last_poll_at: Option<i64>,
    pub status: String,
    pub user_id: Option<String>,
    pub auth_time: Option<i64>,
}

const COLS: &str = "device_code_sha256, tenant_id, client_id, scope, user_code_hmac, created_at, expires_at, interval_secs, last_poll_at, status, user_id, auth_time";

#[derive(Debug, Clone, FromRow)]
pub struct BrowserFlow {
    pub id_sha256: String,
    pub csrf: String,
    pub device_code_sha256: Option<String>,
    pub user_id: Option<String>,
    pub failures: i64,
    pub expires_at: i64,
    /// The validated `/authorize` request (JSON) when this flow signs in for a redirect.
    pub authorize_request: Option<String>,
}

impl Store {
    pub async fn insert_device_code(&self, d: &DeviceCode) -> Result<()> {
        sqlx::query(&format!("INSERT INTO device_codes ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"))
            .bind(&d.device_code_sha256)
            .bind(&d.tenant_id)
            .bind(&d.client_id)
            .bind(&d.scope)
            .bind(&d.user_code_hmac)
            .bind(d.created_at)
            .bind(d.expires_at)
            .bind(d.interval_secs)
            .bind(d.last_poll_at)
            .bind(&d.status)
            .bind(&d.user_id)
            .bind(d.auth_time)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn device_code(&self, sha256: &str) -> Result<Option<DeviceCode>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLS} FROM device_codes WHERE device_code_sha256 = $1"
        ))
        .bind(sha256)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Device codes whose user code HMAC is one of `hmacs` (one per tenant secret).
    pub async fn device_code_by_user_code(&self, hmacs: &[String]) -> Result<Option<DeviceCode>> {
        for h in hmacs {
            let row: Option<DeviceCode> = sqlx::query_as(&format!(
                "SELECT {COLS} FROM device_codes WHERE user_code_hmac = $1"
            ))
            .bind(h)
            .fetch_optional(self.pool())
            .await?;
            if row.is_some() {
                return Ok(row);
            }
        }
        Ok(None)
    }

    /// Records a poll; returns the previous poll time.
    pub async fn touch_device_poll(&self, sha256: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE device_codes SET last_poll_at = $1 WHERE device_code_sha256 = $2")
            .bind(now)
            .bind(sha256)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Moves a device code from `from` to `to` exactly once (compare-and-set across replicas).
    pub async fn transition_device_code(
        &self,
        sha256: &str,
        from: &str,
        to: &str,
        user_id: Option<&str>,
        auth_time: Option<i64>,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE device_codes SET status = $1, user_id = COALESCE($2, user_id), auth_time = COALESCE($3, auth_time) \
             WHERE device_code_sha256 = $4 AND status = $5",
        )
        .bind(to)
        .bind(user_id)
        .bind(auth_time)
        .bind(sha256)
        .bind(from)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    pub async fn insert_browser_flow(&self, f: &BrowserFlow) -> Result<()> {
        sqlx::query("INSERT INTO browser_flows (id_sha256, csrf, device_code_sha256, user_id, failures, expires_at, authorize_request) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&f.id_sha256)
            .bind(&f.csrf)
            .bind(&f.device_code_sha256)
            .bind(&f.user_id)
            .bind(f.failures)
            .bind(f.expires_at)
            .bind(&f.authorize_request)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn browser_flow(&self, id_sha256: &str) -> Result<Option<BrowserFlow>> {
        Ok(sqlx::query_as("SELECT id_sha256, csrf, device_code_sha256, user_id, failures, expires_at, authorize_request FROM browser_flows WHERE id_sha256 = $1")
            .bind(id_sha256)
            .fetch_optional(self.pool())
            .await?)
    }

    pub async fn update_browser_flow(&self, f: &BrowserFlow) -> Result<()> {
        sqlx::query("UPDATE browser_flows SET csrf = $1, device_code_sha256 = $2, user_id = $3, failures = $4, expires_at = $5, authorize_request = $6 WHERE id_sha256 = $7")
            .bind(&f.csrf)
            .bind(&f.device_code_sha256)
            .bind(&f.user_id)
            .bind(f.failures)
            .bind(f.expires_at)
            .bind(&f.authorize_request)
            .bind(&f.id_sha256)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct AuthCode {
    pub code_sha256: String,
    pub tenant_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scope: String,
    pub user_id: String,
    pub nonce: Option<String>,
    pub auth_time: i64,
    pub created_at: i64,
    pub redeemed: i64,
}

impl Store {
    pub async fn insert_auth_code(&self, c: &AuthCode) -> Result<()> {
        sqlx::query(
            "INSERT INTO auth_codes (code_sha256, tenant_id, client_id, redirect_uri, code_challenge, scope, user_id, nonce, auth_time, created_at, redeemed) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0)",
        )
        .bind(&c.code_sha256)
        .bind(&c.tenant_id)
        .bind(&c.client_id)
        .bind(&c.redirect_uri)
        .bind(&c.code_challenge)
        .bind(&c.scope)
        .bind(&c.user_id)
        .bind(&c.nonce)
        .bind(c.auth_time)
        .bind(c.created_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn auth_code(&self, sha256: &str) -> Result<Option<AuthCode>> {
        Ok(sqlx::query_as(
            "SELECT code_sha256, tenant_id, client_id, redirect_uri, code_challenge, scope, user_id, nonce, auth_time, created_at, redeemed FROM auth_codes WHERE code_sha256 = $1",
        )
        .bind(sha256)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Marks a code redeemed; `false` if it already was (exactly once across replicas).
    pub async fn redeem_auth_code(&self, sha256: &str) -> Result<bool> {
        Ok(sqlx::query(
            "UPDATE auth_codes SET redeemed = 1 WHERE code_sha256 = $1 AND redeemed = 0",
        )
        .bind(sha256)
        .execute(self.pool())
        .await?
        .rows_affected()
            == 1)
    }
}

impl Store {
    pub async fn insert_session(
        &self,
        id_sha256: &str,
        tenant: &str,
        user: &str,
        auth_time: i64,
        expires_at: i64,
    ) -> Result<()> {
        sqlx::query("INSERT INTO browser_sessions (id_sha256, tenant_id, user_id, auth_time, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id_sha256)
            .bind(tenant)
            .bind(user)
            .bind(auth_time)
            .bind(expires_at)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// (tenant id, user id, auth_time) of a live session.
    pub async fn session(
        &self,
        id_sha256: &str,
        now: i64,
    ) -> Result<Option<(String, String, i64)>> {
        Ok(sqlx::query_as("SELECT tenant_id, user_id, auth_time FROM browser_sessions WHERE id_sha256 = $1 AND expires_at > $2")
            .bind(id_sha256)
            .bind(now)
            .fetch_optional(self.pool())
            .await?)
    }

    pub async fn delete_session(&self, id_sha256: &str) -> Result<()> {
        sqlx::query("DELETE FROM browser_sessions WHERE id_sha256 = $1")
            .bind(id_sha256)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
