//! The store's audit reads and stand-alone writes (docs/sts.md §12). Apart from `audit.rs` so
//! that the event's row shape, which the group-commit writer binds, does not import the store.

use crate::audit::{AuditEvent, AuditQuery, COLS};
use crate::error::Result;
use crate::store::Store;

impl Store {
    /// Writes an event that stands alone (a refusal, an issuance with nothing else to commit),
    /// durably before it returns: it is group-committed with concurrent events
    /// (docs/performance.md §3.2). The event is lent to the writer, not copied, and is back in
    /// `event` when this returns (docs/performance.md §3.4).
    pub async fn insert_audit(&self, event: &mut AuditEvent) -> Result<()> {
        self.audit_writer().write(event, None).await.map(|_| ())
    }

    /// [`Store::insert_audit`], written only if the directory generation is still
    /// `generation` when the row is inserted (docs/performance.md §3.1): `Ok(false)` means the
    /// directory changed and nothing was written.
    pub async fn insert_audit_at(&self, event: &mut AuditEvent, generation: u64) -> Result<bool> {
        self.audit_writer().write(event, Some(generation)).await
    }

    /// What the audit writer's commits wait for on PostgreSQL: `synchronous_commit` on its own
    /// connection (`off` unless [`crate::StoreOptions::durable_audit_flush`], docs/performance.md
    /// §3.2); `None` on SQLite.
    pub async fn audit_synchronous_commit(&self) -> Result<Option<String>> {
        match self.backend() {
            crate::Backend::Sqlite => Ok(None),
            crate::Backend::Postgres => self.audit_writer().synchronous_commit().await.map(Some),
        }
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
