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

/// Appends `event`'s 36 values, in [`COLS`] order, to a query: the one place an audit row's
/// values are bound (the single insert and the group commit of `audit_writer` both use it).
pub(crate) fn bind_row<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    e: &'q AuditEvent,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    q.bind(&e.id)
        .bind(e.time)
        .bind(&e.tenant_id)
        .bind(&e.replica)
        .bind(&e.endpoint)
        .bind(&e.grant_type)
        .bind(&e.client_id)
        .bind(&e.client_kind)
        .bind(&e.agent_id)
        .bind(&e.blueprint_id)
        .bind(&e.user_id)
        .bind(&e.user_principal_name)
        .bind(&e.credential_type)
        .bind(&e.credential_id)
        .bind(&e.federated_issuer)
        .bind(&e.federated_subject)
        .bind(&e.resource)
        .bind(&e.audience)
        .bind(&e.scopes_requested)
        .bind(&e.scopes_granted)
        .bind(&e.roles)
        .bind(&e.result)
        .bind(&e.error)
        .bind(e.error_code)
        .bind(&e.token_id)
        .bind(e.token_expires_at)
        .bind(&e.refresh_family_id)
        .bind(&e.source_ip)
        .bind(&e.user_agent)
        .bind(&e.correlation_id)
        .bind(&e.trace_id)
        .bind(&e.category)
        .bind(&e.operation)
        .bind(&e.target)
        .bind(&e.parent_uti)
        .bind(&e.parent_kind)
}

/// Values per audit row in [`bind_row`].
pub(crate) const ROW_VALUES: usize = 36;

impl AuditEvent {
    /// Writes the event inside the caller's transaction (with the state change it describes).
    /// Events that stand alone go through [`Store::insert_audit`] instead.
    pub async fn insert(&self, conn: &mut AnyConnection) -> Result<()> {
        static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            let placeholders: Vec<String> = (1..=ROW_VALUES).map(|i| format!("${i}")).collect();
            format!(
                "INSERT INTO audit_events ({COLS}) VALUES ({})",
                placeholders.join(", ")
            )
        });
        bind_row(sqlx::query(SQL.as_str()), self)
            .execute(conn)
            .await?;
        Ok(())
    }
}

impl Store {
    /// Writes an event that stands alone (a refusal, an issuance with nothing else to commit),
    /// durably before it returns: it is group-committed with concurrent events
    /// (docs/performance.md §3.2).
    pub async fn insert_audit(&self, event: &AuditEvent) -> Result<()> {
        self.audit_writer()
            .write(event.clone(), None)
            .await
            .map(|_| ())
    }

    /// [`Store::insert_audit`], written only if the directory generation is still
    /// `generation` when the row is inserted (docs/performance.md §3.1): `Ok(false)` means the
    /// directory changed and nothing was written.
    pub async fn insert_audit_at(&self, event: &AuditEvent, generation: u64) -> Result<bool> {
        self.audit_writer()
            .write(event.clone(), Some(generation))
            .await
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
