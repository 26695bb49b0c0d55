//! Audit events: one per issued token and per refusal (docs/sts.md §12). Events are written in the
//! transaction of the state change they describe, or alone for refusals.

use crate::error::Result;
use crate::store::Store;
use serde::Serialize;
use sqlx::{AnyConnection, FromRow};

#[derive(Debug, Clone, Default, Serialize, FromRow)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub id: String,
    pub time: i64,
    pub tenant_id: Option<String>,
    pub replica: String,
    pub endpoint: String,
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub client_kind: Option<String>,
    pub agent_id: Option<String>,
    pub blueprint_id: Option<String>,
    pub user_id: Option<String>,
    pub user_principal_name: Option<String>,
    pub credential_type: Option<String>,
    pub credential_id: Option<String>,
    pub federated_issuer: Option<String>,
    pub federated_subject: Option<String>,
    pub resource: Option<String>,
    pub audience: Option<String>,
    pub scopes_requested: Option<String>,
    pub scopes_granted: Option<String>,
    pub roles: Option<String>,
    pub result: String,
    pub error: Option<String>,
    pub error_code: Option<i64>,
    pub token_id: Option<String>,
    pub token_expires_at: Option<i64>,
    pub refresh_family_id: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub correlation_id: Option<String>,
    pub trace_id: Option<String>,
    /// `token` (default) or `directory`.
    pub category: Option<String>,
    /// For directory events: the operation, e.g. `POST /applications/{id}/addPassword`.
    pub operation: Option<String>,
    /// For directory events: the target object id.
    pub target: Option<String>,
    /// The token this one was exchanged from (docs/audit.md §2): T1 for T2, the user's token for
    /// on-behalf-of, T2′ for `user_fic`.
    pub parent_uti: Option<String>,
    /// What the parent is: `t1`, `user_assertion`, `t2_prime`, `refresh_family`, or for tokens
    /// proven by a credential its kind (`secret`, `private_key_jwt`, `federated`) or the user
    /// sign-in grant (`password`, `authorization_code`, `device_code`).
    pub parent_kind: Option<String>,
}

pub(crate) const COLS: &str = "id, time, tenant_id, replica, endpoint, grant_type, client_id, client_kind, agent_id, blueprint_id, \
user_id, user_principal_name, credential_type, credential_id, federated_issuer, federated_subject, resource, audience, \
scopes_requested, scopes_granted, roles, result, error, error_code, token_id, token_expires_at, refresh_family_id, \
source_ip, user_agent, correlation_id, trace_id, category, operation, target, parent_uti, parent_kind";

/// Filters of `agentid sts audit` and `GET /agentid/v1/auditEvents`.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub tenant_id: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub client_id: Option<String>,
    pub agent_id: Option<String>,
    pub user: Option<String>,
    pub result: Option<String>,
    pub error_code: Option<i64>,
    /// `token` (events without a category) or `directory`.
    pub category: Option<String>,
    pub blueprint_id: Option<String>,
    /// `Some(true)`: issued or succeeded; `Some(false)`: refused.
    pub allowed: Option<bool>,
    /// Events naming this token (`uti`): the console's chain page.
    pub token_id: Option<String>,
    /// Paging: events strictly older than this (time, id) position.
    pub before: Option<(i64, String)>,
    pub limit: i64,
}

impl AuditEvent {
    pub async fn insert(&self, conn: &mut AnyConnection) -> Result<()> {
        let placeholders: Vec<String> = (1..=36).map(|i| format!("${i}")).collect();
        sqlx::query(&format!(
            "INSERT INTO audit_events ({COLS}) VALUES ({})",
            placeholders.join(", ")
        ))
        .bind(&self.id)
        .bind(self.time)
        .bind(&self.tenant_id)
        .bind(&self.replica)
        .bind(&self.endpoint)
        .bind(&self.grant_type)
        .bind(&self.client_id)
        .bind(&self.client_kind)
        .bind(&self.agent_id)
        .bind(&self.blueprint_id)
        .bind(&self.user_id)
        .bind(&self.user_principal_name)
        .bind(&self.credential_type)
        .bind(&self.credential_id)
        .bind(&self.federated_issuer)
        .bind(&self.federated_subject)
        .bind(&self.resource)
        .bind(&self.audience)
        .bind(&self.scopes_requested)
        .bind(&self.scopes_granted)
        .bind(&self.roles)
        .bind(&self.result)
        .bind(&self.error)
        .bind(self.error_code)
        .bind(&self.token_id)
        .bind(self.token_expires_at)
        .bind(&self.refresh_family_id)
        .bind(&self.source_ip)
        .bind(&self.user_agent)
        .bind(&self.correlation_id)
        .bind(&self.trace_id)
        .bind(&self.category)
        .bind(&self.operation)
        .bind(&self.target)
        .bind(&self.parent_uti)
        .bind(&self.parent_kind)
        .execute(conn)
        .await?;
        Ok(())
    }
}

impl Store {
    pub async fn insert_audit(&self, event: &AuditEvent) -> Result<()> {
        let mut conn = self.pool().acquire().await?;
        event.insert(&mut conn).await
    }

    /// Newest first.
    pub async fn audit_events(&self, q: &AuditQuery) -> Result<Vec<AuditEvent>> {
        enum Bind {
            Text(String),
            Int(i64),
        }
        let mut sql = format!("SELECT {COLS} FROM audit_events WHERE 1 = 1");
        let mut binds: Vec<Bind> = Vec::new();
        // `?` in `cond` stands for the next placeholder; every `?` of one condition is the same value.
        let mut push = |sql: &mut String, cond: &str, b: Bind| {
            binds.push(b);
            sql.push_str(&cond.replace('?', &format!("${}", binds.len())));
        };
        let text = |v: &str| Bind::Text(v.to_string());
        if let Some(t) = &q.tenant_id {
            push(&mut sql, " AND tenant_id = ?", text(t));
        }
        if let Some(c) = &q.client_id {
            push(&mut sql, " AND client_id = ?", text(c));
        }
        if let Some(a) = &q.agent_id {
            push(&mut sql, " AND agent_id = ?", text(a));
        }
        if let Some(b) = &q.blueprint_id {
            push(&mut sql, " AND blueprint_id = ?", text(b));
        }
        if let Some(u) = &q.user {
            push(
                &mut sql,
                " AND (lower(user_principal_name) = lower(?) OR user_id = ?)",
                text(u),
            );
        }
        match q.category.as_deref() {
            Some("token") => sql.push_str(" AND category IS NULL"),
            Some(c) => push(&mut sql, " AND category = ?", text(c)),
            None => {}
        }
        if let Some(r) = &q.result {
            push(&mut sql, " AND result = ?", text(r));
        }
        match q.allowed {
            Some(true) => sql.push_str(" AND result IN ('issued', 'succeeded')"),
            Some(false) => sql.push_str(" AND result = 'refused'"),
            None => {}
        }
        if let Some(s) = q.since {
            push(&mut sql, " AND time >= ?", Bind::Int(s));
        }
        if let Some(u) = q.until {
            push(&mut sql, " AND time <= ?", Bind::Int(u));
        }
        if let Some(c) = q.error_code {
            push(&mut sql, " AND error_code = ?", Bind::Int(c));
        }
        if let Some(t) = &q.token_id {
            push(&mut sql, " AND token_id = ?", text(t));
        }
        if let Some((t, id)) = &q.before {
            push(&mut sql, " AND (time < ?", Bind::Int(*t));
            push(&mut sql, " OR (time = ?", Bind::Int(*t));
            push(&mut sql, " AND id < ?))", text(id));
        }
        sql.push_str(&format!(
            " ORDER BY time DESC, id DESC LIMIT {}",
            q.limit.clamp(1, 10_000)
        ));
        let mut query = sqlx::query_as::<_, AuditEvent>(&sql);
        for b in binds {
            query = match b {
                Bind::Text(t) => query.bind(t),
                Bind::Int(i) => query.bind(i),
            };
        }
        Ok(query.fetch_all(self.pool()).await?)
    }

    pub async fn purge_audit_before(&self, before: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM audit_events WHERE time < $1")
            .bind(before)
            .execute(self.pool())
            .await?
            .rows_affected())
    }
}
