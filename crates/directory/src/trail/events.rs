//! The gateways' decision events, as stored by `POST /agentid/v1/auditEvents` (docs/audit.md §4):
//! one row per event, keyed by (tenant, eventId) so a batch sent twice is stored once.

use crate::error::Result;
use crate::store::Store;
use serde::Serialize;
use sqlx::FromRow;

#[derive(Debug, Clone, Default, PartialEq, Serialize, FromRow)]
#[serde(rename_all = "camelCase")]
pub struct GatewayEvent {
    pub tenant_id: String,
    pub event_id: String,
    /// Unix seconds of the decision (the gateway's clock).
    pub time: i64,
    /// Unix seconds the STS stored it.
    pub received_at: i64,
    /// The appId of the gateway that shipped it.
    pub gateway_client_id: String,
    /// `http`, `llm` or `mcp`.
    pub kind: String,
    pub route: Option<String>,
    /// The presented token's `uti`: the join key of the trail.
    pub token_id: Option<String>,
    pub client_app_id: Option<String>,
    pub agent_id: Option<String>,
    pub blueprint_id: Option<String>,
    pub user_id: Option<String>,
    pub user_upn: Option<String>,
    /// `allow` or `deny`.
    pub decision: String,
    pub stage: Option<String>,
    pub reason: Option<String>,
    pub rule: Option<String>,
    pub tool: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub status: Option<i64>,
    pub upstream_status: Option<i64>,
    /// The event as the gateway wrote it (JSON).
    pub event: String,
}

const COLS: &str = "tenant_id, event_id, time, received_at, gateway_client_id, kind, route, token_id, \
client_app_id, agent_id, blueprint_id, user_id, user_upn, decision, stage, reason, rule, tool, method, path, \
status, upstream_status, event";

/// Filters of `GET /agentid/v1/auditEvents?source=gateway` (docs/audit.md §4.2).
#[derive(Debug, Clone, Default)]
pub struct GatewayEventQuery {
    pub tenant_id: String,
    /// Agent identity appId.
    pub agent: Option<String>,
    /// User object id or UPN (case-insensitive).
    pub user: Option<String>,
    /// Blueprint appId.
    pub blueprint: Option<String>,
    /// `allow` or `deny`.
    pub decision: Option<String>,
    pub token_id: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Paging: events strictly older than this (time, eventId) position.
    pub before: Option<(i64, String)>,
    pub limit: i64,
}

impl Store {
    /// Stores a batch in one transaction; events already stored (same tenant and eventId) are
    /// skipped. Returns how many were new.
    pub async fn insert_gateway_events(&self, events: &[GatewayEvent]) -> Result<u64> {
        if events.is_empty() {
            return Ok(0);
        }
        let placeholders: Vec<String> = (1..=23).map(|i| format!("${i}")).collect();
        let sql = format!(
            "INSERT INTO gateway_events ({COLS}) VALUES ({}) ON CONFLICT (tenant_id, event_id) DO NOTHING",
            placeholders.join(", ")
        );
        let mut tx = self.begin_write().await?;
        let mut new = 0;
        for e in events {
            new += sqlx::query(&sql)
                .bind(&e.tenant_id)
                .bind(&e.event_id)
                .bind(e.time)
                .bind(e.received_at)
                .bind(&e.gateway_client_id)
                .bind(&e.kind)
                .bind(&e.route)
                .bind(&e.token_id)
                .bind(&e.client_app_id)
                .bind(&e.agent_id)
                .bind(&e.blueprint_id)
                .bind(&e.user_id)
                .bind(&e.user_upn)
                .bind(&e.decision)
                .bind(&e.stage)
                .bind(&e.reason)
                .bind(&e.rule)
                .bind(&e.tool)
                .bind(&e.method)
                .bind(&e.path)
                .bind(e.status)
                .bind(e.upstream_status)
                .bind(&e.event)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(new)
    }

    /// Newest first, at most `limit` (clamped to 1..=1000).
    pub async fn gateway_events(&self, q: &GatewayEventQuery) -> Result<Vec<GatewayEvent>> {
        enum Bind {
            Text(String),
            Int(i64),
        }
        let mut sql = format!("SELECT {COLS} FROM gateway_events WHERE tenant_id = $1");
        let mut binds: Vec<Bind> = vec![Bind::Text(q.tenant_id.clone())];
        // `?` in `cond` stands for the next placeholder; every `?` of one condition is the same value.
        let mut push = |sql: &mut String, cond: &str, b: Bind| {
            binds.push(b);
            sql.push_str(&cond.replace('?', &format!("${}", binds.len())));
        };
        let text = |v: &str| Bind::Text(v.to_string());
        if let Some(a) = &q.agent {
            push(&mut sql, " AND agent_id = ?", text(a));
        }
        if let Some(b) = &q.blueprint {
            push(&mut sql, " AND blueprint_id = ?", text(b));
        }
        if let Some(d) = &q.decision {
            push(&mut sql, " AND decision = ?", text(d));
        }
        if let Some(t) = &q.token_id {
            push(&mut sql, " AND token_id = ?", text(t));
        }
        if let Some(u) = &q.user {
            push(
                &mut sql,
                " AND (lower(user_id) = lower(?) OR lower(user_upn) = lower(?))",
                text(u),
            );
        }
        if let Some(s) = q.since {
            push(&mut sql, " AND time >= ?", Bind::Int(s));
        }
        if let Some(u) = q.until {
            push(&mut sql, " AND time <= ?", Bind::Int(u));
        }
        if let Some((t, id)) = &q.before {
            push(&mut sql, " AND (time < ?", Bind::Int(*t));
            push(&mut sql, " OR (time = ?", Bind::Int(*t));
            push(&mut sql, " AND event_id < ?))", text(id));
        }
        sql.push_str(&format!(
            " ORDER BY time DESC, event_id DESC LIMIT {}",
            q.limit.clamp(1, 1000)
        ));
        let mut query = sqlx::query_as::<_, GatewayEvent>(&sql);
        for b in binds {
            query = match b {
                Bind::Text(t) => query.bind(t),
                Bind::Int(i) => query.bind(i),
            };
        }
        Ok(query.fetch_all(self.pool()).await?)
    }

    /// The decisions made with any of `token_ids`, oldest first, at most `limit`.
    pub async fn gateway_events_for_tokens(
        &self,
        tenant_id: &str,
        token_ids: &[String],
        limit: i64,
    ) -> Result<Vec<GatewayEvent>> {
        let mut out = Vec::new();
        for t in token_ids {
            let left = limit - out.len() as i64;
            if left <= 0 {
                break;
            }
            let rows: Vec<GatewayEvent> = sqlx::query_as(&format!(
                "SELECT {COLS} FROM gateway_events WHERE tenant_id = $1 AND token_id = $2 \
                 ORDER BY time, event_id LIMIT {left}"
            ))
            .bind(tenant_id)
            .bind(t)
            .fetch_all(self.pool())
            .await?;
            out.extend(rows);
        }
        out.sort_by(|a, b| (a.time, &a.event_id).cmp(&(b.time, &b.event_id)));
        Ok(out)
    }
}
