//! The revocation state of a tenant (docs/sts.md §17): a version, and what the signed feed
//! lists (disabled agent identities and blueprints, users whose sessions were revoked, revoked
//! tokens, deleted agents and blueprints, deleted consents). The version is bumped by [`bump`]
//! inside the transaction of every directory write that stops an agent or a user: the one write
//! path of each entity calls it (`principals::update`, `principals::delete_rows`,
//! `users::revoke_sessions_in`, grant deletion, token revocation), so Graph, tenant files, the
//! admin CLI and the console all bump it.

use crate::error::Result;
use crate::model::SpKind;
use crate::store::{AnyConnection, Store};
use uuid::Uuid;

/// At most this many entries per list of the feed (docs/sts.md §17.2). A list that would be
/// longer makes the snapshot [`Snapshot::truncated`]: consumers treat it as an unusable feed.
pub const MAX_FEED_ENTRIES: usize = 5000;

/// How long a session revocation stays in the feed: beyond the longest token lifetime (90 min)
/// plus clock skew, no token issued before it can still be valid.
pub const USER_REVOCATION_WINDOW: i64 = 5400 + CLOCK_SKEW;

/// How long a deleted agent or blueprint and a deleted consent stay in the feed: the same window
/// as a session revocation (no token issued before the deletion outlives it).
pub const DELETION_WINDOW: i64 = USER_REVOCATION_WINDOW;

/// `revocation_entries.kind` of a deleted agent identity or blueprint principal.
const DELETED_AGENT: &str = "deletedAgent";
/// `revocation_entries.kind` of a deleted consent.
const REVOKED_GRANT: &str = "revokedGrant";

/// The clock skew readers allow: a revoked token is listed this long past its `exp`.
pub const CLOCK_SKEW: i64 = 300;

/// A token revoked by its `uti`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRevocation {
    pub revoked_at: i64,
    /// Until when the feed lists it.
    pub expires_at: i64,
    /// It was revoked before this request.
    pub already: bool,
}

/// A deleted consent as the feed lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedGrant {
    /// The client's appId (what its tokens carry in `azp`/`appid`).
    pub client: String,
    /// The user's object id; `None` for an `AllPrincipals` consent (every user).
    pub user: Option<String>,
    pub revoked_at: i64,
}

/// What the feed publishes for one tenant at one version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub version: i64,
    /// appIds of disabled agent identities (an agent identity's appId is its object id).
    pub disabled_agents: Vec<String>,
    /// appIds of blueprints whose principal is disabled (what tokens carry in
    /// `xms_par_app_azp`).
    pub disabled_blueprints: Vec<String>,
    /// (user object id, sessions revoked at) for revocations within
    /// [`USER_REVOCATION_WINDOW`].
    pub revoked_users: Vec<(String, i64)>,
    /// Revoked `uti`s and refresh-token families not yet expired.
    pub revoked_tokens: Vec<String>,
    /// (appId, deleted at) of agent identities and blueprint principals deleted within
    /// [`DELETION_WINDOW`].
    pub deleted_agents: Vec<(String, i64)>,
    /// Consents deleted within [`DELETION_WINDOW`].
    pub revoked_grants: Vec<RevokedGrant>,
    /// Some list held more than [`MAX_FEED_ENTRIES`] entries.
    pub truncated: bool,
}

/// Bumps the tenant's revocation version, in the caller's transaction.
pub async fn bump(conn: &mut AnyConnection, tenant: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO revocation_state (tenant_id, version, updated_at) VALUES ($1, 1, $2) \
         ON CONFLICT (tenant_id) DO UPDATE SET version = revocation_state.version + 1, updated_at = $2",
    )
    .bind(tenant)
    .bind(crate::now())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Bumps the version of the tenant of service principal `sp_id` when `enabled` changes its
/// `accountEnabled` and it is an agent identity or a blueprint principal. Called by
/// `principals::update` before it writes.
pub(crate) async fn on_principal_enabled(
    conn: &mut AnyConnection,
    sp_id: &str,
    enabled: bool,
) -> Result<()> {
    let row: Option<(String, String, i64)> = sqlx::query_as(
        "SELECT tenant_id, kind, account_enabled FROM service_principals WHERE id = $1",
    )
    .bind(sp_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((tenant, kind, current)) = row else {
        return Ok(());
    };
    let watched =
        kind == SpKind::AgentIdentity.as_str() || kind == SpKind::BlueprintPrincipal.as_str();
    if watched && (current != 0) != enabled {
        bump(conn, &tenant).await?;
    }
    Ok(())
}

/// Records an entry of `revocation_entries` until every token it stands for has expired, and
/// bumps the version.
async fn list_entry(
    conn: &mut AnyConnection,
    tenant: &str,
    kind: &str,
    subject: &str,
    principal: &str,
) -> Result<()> {
    let now = crate::now();
    sqlx::query(
        "INSERT INTO revocation_entries (tenant_id, kind, subject, principal, revoked_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, kind, subject, principal) \
         DO UPDATE SET revoked_at = $5, expires_at = $6",
    )
    .bind(tenant)
    .bind(kind)
    .bind(subject)
    .bind(principal)
    .bind(now)
    .bind(now + DELETION_WINDOW)
    .execute(&mut *conn)
    .await?;
    bump(conn, tenant).await
}

/// Lists the appId of service principal `sp_id` as deleted when it is an agent identity or a
/// blueprint principal (its tokens stay valid until they expire otherwise), and bumps. Called
/// by `principals::delete_rows`, the one deletion path of a principal, before it deletes.
pub(crate) async fn on_principal_deleted(conn: &mut AnyConnection, sp_id: &str) -> Result<()> {
    let row: Option<(String, String, String)> =
        sqlx::query_as("SELECT tenant_id, kind, app_id FROM service_principals WHERE id = $1")
            .bind(sp_id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((tenant, kind, app_id)) = row else {
        return Ok(());
    };
    if kind == SpKind::AgentIdentity.as_str() || kind == SpKind::BlueprintPrincipal.as_str() {
        list_entry(
            conn,
            &tenant,
            DELETED_AGENT,
            &app_id.to_ascii_lowercase(),
            "",
        )
        .await?;
    }
    Ok(())
}

/// Lists consent `grant_id` as revoked (its client's appId, and its user unless it is an
/// `AllPrincipals` consent), and bumps. Called by `Store::delete_grant` before it deletes.
pub(crate) async fn on_grant_deleted(conn: &mut AnyConnection, grant_id: &str) -> Result<()> {
    let row: Option<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT g.tenant_id, g.consent_type, g.principal_key, sp.app_id \
         FROM oauth2_permission_grants g LEFT JOIN service_principals sp ON sp.id = g.client_id \
         WHERE g.id = $1",
    )
    .bind(grant_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((tenant, consent_type, principal, client)) = row else {
        return Ok(());
    };
    match client {
        Some(client) => {
            let user = if consent_type == "Principal" {
                principal.to_ascii_lowercase()
            } else {
                String::new()
            };
            let client = client.to_ascii_lowercase();
            list_entry(conn, &tenant, REVOKED_GRANT, &client, &user).await
        }
        // A consent whose client is gone names no token a reader could match.
        None => bump(conn, &tenant).await,
    }
}

/// Bumps the version of the tenant of user `user_id` (sessions revoked).
pub(crate) async fn on_user_sessions_revoked(
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<()> {
    let row: Option<(String,)> = sqlx::query_as("SELECT tenant_id FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some((tenant,)) = row {
        bump(conn, &tenant).await?;
    }
    Ok(())
}

/// Records a revoked token (`uti`) or refresh-token family until `expires_at`, and bumps.
pub async fn revoke_token_in(
    conn: &mut AnyConnection,
    tenant: &str,
    uti: &str,
    expires_at: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO revoked_tokens (tenant_id, uti, revoked_at, expires_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id, uti) DO UPDATE SET expires_at = $4",
    )
    .bind(tenant)
    .bind(uti)
    .bind(crate::now())
    .bind(expires_at)
    .execute(&mut *conn)
    .await?;
    bump(conn, tenant).await
}

impl Store {
    /// The tenant's revocation version; 0 before the first revocation.
    pub async fn revocation_version(&self, tenant: &Uuid) -> Result<i64> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT version FROM revocation_state WHERE tenant_id = $1")
                .bind(tenant.to_string())
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|(v,)| v).unwrap_or(0))
    }

    /// Revokes one token by its `uti` until `expires_at` (its `exp`).
    pub async fn revoke_token(&self, tenant: &Uuid, uti: &str, expires_at: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        revoke_token_in(&mut tx, &tenant.to_string(), uti, expires_at).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Revokes a token this tenant issued, by its `uti` (`POST /agentid/v1/revokedTokens`):
    /// listed until its `exp` plus clock skew, found by its issuance event (every answered
    /// token has one, written before the answer). `None` when the tenant issued no such token;
    /// a token already revoked is left as it is (no new version).
    pub async fn revoke_issued_token(
        &self,
        tenant: &Uuid,
        uti: &str,
    ) -> Result<Option<TokenRevocation>> {
        let t = tenant.to_string();
        let mut tx = self.begin_write().await?;
        let issued: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT time, token_expires_at FROM audit_events WHERE tenant_id = $1 AND token_id = $2 \
             AND result = 'issued' AND category IS NULL ORDER BY time LIMIT 1",
        )
        .bind(&t)
        .bind(uti)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((issued_at, exp)) = issued else {
            return Ok(None);
        };
        let listed: Option<(i64, i64)> = sqlx::query_as(
            "SELECT revoked_at, expires_at FROM revoked_tokens WHERE tenant_id = $1 AND uti = $2",
        )
        .bind(&t)
        .bind(uti)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((revoked_at, expires_at)) = listed {
            return Ok(Some(TokenRevocation {
                revoked_at,
                expires_at,
                already: true,
            }));
        }
        // Without a recorded expiry, the longest lifetime a token can have.
        let expires_at = exp.unwrap_or(issued_at + USER_REVOCATION_WINDOW) + CLOCK_SKEW;
        revoke_token_in(&mut tx, &t, uti, expires_at).await?;
        tx.commit().await?;
        Ok(Some(TokenRevocation {
            revoked_at: crate::now(),
            expires_at,
            already: false,
        }))
    }

    /// The feed's content at the current version, read in one transaction so the version and
    /// the lists agree.
    pub async fn revocation_snapshot(&self, tenant: &Uuid, now: i64) -> Result<Snapshot> {
        let t = tenant.to_string();
        let mut tx = self.pool().begin().await?;
        let version: Option<(i64,)> =
            sqlx::query_as("SELECT version FROM revocation_state WHERE tenant_id = $1")
                .bind(&t)
                .fetch_optional(&mut *tx)
                .await?;
        // One more than the bound tells a full list from a truncated one.
        let limit = MAX_FEED_ENTRIES as i64 + 1;
        let disabled = |kind: SpKind| {
            sqlx::query_as::<_, (String,)>(
                "SELECT app_id FROM service_principals WHERE tenant_id = $1 AND kind = $2 \
                 AND account_enabled = 0 ORDER BY app_id LIMIT $3",
            )
            .bind(t.clone())
            .bind(kind.as_str())
            .bind(limit)
        };
        let agents = disabled(SpKind::AgentIdentity).fetch_all(&mut *tx).await?;
        let blueprints = disabled(SpKind::BlueprintPrincipal)
            .fetch_all(&mut *tx)
            .await?;
        let users: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, sessions_revoked_at FROM users WHERE tenant_id = $1 \
             AND sessions_revoked_at IS NOT NULL AND sessions_revoked_at >= $2 \
             ORDER BY sessions_revoked_at DESC, id LIMIT $3",
        )
        .bind(&t)
        .bind(now - USER_REVOCATION_WINDOW)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let tokens: Vec<(String,)> = sqlx::query_as(
            "SELECT uti FROM revoked_tokens WHERE tenant_id = $1 AND expires_at > $2 \
             ORDER BY revoked_at DESC, uti LIMIT $3",
        )
        .bind(&t)
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let entries = |kind: &'static str| {
            sqlx::query_as::<_, (String, String, i64)>(
                "SELECT subject, principal, revoked_at FROM revocation_entries \
                 WHERE tenant_id = $1 AND kind = $2 AND expires_at > $3 \
                 ORDER BY revoked_at DESC, subject, principal LIMIT $4",
            )
            .bind(t.clone())
            .bind(kind)
            .bind(now)
            .bind(limit)
        };
        let deleted = entries(DELETED_AGENT).fetch_all(&mut *tx).await?;
        let grants = entries(REVOKED_GRANT).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let truncated = [
            agents.len(),
            blueprints.len(),
            users.len(),
            tokens.len(),
            deleted.len(),
            grants.len(),
        ]
        .iter()
        .any(|n| *n > MAX_FEED_ENTRIES);
        let firsts =
            |v: Vec<(String,)>| v.into_iter().take(MAX_FEED_ENTRIES).map(|(s,)| s).collect();
        Ok(Snapshot {
            version: version.map(|(v,)| v).unwrap_or(0),
            disabled_agents: firsts(agents),
            disabled_blueprints: firsts(blueprints),
            revoked_users: users.into_iter().take(MAX_FEED_ENTRIES).collect(),
            revoked_tokens: firsts(tokens),
            deleted_agents: deleted
                .into_iter()
                .take(MAX_FEED_ENTRIES)
                .map(|(app, _, at)| (app, at))
                .collect(),
            revoked_grants: grants
                .into_iter()
                .take(MAX_FEED_ENTRIES)
                .map(|(client, user, revoked_at)| RevokedGrant {
                    client,
                    user: (!user.is_empty()).then_some(user),
                    revoked_at,
                })
                .collect(),
            truncated,
        })
    }

    /// Drops token revocations, deleted agents and deleted consents whose tokens have all
    /// expired (housekeeping).
    pub async fn purge_revoked_tokens(&self, now: i64) -> Result<()> {
        for table in ["revoked_tokens", "revocation_entries"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE expires_at <= $1"))
                .bind(now)
                .execute(self.pool())
                .await?;
        }
        Ok(())
    }
}
