//! Assembling a chain (docs/audit.md §3): walk the token's parents up to the sign-in and the
//! workload credential, its descendants down, then the gateway decisions made with them.
//! Every walk is bounded: a chain is a page, not an export.

use super::hops::Names;
use super::{Chain, Hop};
use crate::audit::{AuditEvent, COLS};
use crate::error::Result;
use crate::store::Store;
use std::collections::HashSet;
use uuid::Uuid;

/// Ancestors followed at most (a real chain has 3–4: sign-in, T1, token, OBO).
const MAX_ANCESTORS: usize = 16;
/// Tokens of the chain (ancestors and descendants) at most.
pub const MAX_TOKENS: usize = 64;
/// Gateway decisions in a chain at most.
pub const MAX_DECISIONS: i64 = 200;

/// The chain of token `uti` of tenant `tenant`, or `None` when the tenant never issued it and
/// no gateway decision names it.
pub async fn chain(store: &Store, tenant: &Uuid, uti: &str) -> Result<Option<Chain>> {
    let tid = tenant.to_string();
    let target = issued(store, &tid, "token_id", uti).await?;
    let mut tokens: Vec<AuditEvent> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut truncated = false;
    if let Some(t) = target {
        seen.insert(uti.to_string());
        tokens.push(t);
    }
    // Up: each token's parents (a token exchanged from a user's token and proven with T1 has two).
    let mut i = 0;
    while i < tokens.len() && i < MAX_ANCESTORS {
        let row = tokens[i].clone();
        i += 1;
        let mut parents: Vec<(&str, String)> = Vec::new();
        if let Some(p) = &row.parent_uti {
            parents.push(("token_id", p.clone()));
        }
        if row.credential_type.as_deref() == Some("t1")
            && let Some(c) = &row.credential_id
        {
            parents.push(("token_id", c.clone()));
        }
        if row.parent_kind.as_deref() == Some("refresh_family")
            && let Some(f) = &row.refresh_family_id
            && let Some(origin) = family_origin(store, &tid, f).await?
            && seen.insert(origin.token_id.clone().unwrap_or_default())
        {
            tokens.push(origin);
        }
        for (col, v) in parents {
            if seen.contains(&v) {
                continue;
            }
            if let Some(p) = issued(store, &tid, col, &v).await? {
                seen.insert(v);
                tokens.push(p);
            }
        }
    }
    // Down: tokens exchanged from the asked-for token, breadth first.
    let mut descendants: Vec<String> = vec![uti.to_string()];
    let mut j = 0;
    while j < descendants.len() {
        let parent = descendants[j].clone();
        j += 1;
        let left = MAX_TOKENS.saturating_sub(tokens.len());
        if left == 0 {
            truncated = true;
            break;
        }
        let rows: Vec<AuditEvent> = sqlx::query_as(&format!(
            "SELECT {COLS} FROM audit_events WHERE tenant_id = $1 AND parent_uti = $2 \
             AND result = 'issued' AND category IS NULL ORDER BY time, id LIMIT {}",
            left + 1
        ))
        .bind(&tid)
        .bind(&parent)
        .fetch_all(store.pool())
        .await?;
        if rows.len() > left {
            truncated = true;
        }
        for r in rows.into_iter().take(left) {
            if let Some(t) = r.token_id.clone()
                && seen.insert(t.clone())
            {
                descendants.push(t);
                tokens.push(r);
            }
        }
    }
    let decisions = store
        .gateway_events_for_tokens(&tid, &descendants, MAX_DECISIONS + 1)
        .await?;
    if decisions.len() as i64 > MAX_DECISIONS {
        truncated = true;
    }
    if tokens.is_empty() && decisions.is_empty() {
        return Ok(None);
    }
    // Parents are issued before their children: time order is causal order.
    tokens.sort_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)));
    let mut names = Names::new(store, *tenant);
    let mut hops: Vec<Hop> = Vec::new();
    for t in &tokens {
        names.token_hops(t, &mut hops).await?;
    }
    for d in decisions.iter().take(MAX_DECISIONS as usize) {
        hops.push(names.decision_hop(d).await?);
    }
    Ok(Some(Chain {
        tenant_id: tid,
        uti: uti.to_string(),
        hops,
        truncated,
    }))
}

/// The issuance event of the token whose `col` is `value`.
async fn issued(store: &Store, tid: &str, col: &str, value: &str) -> Result<Option<AuditEvent>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM audit_events WHERE tenant_id = $1 AND {col} = $2 \
         AND result = 'issued' AND category IS NULL ORDER BY time, id LIMIT 1"
    ))
    .bind(tid)
    .bind(value)
    .fetch_optional(store.pool())
    .await?)
}

/// The sign-in that started a refresh-token family: its first issuance not by refresh.
async fn family_origin(store: &Store, tid: &str, family: &str) -> Result<Option<AuditEvent>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLS} FROM audit_events WHERE tenant_id = $1 AND refresh_family_id = $2 \
         AND result = 'issued' AND category IS NULL AND grant_type <> 'refresh_token' \
         ORDER BY time, id LIMIT 1"
    ))
    .bind(tid)
    .bind(family)
    .fetch_optional(store.pool())
    .await?)
}

/// The tenant that issued `uti`, or whose gateway decisions name it (`agentid sts audit --chain`
/// without `--tenant`).
pub async fn tenant_of(store: &Store, uti: &str) -> Result<Option<Uuid>> {
    let row: Option<(Option<String>,)> = sqlx::query_as(
        "SELECT tenant_id FROM audit_events WHERE token_id = $1 AND result = 'issued' LIMIT 1",
    )
    .bind(uti)
    .fetch_optional(store.pool())
    .await?;
    let tid = match row.and_then(|(t,)| t) {
        Some(t) => Some(t),
        None => sqlx::query_as::<_, (String,)>(
            "SELECT tenant_id FROM gateway_events WHERE token_id = $1 LIMIT 1",
        )
        .bind(uti)
        .fetch_optional(store.pool())
        .await?
        .map(|(t,)| t),
    };
    Ok(tid.and_then(|t| Uuid::parse_str(&t).ok()))
}
