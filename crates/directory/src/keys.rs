//! Stored signing keys and TLS material (private parts encrypted with the master key).

use crate::error::Result;
use crate::store::Store;
use sqlx::FromRow;

#[derive(Clone, FromRow)]
pub struct SigningKeyRow {
    pub tenant_id: String,
    pub kid: String,
    pub alg: String,
    pub private_key_enc: String,
    pub public_jwk: String,
    pub cert_der: String,
    pub publish_at: i64,
    pub activate_at: i64,
    pub retired_at: Option<i64>,
    pub last_signed_at: Option<i64>,
    pub remove_after: Option<i64>,
}

impl std::fmt::Debug for SigningKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRow")
            .field("tenant_id", &self.tenant_id)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

const COLS: &str = "tenant_id, kid, alg, private_key_enc, public_jwk, cert_der, publish_at, activate_at, retired_at, last_signed_at, remove_after";

impl Store {
    pub async fn signing_keys(&self, tenant: Option<&str>) -> Result<Vec<SigningKeyRow>> {
        let sql = match tenant {
            Some(_) => {
                format!("SELECT {COLS} FROM signing_keys WHERE tenant_id = $1 ORDER BY activate_at")
            }
            None => format!("SELECT {COLS} FROM signing_keys ORDER BY activate_at"),
        };
        let mut q = sqlx::query_as(&sql);
        if let Some(t) = tenant {
            q = q.bind(t.to_string());
        }
        Ok(q.fetch_all(self.pool()).await?)
    }

    pub async fn insert_signing_key(&self, k: &SigningKeyRow) -> Result<()> {
        sqlx::query(&format!("INSERT INTO signing_keys ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"))
            .bind(&k.tenant_id)
            .bind(&k.kid)
            .bind(&k.alg)
            .bind(&k.private_key_enc)
            .bind(&k.public_jwk)
            .bind(&k.cert_der)
            .bind(k.publish_at)
            .bind(k.activate_at)
            .bind(k.retired_at)
            .bind(k.last_signed_at)
            .bind(k.remove_after)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn mark_key_signed(&self, tenant: &str, kid: &str, at: i64) -> Result<()> {
        sqlx::query(
            "UPDATE signing_keys SET last_signed_at = $1 WHERE tenant_id = $2 AND kid = $3",
        )
        .bind(at)
        .bind(tenant)
        .bind(kid)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn retire_key(
        &self,
        tenant: &str,
        kid: &str,
        retired_at: i64,
        remove_after: i64,
    ) -> Result<()> {
        sqlx::query("UPDATE signing_keys SET retired_at = $1, remove_after = $2 WHERE tenant_id = $3 AND kid = $4")
            .bind(retired_at)
            .bind(remove_after)
            .bind(tenant)
            .bind(kid)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn delete_removed_keys(&self, now: i64) -> Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM signing_keys WHERE remove_after IS NOT NULL AND remove_after < $1",
        )
        .bind(now)
        .execute(self.pool())
        .await?
        .rows_affected())
    }

    /// (certificate PEM, encrypted key, not_after) of a named TLS item (`ca`, `server`).
    pub async fn tls_material(&self, name: &str) -> Result<Option<(String, String, i64)>> {
        Ok(
            sqlx::query_as("SELECT cert_pem, key_enc, not_after FROM tls_material WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    pub async fn put_tls_material(
        &self,
        name: &str,
        cert_pem: &str,
        key_enc: &str,
        not_after: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO tls_material (name, cert_pem, key_enc, not_after, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET cert_pem = $2, key_enc = $3, not_after = $4, updated_at = $5",
        )
        .bind(name)
        .bind(cert_pem)
        .bind(key_enc)
        .bind(not_after)
        .bind(crate::now())
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
