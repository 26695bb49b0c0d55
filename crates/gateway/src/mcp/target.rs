//! The gateway's side of each target's session: its request headers and client, initializing
//! it, one JSON-RPC call with one re-initialization, and closing it (docs/gateway.md §9.3,
//! §9.8).

use super::ctx::Ctx;
use super::jsonrpc::Relayed;
use super::session::{Offers, Session, TargetSession, TargetState, VERSIONS};
use super::upstream::{self, TargetError};
use crate::backend_auth;
use crate::config::model::{McpTarget, TargetEndpoint, TargetTransport};
use crate::exchange::Exchange;
use crate::forward::add_trace_headers;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Headers for an upstream request to one target (docs/gateway.md §5.3: never the client's).
pub(super) async fn target_headers(
    cx: &Ctx<'_>,
    ex: &Exchange,
    target: &McpTarget,
    st: &TargetState,
) -> Result<HeaderMap, String> {
    let mut h = HeaderMap::new();
    if let Some(s) = st
        .upstream_session
        .as_deref()
        .and_then(|s| HeaderValue::from_str(s).ok())
    {
        h.insert("mcp-session-id", s);
    }
    if let Some(v) = st.version.map(HeaderValue::from_static) {
        h.insert("mcp-protocol-version", v);
    }
    add_trace_headers(ex, &mut h);
    h.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("agentid-gateway/", env!("CARGO_PKG_VERSION"))),
    );
    let policy = cx.policy.overlay(&target.policies);
    if let Some(m) = &policy.headers {
        m.apply(&mut h);
    }
    backend_auth::apply(cx.gw, ex, &policy, &mut h, &cx.route.id, &target.name)
        .await
        .map_err(|f| {
            format!(
                "token exchange for MCP target '{}' failed: {}: {f}",
                target.name,
                f.code()
            )
        })?;
    Ok(h)
}

/// Where a streamable-HTTP target is, with the TLS exactly as composed at load
/// (`config::upstream_tls`), so the URL's scheme and the client's TLS settings always agree.
fn endpoint(target: &McpTarget) -> Option<upstream::Endpoint<'_>> {
    match &target.transport {
        TargetTransport::Http(TargetEndpoint { url, tls }) => Some(upstream::Endpoint {
            url,
            tls: tls.as_deref(),
        }),
        TargetTransport::Sse(_) | TargetTransport::Stdio { .. } => None,
    }
}

/// A JSON-RPC request as JSON text: `params` is JSON text already (`envelope::Params::forward`).
fn request_text(id: u64, method: &str, params: &str) -> Bytes {
    let method = Value::from(method).to_string();
    let mut out = String::with_capacity(48 + method.len() + params.len());
    out.push_str(r#"{"jsonrpc":"2.0","id":"#);
    out.push_str(&id.to_string());
    out.push_str(r#","method":"#);
    out.push_str(&method);
    out.push_str(r#","params":"#);
    out.push_str(params);
    out.push('}');
    Bytes::from(out)
}

/// What a target's `initialize` answered that the client's `initialize` merges.
#[derive(Default)]
pub(super) struct Opened {
    pub(super) capabilities: Value,
    pub(super) instructions: Option<String>,
}

/// Opens (or re-opens) a target's session; its state says whether that worked. Returns what
/// the target announced, for the client's `initialize` (nothing of it is kept).
pub(super) async fn init_target(
    cx: &Ctx<'_>,
    ex: &Exchange,
    target: &McpTarget,
    ts: &TargetSession,
    version: &'static str,
    client_info: &Value,
) -> Opened {
    let fail = |reason: String| {
        if let Ok(mut st) = ts.state.lock() {
            st.ready = false;
            st.failure = Some(reason);
            st.attempted = Some(Instant::now());
        }
        Opened::default()
    };
    let to = match &target.transport {
        TargetTransport::Http(_) => endpoint(target),
        TargetTransport::Sse { .. } => {
            return fail("legacy SSE targets are not implemented in this agentid version".into());
        }
        TargetTransport::Stdio { .. } => {
            return fail("stdio targets are not implemented in this agentid version".into());
        }
    };
    let Some(to) = to else {
        return fail("transport not implemented".into());
    };
    let fresh = TargetState::default();
    let headers = match target_headers(cx, ex, target, &fresh).await {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    let n = ts.next_id.fetch_add(1, Ordering::Relaxed);
    let msg = json!({"jsonrpc": "2.0", "id": n, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {}, "clientInfo": client_info}});
    let timeout = cx.snap.settings.timeouts.mcp_initialize;
    let body = Bytes::from(msg.to_string());
    let answer = match upstream::post(&cx.gw.clients, to, headers, body, Some(n), timeout).await {
        Ok(a) => a,
        Err(e) => return fail(e.to_string()),
    };
    let Some(reply) = answer.message.map(|m| m.value()) else {
        return fail("no initialize result".into());
    };
    let Some(result) = reply.get("result") else {
        return fail(format!(
            "initialize refused: {}",
            reply
                .get("error")
                .map(|e| e.to_string())
                .unwrap_or_default()
        ));
    };
    let negotiated = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .and_then(|v| VERSIONS.iter().find(|known| **known == v))
        .copied()
        .unwrap_or(version);
    let capabilities = result.get("capabilities").cloned().unwrap_or(json!({}));
    let opened = Opened {
        instructions: result
            .get("instructions")
            .and_then(Value::as_str)
            .map(str::to_string),
        capabilities,
    };
    let mut st = TargetState {
        ready: true,
        upstream_session: answer.session_id.map(String::into_boxed_str),
        version: Some(negotiated),
        offers: Offers::from_capabilities(&opened.capabilities),
        failure: None,
        attempted: Some(Instant::now()),
    };
    let headers = match target_headers(cx, ex, target, &st).await {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let note = Bytes::from(note.to_string());
    if let Err(e) = upstream::post(&cx.gw.clients, to, headers, note, None, timeout).await {
        st.ready = false;
        st.failure = Some(e.to_string());
    }
    if let Ok(mut s) = ts.state.lock() {
        *s = st;
    }
    opened
}

/// One upstream JSON-RPC request to a target (`params`: the params object as JSON text),
/// re-initializing once when its session was lost or when it failed longer ago than
/// `mcpTargetRetry`.
pub(super) async fn call_target(
    cx: &Ctx<'_>,
    ex: &Exchange,
    session: &Session,
    index: usize,
    method: &str,
    params: &str,
) -> Result<Relayed, String> {
    let target = &cx.mcp.targets[index];
    let ts = &session.targets[index];
    for attempt in 0..2 {
        let st = ts.state.lock().map(|s| s.clone()).unwrap_or_default();
        if !st.ready {
            let retry_due = st
                .attempted
                .is_none_or(|t| t.elapsed() >= cx.snap.settings.timeouts.mcp_target_retry);
            if attempt == 0 && retry_due {
                init_target(
                    cx,
                    ex,
                    target,
                    ts,
                    session.version,
                    &json!({"name": "agentid-gateway", "version": env!("CARGO_PKG_VERSION")}),
                )
                .await;
                continue;
            }
            return Err(format!(
                "MCP target '{}' is unavailable: {}",
                target.name,
                st.failure.unwrap_or_default()
            ));
        }
        let Some(to) = endpoint(target) else {
            return Err(format!(
                "MCP target '{}' is unavailable: transport not implemented",
                target.name
            ));
        };
        let headers = target_headers(cx, ex, target, &st).await?;
        let n = ts.next_id.fetch_add(1, Ordering::Relaxed);
        match upstream::post(
            &cx.gw.clients,
            to,
            headers,
            request_text(n, method, params),
            Some(n),
            cx.snap.settings.timeouts.mcp_request,
        )
        .await
        {
            Ok(a) => {
                return a
                    .message
                    .ok_or_else(|| format!("MCP target '{}' gave no answer", target.name));
            }
            Err(TargetError::SessionLost) if attempt == 0 => {
                init_target(
                    cx,
                    ex,
                    target,
                    ts,
                    session.version,
                    &json!({"name": "agentid-gateway", "version": env!("CARGO_PKG_VERSION")}),
                )
                .await;
            }
            Err(TargetError::Timeout(d)) => {
                return Err(format!("MCP target '{}' timed out after {d}", target.name));
            }
            Err(e) => {
                if let Ok(mut s) = ts.state.lock() {
                    s.ready = false;
                    s.failure = Some(e.to_string());
                    s.attempted = Some(Instant::now());
                }
                return Err(format!("MCP target '{}' is unavailable: {e}", target.name));
            }
        }
    }
    Err(format!("MCP target '{}' is unavailable", target.name))
}

pub(super) async fn close_targets(cx: &Ctx<'_>, ex: &Exchange, session: &Session) {
    for (i, ts) in session.targets.iter().enumerate() {
        let target = &cx.mcp.targets[i];
        let st = ts.state.lock().map(|s| s.clone()).unwrap_or_default();
        if st.upstream_session.is_none() {
            continue;
        }
        if let Some(to) = endpoint(target)
            && let Ok(h) = target_headers(cx, ex, target, &st).await
        {
            upstream::delete(&cx.gw.clients, to, h).await;
        }
    }
}
