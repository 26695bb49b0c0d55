//! `*/list` (docs/gateway.md §9.5): every target's items, filtered per caller by
//! `mcpAuthorization`, exposed under their multiplexed names, paged through a snapshot.

use super::ctx::Ctx;
use super::envelope::Params;
use super::jsonrpc;
use super::names::{Kind, expose};
use super::session::Session;
use super::target::call_target;
use crate::audit::{DecisionPart, McpPart};
use crate::exchange::Exchange;
use crate::rules::{McpInfo, McpItem};
use base64::Engine;
use http::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Items per page.
pub(super) const PAGE: usize = 1000;

#[allow(clippy::too_many_arguments)]
pub(super) async fn list(
    cx: &Ctx<'_>,
    ex: &mut Exchange,
    session: &Arc<Session>,
    sid: &str,
    kind: Kind,
    id: Value,
    params: &Params,
    part: &mut McpPart,
) -> (StatusCode, Value) {
    let data = json!({"correlationId": ex.correlation_id});
    let list_key = kind.list_key();
    // A cursor pages through the snapshot taken by the first page.
    if let Some(cursor) = params.str("cursor") {
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.split_once(':')
                    .map(|(a, b)| (a.to_string(), b.parse::<usize>().ok()))
            });
        let snapshot = decoded.and_then(|(snap_id, offset)| {
            let lists = session.lists.lock().ok()?;
            let (k, items, created) = lists.get(&snap_id)?;
            (k == list_key && created.elapsed() < Duration::from_secs(60))
                .then(|| (snap_id.clone(), items.clone(), offset))
        });
        let Some((snap_id, items, Some(offset))) = snapshot else {
            return (
                StatusCode::OK,
                jsonrpc::error(&id, jsonrpc::INVALID_PARAMS, "Invalid cursor", data),
            );
        };
        return (
            StatusCode::OK,
            page(&id, list_key, &snap_id, &items, offset, None),
        );
    }
    let mut items = Vec::new();
    let mut unavailable = Vec::new();
    let mut filtered = 0usize;
    let mut index = Vec::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let per_item = cx.rules_levels().iter().any(|(_, r)| r.references_mcp());
    let once = if per_item {
        None
    } else {
        let info = McpInfo {
            method: format!("{list_key}/list"),
            session_id: Some(sid.to_string()),
            tool: None,
            prompt: None,
            resource: None,
        };
        Some(cx.authorize(ex, &info))
    };
    let decided_by_rules = !cx.rules_levels().is_empty();
    for (i, target) in cx.mcp.targets.iter().enumerate() {
        let mut cursor: Option<String> = None;
        let mut got = 0usize;
        for _ in 0..100 {
            let p = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let method = match kind {
                Kind::Tool => "tools/list",
                Kind::Prompt => "prompts/list",
                Kind::Resource => "resources/list",
                Kind::Template => "resources/templates/list",
            };
            // Targets without the capability contribute nothing.
            let has_cap = session.targets[i]
                .state
                .lock()
                .map(|s| {
                    !s.ready
                        || match kind {
                            Kind::Tool => s.offers.tools,
                            Kind::Prompt => s.offers.prompts,
                            _ => s.offers.resources,
                        }
                })
                .unwrap_or(true);
            if !has_cap {
                break;
            }
            match call_target(cx, ex, session, i, method, &p.to_string()).await {
                Ok(reply) => {
                    let reply = reply.value();
                    let Some(result) = reply.get("result") else {
                        unavailable.push(target.name.clone());
                        break;
                    };
                    for item in result
                        .get(list_key)
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                    {
                        let upstream_name = item
                            .get(kind.name_key())
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string();
                        let info = McpInfo {
                            method: method.to_string(),
                            session_id: Some(sid.to_string()),
                            tool: (kind == Kind::Tool).then(|| McpItem {
                                name: upstream_name.clone(),
                                target: target.name.clone(),
                                arguments: None,
                            }),
                            prompt: (kind == Kind::Prompt).then(|| McpItem {
                                name: upstream_name.clone(),
                                target: target.name.clone(),
                                arguments: None,
                            }),
                            resource: matches!(kind, Kind::Resource | Kind::Template).then(|| {
                                McpItem {
                                    name: upstream_name.clone(),
                                    target: target.name.clone(),
                                    arguments: None,
                                }
                            }),
                        };
                        let d = match &once {
                            Some(d) => d.clone(),
                            None => cx.authorize(ex, &info),
                        };
                        if !d.allow {
                            filtered += 1;
                            continue;
                        }
                        let mut item = item;
                        let exposed = expose(cx, kind, &target.name, &upstream_name);
                        item[kind.name_key()] = Value::String(exposed.clone());
                        *counts.entry(exposed.clone()).or_default() += 1;
                        index.push(json!({"name": exposed, "target": i}));
                        items.push(item);
                        got += 1;
                    }
                    cursor = result
                        .get("nextCursor")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    if cursor.is_none() || got >= 10_000 {
                        break;
                    }
                }
                Err(_) => {
                    unavailable.push(target.name.clone());
                    break;
                }
            }
        }
    }
    if !cx.mcp.prefixed() && cx.mcp.targets.len() > 1 {
        // prefixMode never: a name served by several targets is ambiguous and dropped.
        items.retain(|it| {
            counts
                .get(
                    it.get(kind.name_key())
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                )
                .copied()
                .unwrap_or(0)
                == 1
        });
        index.retain(|it| {
            counts
                .get(it.get("name").and_then(Value::as_str).unwrap_or(""))
                .copied()
                .unwrap_or(0)
                == 1
        });
        if let Ok(mut lists) = session.lists.lock() {
            lists.insert(
                format!("index:{list_key}"),
                (list_key.to_string(), Arc::new(index), Instant::now()),
            );
        }
    }
    ex.decision = DecisionPart {
        result: "allow",
        stage: "mcpAuthorization",
        reason: if decided_by_rules {
            "rule_matched".into()
        } else {
            "no_rules".into()
        },
        ..Default::default()
    };
    part.items_filtered = Some(filtered);
    part.unavailable_targets = unavailable.clone();
    let items = Arc::new(items);
    let snap_id = crate::exchange::random_hex(8);
    if items.len() > PAGE
        && let Ok(mut lists) = session.lists.lock()
    {
        lists.retain(|k, (_, _, t)| {
            k.starts_with("index:") || t.elapsed() < Duration::from_secs(60)
        });
        lists.insert(
            snap_id.clone(),
            (list_key.to_string(), items.clone(), Instant::now()),
        );
    }
    part.items_returned = Some(items.len().min(PAGE));
    let meta =
        (!unavailable.is_empty()).then(|| json!({"agentid/unavailableTargets": unavailable}));
    (
        StatusCode::OK,
        page(&id, list_key, &snap_id, &items, 0, meta),
    )
}

fn page(
    id: &Value,
    key: &str,
    snap_id: &str,
    items: &[Value],
    offset: usize,
    meta: Option<Value>,
) -> Value {
    let end = (offset + PAGE).min(items.len());
    let slice = items
        .get(offset..end)
        .map(|s| s.to_vec())
        .unwrap_or_default();
    let mut result = json!({ key: slice });
    if end < items.len() {
        let cursor =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{snap_id}:{end}"));
        result["nextCursor"] = Value::String(cursor);
    }
    if let Some(m) = meta {
        result["_meta"] = m;
    }
    jsonrpc::result(id, result)
}
