//! Audit events: one per issued token and per refusal (docs/sts.md §12). Events are written in the
//! transaction of the state change they describe, or alone for refusals.

use crate::error::Result;
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
    /// Events that stand alone go through `Store::insert_audit` (`audit_store.rs`) instead.
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
