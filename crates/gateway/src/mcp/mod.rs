//! MCP routes (docs/gateway.md §9): the gateway terminates the client's streamable-HTTP session,
//! opens one upstream session per target, multiplexes tools/prompts/resources under prefixed
//! names, filters every list per caller with `mcpAuthorization`, and refuses denied calls with
//! "Unknown tool" (existence is not revealed).
//!
//! This module is the transport (§9.1): method, media types, the session header. `initialize`
//! opens sessions, `dispatch` serves a session's requests (`list` for lists, `names` for the
//! multiplexed names), `target` talks to each target, `session` holds a session's state and
//! `sessions` the bounded table of them; `envelope` parses and `jsonrpc` writes messages.

mod ctx;
mod dispatch;
pub mod envelope;
mod initialize;
mod jsonrpc;
mod list;
mod names;
mod raw;
pub mod session;
mod sessions;
mod target;
mod upstream;

use ctx::Ctx;
use envelope::{Call, Envelope};
use session::{Session, principal};
pub use sessions::{Principal, SessionLimitError, SessionLimits};

use crate::audit::{McpPart, UpstreamPart};
use crate::body::{self, Body};
use crate::config::model::McpBackend;
use crate::ctx::RouteCtx;
use crate::error::GatewayError;
use crate::exchange::Exchange;
use crate::host::strip_port;
use crate::reply::{Record, Reply};
use crate::rules::{McpInfo, McpItem};
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

/// Serves one request to an MCP route. Transport refusals are not audited; every JSON-RPC
/// request of a session is (docs/gateway.md §11).
pub async fn handle(
    route_ctx: &RouteCtx<'_>,
    ex: &mut Exchange,
    mcp: &McpBackend,
    req: Request<Incoming>,
) -> Reply {
    let cx = Ctx { route_ctx, mcp };
    if cx.mcp.dns_rebinding_protection && !local_host_and_origin(req.headers()) {
        return refused(ex, GatewayError::DnsRebinding);
    }
    match *req.method() {
        Method::POST => post(&cx, ex, req).await,
        Method::DELETE => delete(&cx, ex, req.headers()).await,
        Method::GET => refused(
            ex,
            GatewayError::MethodNotAllowed(
                "this gateway offers no server-to-client stream (GET); use POST",
            ),
        ),
        _ => refused(
            ex,
            GatewayError::MethodNotAllowed("use GET, POST or DELETE"),
        ),
    }
}

/// A refusal at the transport: the gateway's JSON error, no audit event.
fn refused(ex: &Exchange, e: GatewayError) -> Reply {
    Reply::unaudited(e.into_response(&ex.correlation_id))
}

fn local_host_and_origin(h: &HeaderMap) -> bool {
    let local = |host: &str| {
        let host = strip_port(host);
        host == "localhost" || host == "127.0.0.1" || host == "::1"
    };
    let host_ok = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .is_some_and(local);
    let origin_ok = match h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(o) => url::Url::parse(o)
            .ok()
            .and_then(|u| u.host_str().map(|h| local(h.trim_matches(['[', ']']))))
            .unwrap_or(false),
    };
    host_ok && origin_ok
}

async fn post(cx: &Ctx<'_>, ex: &mut Exchange, req: Request<Incoming>) -> Reply {
    let ct_ok = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !ct_ok {
        return refused(ex, GatewayError::UnsupportedMediaType);
    }
    let accept_ok = match req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
    {
        None => true,
        Some(a) => {
            a.contains("application/json") || a.contains("text/event-stream") || a.contains("*/*")
        }
    };
    if !accept_ok {
        return refused(ex, GatewayError::NotAcceptable);
    }
    let session_header = req
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let version_header = req
        .headers()
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let limit = cx.snap.settings.limits.mcp_request_body_bytes;
    let within = cx.snap.settings.timeouts.request_body;
    let bytes = match body::read_limited(req.into_body(), limit, within).await {
        Ok(b) => b,
        Err(body::ReadBodyError::TooLarge { limit }) => {
            return refused(ex, GatewayError::McpBodyTooLarge { limit });
        }
        Err(e) => return refused(ex, e.into()),
    };
    let data = json!({"correlationId": ex.correlation_id});
    let call = match envelope::parse(&bytes) {
        Ok(Envelope::Call(call)) => call,
        // A response from the client (to a server request we never relay): accepted, dropped.
        Ok(Envelope::ClientResponse) => return Reply::unaudited(jsonrpc::accepted()),
        Err(e) => {
            let reply = jsonrpc::error(&e.id, e.code, &e.message, data);
            return Reply::unaudited(jsonrpc::respond(StatusCode::BAD_REQUEST, &reply));
        }
    };
    let Call { id, method, params } = call;

    if method == "initialize" && id.is_some() {
        return initialize::initialize(cx, ex, id.unwrap_or(Value::Null), &params).await;
    }
    let (sid, session) =
        match session_for(cx, ex, session_header, id.as_ref().unwrap_or(&Value::Null)) {
            Ok(found) => found,
            Err(resp) => return Reply::unaudited(*resp),
        };
    if let Ok(mut t) = session.last_used.lock() {
        *t = Instant::now();
    }
    if let Some(v) = version_header
        && v != session.version
    {
        return Reply::unaudited(jsonrpc::respond(
            StatusCode::BAD_REQUEST,
            &jsonrpc::error(
                &id.unwrap_or(Value::Null),
                jsonrpc::INVALID_REQUEST,
                &format!(
                    "Invalid Request: MCP-Protocol-Version {v} does not match the negotiated {}",
                    session.version
                ),
                data,
            ),
        ));
    }
    let Some(id) = id else {
        // Client notifications: nothing to audit; `initialized` was already sent upstream.
        return Reply::unaudited(jsonrpc::accepted());
    };
    let mut part = McpPart {
        method: method.clone(),
        session_id: Some(sid.clone()),
        ..Default::default()
    };
    let (status, reply) = dispatch::dispatch(
        cx,
        ex,
        &session,
        &sid,
        &method,
        id.clone(),
        &params,
        &mut part,
    )
    .await;
    if let Some(err) = reply.error() {
        part.error = Some(json!({"code": err.get("code"), "message": err.get("message")}));
    }
    let mut event = ex.event("mcp", status.as_u16());
    let info = McpInfo {
        method: method.clone(),
        session_id: Some(sid),
        tool: part.tool.clone().map(|name| McpItem {
            name,
            target: part.target.clone().unwrap_or_default(),
            arguments: None,
        }),
        prompt: None,
        resource: None,
    };
    event.upstream = part.target.as_ref().map(|t| {
        let credential = cx
            .mcp
            .targets
            .iter()
            .find(|x| &x.name == t)
            .and_then(|x| cx.policy.overlay(&x.policies).auth)
            .map(|a| a.kind())
            .unwrap_or("none");
        UpstreamPart {
            target: Some(t.clone()),
            credential,
            ..Default::default()
        }
    });
    cx.gw
        .metrics
        .mcp_requests
        .get_or_create(&vec![
            ("route".to_string(), cx.route.id.clone()),
            (
                "target".to_string(),
                part.target.clone().unwrap_or_default(),
            ),
            ("method".to_string(), method),
            ("tool".to_string(), part.tool.clone().unwrap_or_default()),
            ("decision".to_string(), event.decision.result.to_string()),
        ])
        .inc();
    event.mcp = Some(part);
    let record = Record {
        event,
        llm: None,
        mcp: Some(info),
    };
    Reply::new(reply.respond(status), record)
}

/// The caller's session: the header must be present (400) and name a live session created by
/// the same principal on this route, with the same targets (else 404, with no hint that the id
/// exists; the client initializes again).
fn session_for(
    cx: &Ctx<'_>,
    ex: &Exchange,
    header: Option<String>,
    id: &Value,
) -> Result<(String, Arc<Session>), Box<Response<Body>>> {
    let data = json!({"correlationId": ex.correlation_id});
    let Some(sid) = header else {
        return Err(Box::new(jsonrpc::respond(
            StatusCode::BAD_REQUEST,
            &jsonrpc::error(
                id,
                jsonrpc::INVALID_REQUEST,
                "Invalid Request: Mcp-Session-Id header required",
                data,
            ),
        )));
    };
    match cx.gw.sessions.get(&sid) {
        // A reload that changed the route's targets ends its sessions: indexes into the
        // session's targets must mean the same targets as the config serving this request.
        Some(s)
            if s.principal == principal(ex)
                && s.route == cx.route.id
                && s.targets
                    .iter()
                    .map(|t| &t.name)
                    .eq(cx.mcp.targets.iter().map(|t| &t.name)) =>
        {
            Ok((sid, s))
        }
        _ => Err(Box::new(jsonrpc::respond(
            StatusCode::NOT_FOUND,
            &jsonrpc::error(id, jsonrpc::SESSION_NOT_FOUND, "Session not found", data),
        ))),
    }
}

async fn delete(cx: &Ctx<'_>, ex: &mut Exchange, headers: &HeaderMap) -> Reply {
    let header = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (sid, session) = match session_for(cx, ex, header, &Value::Null) {
        Ok(found) => found,
        Err(resp) => return Reply::unaudited(*resp),
    };
    cx.gw.sessions.remove(&sid);
    cx.gw
        .metrics
        .mcp_sessions
        .get_or_create(&vec![("route".to_string(), cx.route.id.clone())])
        .dec();
    target::close_targets(cx, ex, &session).await;
    let mut event = ex.event("mcp", 200);
    event.mcp = Some(McpPart {
        method: "session/delete".into(),
        session_id: Some(sid),
        ..Default::default()
    });
    Reply::new(Response::new(body::empty()), event)
}
