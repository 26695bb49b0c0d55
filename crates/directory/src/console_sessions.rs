//! Sessions of the web console (docs/console.md §3): one row per signed-in browser, under the
//! SHA-256 of the random id in its cookie, with the CSRF token bound to it.

use crate::error::Result;
use crate::store::Store;
use sqlx::FromRow;

#[derive(Clone, FromRow)]
pub struct ConsoleSession {
    pub id_sha256: String,
    pub tenant_id: String,
    pub user_id: String,
    pub csrf: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl std::fmt::Debug for ConsoleSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSession")
            .field("tenant_id", &self.tenant_id)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

impl Store {
    pub async fn insert_console_session(&self, s: &ConsoleSession) -> Result<()> {
        sqlx::query("INSERT INTO console_sessions (id_sha256, tenant_id, user_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&s.id_sha256)
            .bind(&s.tenant_id)
            .bind(&s.user_id)
            .bind(&s.csrf)
            .bind(s.created_at)
            .bind(s.expires_at)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The live session with this id hash.
    pub async fn console_session(
        &self,
        id_sha256: &str,
        now: i64,
    ) -> Result<Option<ConsoleSession>> {
        Ok(sqlx::query_as("SELECT id_sha256, tenant_id, user_id, csrf, created_at, expires_at FROM console_sessions WHERE id_sha256 = $1 AND expires_at > $2")
            .bind(id_sha256)
            .bind(now)
            .fetch_optional(self.pool())
            .await?)
    }

    pub async fn delete_console_session(&self, id_sha256: &str) -> Result<()> {
        sqlx::query("DELETE FROM console_sessions WHERE id_sha256 = $1")
            .bind(id_sha256)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn purge_console_sessions(&self, now: i64) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(self.pool())
                .await?
                .rows_affected(),
        )
    }
}
