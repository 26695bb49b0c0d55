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
}

const COLS: &str = "id, time, tenant_id, replica, endpoint, grant_type, client_id, client_kind, agent_id, blueprint_id, \
user_id, user_principal_name, credential_type, credential_id, federated_issuer, federated_subject, resource, audience, \
scopes_requested, scopes_granted, roles, result, error, error_code, token_id, token_expires_at, refresh_family_id, \
source_ip, user_agent, correlation_id, trace_id, category, operation, target";

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
    pub limit: i64,
}

impl AuditEvent {
    pub async fn insert(&self, conn: &mut AnyConnection) -> Result<()> {
        let placeholders: Vec<String> = (1..=34).map(|i| format!("${i}")).collect();
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
        let mut sql = format!("SELECT {COLS} FROM audit_events WHERE 1 = 1");
        let mut binds: Vec<String> = Vec::new();
        let mut ints: Vec<(usize, i64)> = Vec::new();
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        let mut push_text = |sql: &mut String, cond: &str, v: &str, binds: &mut Vec<String>| {
            let i = next();
            sql.push_str(&cond.replace("?", &format!("${i}")));
            binds.push(v.to_string());
            i
        };
        // Text filters first, then integer filters: placeholders must be bound in order.
        if let Some(t) = &q.tenant_id {
            push_text(&mut sql, " AND tenant_id = ?", t, &mut binds);
        }
        if let Some(c) = &q.client_id {
            push_text(&mut sql, " AND client_id = ?", c, &mut binds);
        }
        if let Some(a) = &q.agent_id {
            push_text(&mut sql, " AND agent_id = ?", a, &mut binds);
        }
        if let Some(u) = &q.user {
            let i = push_text(
                &mut sql,
                " AND (lower(user_principal_name) = lower(?)",
                u,
                &mut binds,
            );
            sql.push_str(&format!(" OR user_id = ${i})"));
        }
        match q.category.as_deref() {
            Some("token") => sql.push_str(" AND category IS NULL"),
            Some(c) => {
                push_text(&mut sql, " AND category = ?", c, &mut binds);
            }
            None => {}
        }
        if let Some(r) = &q.result {
            push_text(&mut sql, " AND result = ?", r, &mut binds);
        }
        let base = binds.len();
        for (cond, v) in [
            (" AND time >= ", q.since),
            (" AND time <= ", q.until),
            (" AND error_code = ", q.error_code),
        ] {
            if let Some(v) = v {
                let i = base + ints.len() + 1;
                sql.push_str(&format!("{cond}${i}"));
                ints.push((i, v));
            }
        }
        sql.push_str(&format!(
            " ORDER BY time DESC, id DESC LIMIT {}",
            q.limit.clamp(1, 10_000)
        ));
        let mut query = sqlx::query_as::<_, AuditEvent>(&sql);
        for b in binds {
            query = query.bind(b);
        }
        for (_, v) in ints {
            query = query.bind(v);
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
