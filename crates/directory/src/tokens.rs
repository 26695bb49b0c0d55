//! Refresh tokens and sign-in lockout state: the STS's mutable per-user state.

use crate::error::Result;
use crate::store::Store;
use sqlx::{AnyConnection, FromRow};

/// A stored refresh token (the token itself is only ever stored as SHA-256).
#[derive(Debug, Clone, FromRow)]
pub struct RefreshRecord {
    pub token_sha256: String,
    pub tenant_id: String,
    pub family_id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub amr: String,
    pub issued_at: i64,
    pub last_used_at: i64,
    pub superseded_at: Option<i64>,
    pub revoked: i64,
}

impl RefreshRecord {
    pub async fn insert(&self, conn: &mut AnyConnection) -> Result<()> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_sha256, tenant_id, family_id, client_id, user_id, scope, amr, issued_at, last_used_at, revoked) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0)",
        )
        .bind(&self.token_sha256)
        .bind(&self.tenant_id)
        .bind(&self.family_id)
        .bind(&self.client_id)
        .bind(&self.user_id)
        .bind(&self.scope)
        .bind(&self.amr)
        .bind(self.issued_at)
        .bind(self.last_used_at)
        .execute(conn)
        .await?;
        Ok(())
    }
}

/// When repeated failures lock a subject (docs/sts.md §11.2 step 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures that lock (and every further multiple).
    pub threshold: i64,
    /// The first lock's length in seconds; it doubles per further lock, up to 15 minutes.
    pub lock_secs: i64,
    /// Seconds after which a count starts again; `None`: until a success clears it.
    pub window: Option<i64>,
}

/// A subject's failure count after recording one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigninFailures {
    pub failures: i64,
    pub locked_until: Option<i64>,
}

impl Store {
    pub async fn refresh_token(&self, token_sha256: &str) -> Result<Option<RefreshRecord>> {
        Ok(sqlx::query_as(
            "SELECT token_sha256, tenant_id, family_id, client_id, user_id, scope, amr, issued_at, last_used_at, superseded_at, revoked \
             FROM refresh_tokens WHERE token_sha256 = $1",
        )
        .bind(token_sha256)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Revokes every token of a family (reuse detected, or an explicit revocation); the
    /// family joins the revocation feed's `revokedTokens` (docs/sts.md §17) in the same
    /// transaction.
    pub async fn revoke_refresh_family(&self, family_id: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let tenant: Option<(String,)> =
            sqlx::query_as("SELECT tenant_id FROM refresh_tokens WHERE family_id = $1 LIMIT 1")
                .bind(family_id)
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query("UPDATE refresh_tokens SET revoked = 1 WHERE family_id = $1")
            .bind(family_id)
            .execute(&mut *tx)
            .await?;
        if let Some((tenant,)) = tenant {
            let until = crate::now() + crate::revocations::USER_REVOCATION_WINDOW;
            crate::revocations::revoke_token_in(&mut tx, &tenant, family_id, until).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Failed sign-in attempts for `subject` (a user id or `ip:ADDR`) within the window; returns
    /// the lock expiry if the subject is locked now.
    pub async fn signin_locked_until(&self, tenant: &str, subject: &str) -> Result<Option<i64>> {
        let row: Option<(Option<i64>,)> = sqlx::query_as(
            "SELECT locked_until FROM signin_failures WHERE tenant_id = $1 AND subject = $2",
        )
        .bind(tenant)
        .bind(subject)
        .fetch_optional(self.pool())
        .await?;
        let now = crate::now();
        Ok(row.and_then(|(l,)| l).filter(|l| *l > now))
    }

    /// Records a failure and returns the count, atomically: one statement adds one (inserting
    /// the first), so concurrent failures are never lost. The failure that reaches a multiple of
    /// `threshold` locks the subject for `lock_secs`, doubling with each further lock up to 15
    /// minutes; exactly one caller sees each such count, so each lock is set once.
    ///
    /// With a `window` (seconds), a count older than the window starts again at one (per-address
    /// limits: "30 failures per 10 minutes"); without, failures count until cleared by a success.
    pub async fn record_signin_failure(
        &self,
        tenant: &str,
        subject: &str,
        policy: LockoutPolicy,
    ) -> Result<SigninFailures> {
        let now = crate::now();
        let window_floor = policy.window.map(|w| now - w).unwrap_or(i64::MIN);
        let (failures, locked_until): (i64, Option<i64>) = sqlx::query_as(
            "INSERT INTO signin_failures (tenant_id, subject, failures, window_start, locked_until) VALUES ($1, $2, 1, $3, NULL) \
             ON CONFLICT (tenant_id, subject) DO UPDATE SET \
               failures = CASE WHEN signin_failures.window_start < $4 THEN 1 ELSE signin_failures.failures + 1 END, \
               window_start = CASE WHEN signin_failures.window_start < $4 THEN $3 ELSE signin_failures.window_start END \
             RETURNING failures, locked_until",
        )
        .bind(tenant)
        .bind(subject)
        .bind(now)
        .bind(window_floor)
        .fetch_one(self.pool())
        .await?;
        let threshold = policy.threshold.max(1);
        if failures % threshold != 0 {
            return Ok(SigninFailures {
                failures,
                locked_until: locked_until.filter(|l| *l > now),
            });
        }
        let n = (failures / threshold - 1).clamp(0, 8) as u32;
        let until = now + (policy.lock_secs * 2i64.pow(n)).min(900);
        sqlx::query(
            "UPDATE signin_failures SET locked_until = $1 WHERE tenant_id = $2 AND subject = $3",
        )
        .bind(until)
        .bind(tenant)
        .bind(subject)
        .execute(self.pool())
        .await?;
        Ok(SigninFailures {
            failures,
            locked_until: Some(until),
        })
    }

    pub async fn clear_signin_failures(&self, tenant: &str, subject: &str) -> Result<()> {
        sqlx::query("DELETE FROM signin_failures WHERE tenant_id = $1 AND subject = $2")
            .bind(tenant)
            .bind(subject)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Housekeeping: expired replay entries and refresh tokens idle past `refresh_idle_before`.
    pub async fn purge_expired(&self, now: i64, refresh_idle_before: i64) -> Result<()> {
        sqlx::query("DELETE FROM assertion_replay WHERE expires_at < $1")
            .bind(now)
            .execute(self.pool())
            .await?;
        sqlx::query("DELETE FROM refresh_tokens WHERE last_used_at < $1")
            .bind(refresh_idle_before)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

/// Marks a refresh token superseded (first time only) and records its last use.
pub async fn mark_superseded(conn: &mut AnyConnection, token_sha256: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE refresh_tokens SET superseded_at = COALESCE(superseded_at, $1), last_used_at = $1 WHERE token_sha256 = $2")
        .bind(now)
        .bind(token_sha256)
        .execute(conn)
        .await?;
    Ok(())
}
