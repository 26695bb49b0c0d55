//! `initialize` (docs/gateway.md §9.3): fan out to every target, merge their capabilities and
//! instructions, and open the client's session within the session caps.

use super::ctx::Ctx;
use super::envelope::Params;
use super::jsonrpc;
use super::session::{Session, TargetSession, TargetState, VERSIONS, principal};
use super::sessions::{SessionLimitError, SessionLimits};
use super::target::{close_targets, init_target};
use crate::audit::{DecisionPart, McpPart};
use crate::config::model::Snapshot;
use crate::exchange::Exchange;
use crate::reply::Reply;
use base64::Engine;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub(super) async fn initialize(
    cx: &Ctx<'_>,
    ex: &mut Exchange,
    id: Value,
    params: &Params,
) -> Reply {
    let caller = principal(ex);
    let limits = session_limits(cx.snap);
    // Checked before any target is contacted, and again (atomically) when the session is added.
    if let Err(e) = cx.gw.sessions.admits(&caller, limits) {
        return session_refused(ex, &id, e);
    }
    let requested = params.str("protocolVersion");
    let version: &'static str = requested
        .as_deref()
        .and_then(|v| VERSIONS.iter().find(|known| **known == v))
        .copied()
        .unwrap_or(VERSIONS[0]);
    let session = Arc::new(Session {
        principal: caller,
        route: cx.route.id.clone(),
        version,
        targets: cx
            .mcp
            .targets
            .iter()
            .map(|t| TargetSession {
                name: t.name.clone(),
                state: Mutex::new(TargetState::default()),
                next_id: AtomicU64::new(1),
            })
            .collect(),
        last_used: Mutex::new(Instant::now()),
        lists: Mutex::new(HashMap::new()),
    });
    let client_info = params
        .get("clientInfo")
        .unwrap_or(json!({"name": "agentid-gateway-client", "version": "0"}));
    let futures = session.targets.iter().enumerate().map(|(i, ts)| {
        let target = &cx.mcp.targets[i];
        init_target(cx, ex, target, ts, version, &client_info)
    });
    let opened = futures_util::future::join_all(futures).await;
    let mut failed = Vec::new();
    let mut caps = serde_json::Map::new();
    let mut instructions = Vec::new();
    for (ts, opened) in session.targets.iter().zip(opened) {
        let st = ts.state.lock().map(|s| s.clone()).unwrap_or_default();
        cx.gw
            .metrics
            .mcp_target_up
            .get_or_create(&vec![
                ("route".to_string(), cx.route.id.clone()),
                ("target".to_string(), ts.name.clone()),
            ])
            .set(i64::from(st.ready));
        if !st.ready {
            failed.push((ts.name.clone(), st.failure.unwrap_or_default()));
            continue;
        }
        if let Some(c) = opened.capabilities.as_object() {
            for (k, v) in c {
                if ["tools", "prompts", "resources", "logging", "completions"].contains(&k.as_str())
                {
                    let entry = caps.entry(k.clone()).or_insert(json!({}));
                    if let (Some(e), Some(v)) = (entry.as_object_mut(), v.as_object()) {
                        for (flag, val) in v {
                            if val == &Value::Bool(true) {
                                e.insert(flag.clone(), Value::Bool(true));
                            }
                        }
                    }
                }
            }
        }
        if let Some(text) = opened.instructions.filter(|t| !t.is_empty()) {
            instructions.push((ts.name.clone(), text));
        }
    }
    let mut part = McpPart {
        method: "initialize".into(),
        unavailable_targets: failed.iter().map(|(n, _)| n.clone()).collect(),
        ..Default::default()
    };
    if failed.len() == session.targets.len() || (cx.mcp.fail_closed && !failed.is_empty()) {
        let (name, reason) = failed.first().cloned().unwrap_or_default();
        let reply = jsonrpc::error(
            &id,
            jsonrpc::INTERNAL_ERROR,
            &format!("MCP target '{name}' failed to initialize: {reason}"),
            json!({"correlationId": ex.correlation_id, "target": name}),
        );
        part.error = Some(reply["error"].clone());
        let mut event = ex.event("mcp", 200);
        event.mcp = Some(part);
        // Best effort: close the sessions that did open.
        close_targets(cx, ex, &session).await;
        return Reply::new(jsonrpc::respond(StatusCode::OK, &reply), event);
    }
    let sid = {
        use rand::RngCore;
        let mut b = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut b);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    if let Err(e) = cx.gw.sessions.insert(sid.clone(), session.clone(), limits) {
        close_targets(cx, ex, &session).await;
        return session_refused(ex, &id, e);
    }
    cx.gw
        .metrics
        .mcp_sessions
        .get_or_create(&vec![("route".to_string(), cx.route.id.clone())])
        .inc();
    let instructions = match instructions.len() {
        0 => None,
        1 if cx.mcp.targets.len() == 1 => Some(instructions[0].1.clone()),
        _ => Some(
            instructions
                .iter()
                .map(|(n, t)| format!("[{n}]\n{t}"))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    };
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": caps,
        "serverInfo": {"name": "agentid-gateway", "version": env!("CARGO_PKG_VERSION")},
    });
    if let Some(i) = instructions {
        result["instructions"] = Value::String(i);
    }
    part.session_id = Some(sid.clone());
    let mut event = ex.event("mcp", 200);
    event.mcp = Some(part);
    let mut resp = jsonrpc::respond(StatusCode::OK, &jsonrpc::result(&id, result));
    if let Ok(v) = HeaderValue::from_str(&sid) {
        resp.headers_mut().insert("mcp-session-id", v);
    }
    Reply::new(resp, event)
}

fn session_limits(snap: &Snapshot) -> SessionLimits {
    SessionLimits {
        total: snap.settings.limits.max_mcp_sessions,
        per_principal: snap.settings.limits.max_mcp_sessions_per_principal,
    }
}

/// A refused `initialize`: a JSON-RPC error with the HTTP status of the cap (429 per caller,
/// 503 for the gateway), and an audit event.
fn session_refused(ex: &mut Exchange, id: &Value, e: SessionLimitError) -> Reply {
    ex.decision = DecisionPart {
        result: "deny",
        stage: "mcpSessions",
        reason: e.reason().to_string(),
        ..Default::default()
    };
    let reply = jsonrpc::error(
        id,
        jsonrpc::SERVER_ERROR,
        &format!("Too many MCP sessions: {e}; end one with DELETE or retry later"),
        json!({"correlationId": ex.correlation_id, "limit": e.limit()}),
    );
    let mut event = ex.event("mcp", e.status().as_u16());
    event.mcp = Some(McpPart {
        method: "initialize".into(),
        error: Some(reply["error"].clone()),
        ..Default::default()
    });
    let mut resp = jsonrpc::respond(e.status(), &reply);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    Reply::new(resp, event)
}
