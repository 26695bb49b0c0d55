//! MCP routes (gateway.md §9): the gateway terminates the client's streamable-HTTP session,
//! opens one upstream session per target, multiplexes tools/prompts/resources under prefixed
//! names, filters every list per caller with `mcpAuthorization`, and refuses denied calls with
//! "Unknown tool" (existence is not revealed).

pub mod envelope;
mod sessions;
mod upstream;

use envelope::{Call, Envelope};
pub use sessions::{Principal, SessionLimitError, SessionLimits};

use crate::audit::{McpPart, UpstreamPart};
use crate::body::{self, Body};
use crate::config::model::*;
use crate::exchange::Exchange;
use crate::gateway::Gateway;
use crate::rules::{self, EvalContext, Level, McpInfo, McpItem};
use base64::Engine;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use upstream::TargetError;

const VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
const PAGE: usize = 1000;

/// The gateway's sessions, capped in all and per principal (`sessions`).
pub type Sessions = sessions::SessionTable<Session>;

/// (list kind, filtered items, taken at).
type ListSnapshot = (String, Arc<Vec<Value>>, Instant);

pub struct Session {
    principal: Principal,
    route: String,
    version: String,
    targets: Vec<TargetSession>,
    last_used: Mutex<Instant>,
    /// Filtered list snapshots for cursors: id → (kind, items, created).
    lists: Mutex<HashMap<String, ListSnapshot>>,
}

impl sessions::Tracked for Session {
    fn principal(&self) -> &Principal {
        &self.principal
    }
    fn idle_for(&self) -> Duration {
        // A poisoned clock counts as idle for ever: the session expires.
        self.last_used
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or(Duration::MAX)
    }
}

struct TargetSession {
    name: String,
    state: Mutex<TargetState>,
    next_id: AtomicU64,
}

#[derive(Clone, Default)]
struct TargetState {
    ready: bool,
    upstream_session: Option<String>,
    version: Option<String>,
    capabilities: Value,
    instructions: Option<String>,
    failure: Option<String>,
    attempted: Option<Instant>,
}

fn rpc_error(id: &Value, code: i64, message: &str, data: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message, "data": data}})
}

fn json_resp(status: StatusCode, v: &Value) -> Response<Body> {
    body::json_response(status, v)
}

struct Ctx<'a> {
    gw: &'a Arc<Gateway>,
    snap: &'a Arc<Snapshot>,
    route: &'a Arc<Route>,
    backend: &'a Backend,
    mcp: Arc<McpBackend>,
}

pub async fn handle(
    gw: &Arc<Gateway>,
    snap: &Arc<Snapshot>,
    ex: &mut Exchange,
    route: &Arc<Route>,
    backend: &Backend,
    mcp: Arc<McpBackend>,
    req: Request<Incoming>,
) -> Response<Body> {
    let cx = Ctx {
        gw,
        snap,
        route,
        backend,
        mcp,
    };
    if cx.mcp.dns_rebinding_protection && !local_host_and_origin(req.headers()) {
        return body::gateway_error(
            StatusCode::FORBIDDEN,
            "dns_rebinding",
            "Host/Origin not allowed",
            &ex.correlation_id,
        );
    }
    match *req.method() {
        Method::POST => post(&cx, ex, req).await,
        Method::DELETE => delete(&cx, ex, req.headers()).await,
        Method::GET => {
            let mut r = body::gateway_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this gateway offers no server-to-client stream (GET); use POST",
                &ex.correlation_id,
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            r
        }
        _ => {
            let mut r = body::gateway_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "use GET, POST or DELETE",
                &ex.correlation_id,
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            r
        }
    }
}

fn local_host_and_origin(h: &HeaderMap) -> bool {
    let local = |host: &str| {
        let host = crate::pipeline::strip_port(host);
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

fn principal(ex: &Exchange) -> Principal {
    let c = ex.claims();
    let s = |k: &str| {
        c.and_then(|c| c.get(k))
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let actor = if s("azp").is_empty() {
        s("appid")
    } else {
        s("azp")
    };
    Principal {
        issuer: s("iss"),
        subject: s("sub"),
        actor,
    }
}

async fn post(cx: &Ctx<'_>, ex: &mut Exchange, req: Request<Incoming>) -> Response<Body> {
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
        return body::gateway_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "MCP requests are application/json",
            &ex.correlation_id,
        );
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
        return body::gateway_error(
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            "Accept must allow application/json or text/event-stream",
            &ex.correlation_id,
        );
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
        Err(e) => {
            let message = match &e {
                body::ReadBodyError::TooLarge { limit } => {
                    format!("MCP request body exceeds {limit} bytes")
                }
                other => other.to_string(),
            };
            return body::gateway_error(e.status(), e.code(), &message, &ex.correlation_id);
        }
    };
    let data = json!({"correlationId": ex.correlation_id});
    let call = match envelope::parse(&bytes) {
        Ok(Envelope::Call(call)) => call,
        // A response from the client (to a server request we never relay): accepted, dropped.
        Ok(Envelope::ClientResponse) => return accepted(),
        Err(e) => {
            return json_resp(
                StatusCode::BAD_REQUEST,
                &rpc_error(&e.id, e.code, &e.message, data),
            );
        }
    };
    let Call { id, method, params } = call;
    let params = Value::Object(params);

    if method == "initialize" && id.is_some() {
        return initialize(cx, ex, id.unwrap_or(Value::Null), &params).await;
    }
    let (sid, session) =
        match session_for(cx, ex, session_header, id.as_ref().unwrap_or(&Value::Null)) {
            Ok(found) => found,
            Err(resp) => return *resp,
        };
    if let Ok(mut t) = session.last_used.lock() {
        *t = Instant::now();
    }
    if let Some(v) = version_header
        && v != session.version
    {
        return json_resp(
            StatusCode::BAD_REQUEST,
            &rpc_error(
                &id.unwrap_or(Value::Null),
                -32600,
                &format!(
                    "Invalid Request: MCP-Protocol-Version {v} does not match the negotiated {}",
                    session.version
                ),
                data,
            ),
        );
    }
    let Some(id) = id else {
        // Client notifications: nothing to audit; `initialized` was already sent upstream.
        return accepted();
    };
    let mut part = McpPart {
        method: method.clone(),
        session_id: Some(sid.clone()),
        ..Default::default()
    };
    let (status, reply) = dispatch(
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
    if let Some(err) = reply.get("error") {
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
            .and_then(|x| {
                cx.route
                    .policies
                    .upstream
                    .overlay(&cx.backend.policies)
                    .overlay(&x.policies)
                    .auth
            })
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
    cx.gw.record_with(ex, event, None, Some(&info));
    json_resp(status, &reply)
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
        return Err(Box::new(json_resp(
            StatusCode::BAD_REQUEST,
            &rpc_error(
                id,
                -32600,
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
        _ => Err(Box::new(json_resp(
            StatusCode::NOT_FOUND,
            &rpc_error(id, -32001, "Session not found", data),
        ))),
    }
}

fn accepted() -> Response<Body> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

fn rules_levels<'a>(cx: &'a Ctx<'_>) -> Vec<(Level, &'a crate::rules::RuleSet)> {
    let mut levels = Vec::new();
    if let Some(r) = &cx.route.policies.mcp_authorization {
        levels.push((Level::Route, r));
    }
    if let Some(r) = &cx.backend.mcp_authorization {
        levels.push((Level::Backend, r));
    }
    levels
}

fn authorize(cx: &Ctx<'_>, ex: &Exchange, info: &McpInfo) -> crate::rules::Decision {
    let levels = rules_levels(cx);
    let ctx = EvalContext {
        request: &ex.request,
        source: &ex.source_info,
        jwt: ex.claims(),
        identity: &ex.identity,
        mcp: Some(info),
        response_code: None,
        llm: None,
        backend: None,
    };
    rules::evaluate(&levels, &ctx)
}

async fn initialize(cx: &Ctx<'_>, ex: &mut Exchange, id: Value, params: &Value) -> Response<Body> {
    let caller = principal(ex);
    let limits = session_limits(cx.snap);
    // Checked before any target is contacted, and again (atomically) when the session is added.
    if let Err(e) = cx.gw.sessions.admits(&caller, limits) {
        return session_refused(cx, ex, &id, e);
    }
    let requested = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or(VERSIONS[0]);
    let version = if VERSIONS.contains(&requested) {
        requested
    } else {
        VERSIONS[0]
    }
    .to_string();
    let session = Arc::new(Session {
        principal: caller,
        route: cx.route.id.clone(),
        version: version.clone(),
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
        .cloned()
        .unwrap_or(json!({"name": "agentid-gateway-client", "version": "0"}));
    let futures = session.targets.iter().enumerate().map(|(i, ts)| {
        let target = &cx.mcp.targets[i];
        init_target(cx, ex, target, ts, &version, &client_info)
    });
    futures_util::future::join_all(futures).await;
    let mut failed = Vec::new();
    let mut caps = serde_json::Map::new();
    let mut instructions = Vec::new();
    for ts in &session.targets {
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
        if let Some(c) = st.capabilities.as_object() {
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
        if let Some(text) = st.instructions.filter(|t| !t.is_empty()) {
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
        let reply = rpc_error(
            &id,
            -32603,
            &format!("MCP target '{name}' failed to initialize: {reason}"),
            json!({"correlationId": ex.correlation_id, "target": name}),
        );
        part.error = Some(reply["error"].clone());
        let mut event = ex.event("mcp", 200);
        event.mcp = Some(part);
        cx.gw.record(ex, event, None);
        // Best effort: close the sessions that did open.
        close_targets(cx, ex, &session).await;
        return json_resp(StatusCode::OK, &reply);
    }
    let sid = {
        use rand::RngCore;
        let mut b = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut b);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    if let Err(e) = cx.gw.sessions.insert(sid.clone(), session.clone(), limits) {
        close_targets(cx, ex, &session).await;
        return session_refused(cx, ex, &id, e);
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
    cx.gw.record(ex, event, None);
    let mut resp = json_resp(
        StatusCode::OK,
        &json!({"jsonrpc": "2.0", "id": id, "result": result}),
    );
    if let Ok(v) = HeaderValue::from_str(&sid) {
        resp.headers_mut().insert("mcp-session-id", v);
    }
    resp
}

fn session_limits(snap: &Snapshot) -> SessionLimits {
    SessionLimits {
        total: snap.settings.limits.max_mcp_sessions,
        per_principal: snap.settings.limits.max_mcp_sessions_per_principal,
    }
}

/// A refused `initialize`: a JSON-RPC error with the HTTP status of the cap (429 per caller,
/// 503 for the gateway), and an audit event.
fn session_refused(
    cx: &Ctx<'_>,
    ex: &mut Exchange,
    id: &Value,
    e: SessionLimitError,
) -> Response<Body> {
    ex.decision = crate::audit::DecisionPart {
        result: "deny",
        stage: "mcpSessions",
        reason: e.reason().to_string(),
        ..Default::default()
    };
    let reply = rpc_error(
        id,
        -32000,
        &format!("Too many MCP sessions: {e}; end one with DELETE or retry later"),
        json!({"correlationId": ex.correlation_id, "limit": e.limit()}),
    );
    let mut event = ex.event("mcp", e.status().as_u16());
    event.mcp = Some(McpPart {
        method: "initialize".into(),
        error: Some(reply["error"].clone()),
        ..Default::default()
    });
    cx.gw.record(ex, event, None);
    let mut resp = json_resp(e.status(), &reply);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    resp
}

/// Headers for an upstream request to one target (gateway.md §5.3: never the client's).
async fn target_headers(
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
    if let Some(v) = st
        .version
        .as_deref()
        .and_then(|s| HeaderValue::from_str(s).ok())
    {
        h.insert("mcp-protocol-version", v);
    }
    crate::pipeline::add_trace_headers(ex, &mut h);
    h.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("agentid-gateway/", env!("CARGO_PKG_VERSION"))),
    );
    let policy = cx
        .route
        .policies
        .upstream
        .overlay(&cx.backend.policies)
        .overlay(&target.policies);
    if let Some(m) = &policy.headers {
        m.apply(&mut h);
    }
    if let Some(auth) = &policy.auth {
        match auth.as_ref() {
            BackendAuth::Passthrough { header, prefix } => {
                if let Some(v) = &ex.verified
                    && let Ok(value) =
                        HeaderValue::from_str(&format!("{prefix}{}", v.token.expose()))
                {
                    h.insert(header.clone(), value);
                }
            }
            BackendAuth::Key {
                value,
                header,
                prefix,
            } => {
                if let Ok(v) = HeaderValue::from_str(&format!("{prefix}{}", value.0)) {
                    h.insert(header.clone(), v);
                }
            }
            BackendAuth::OnBehalfOf(obo) => {
                let value = cx
                    .gw
                    .obo
                    .exchange(cx.gw, ex, cx.route, obo, &target.name)
                    .await
                    .map_err(|f| {
                        format!(
                            "token exchange for MCP target '{}' failed: {}: {}",
                            target.name, f.code, f.message
                        )
                    })?;
                if let Ok(v) = HeaderValue::from_str(&value) {
                    h.insert(obo.header.clone(), v);
                }
            }
        }
    }
    Ok(h)
}

/// The client for a target: TLS exactly as composed at load (`config::upstream_tls`), so the
/// URL's scheme and the client's TLS settings always agree.
fn target_client(cx: &Ctx<'_>, target: &McpTarget) -> Result<reqwest::Client, String> {
    match &target.transport {
        TargetTransport::Http(e) | TargetTransport::Sse(e) => cx.gw.clients.get(e.tls.as_deref()),
        TargetTransport::Stdio { .. } => cx.gw.clients.get(None),
    }
}

async fn init_target(
    cx: &Ctx<'_>,
    ex: &Exchange,
    target: &McpTarget,
    ts: &TargetSession,
    version: &str,
    client_info: &Value,
) {
    let fail = |reason: String| {
        if let Ok(mut st) = ts.state.lock() {
            st.ready = false;
            st.failure = Some(reason);
            st.attempted = Some(Instant::now());
        }
    };
    let url = match &target.transport {
        TargetTransport::Http(endpoint) => endpoint.url.clone(),
        TargetTransport::Sse { .. } => {
            return fail("legacy SSE targets are not implemented in this agentid version".into());
        }
        TargetTransport::Stdio { .. } => {
            return fail("stdio targets are not implemented in this agentid version".into());
        }
    };
    let client = match target_client(cx, target) {
        Ok(c) => c,
        Err(e) => return fail(e),
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
    let answer = match upstream::post(&client, &url, headers.clone(), &msg, Some(n), timeout).await
    {
        Ok(a) => a,
        Err(e) => return fail(e.to_string()),
    };
    let Some(reply) = answer.message else {
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
        .filter(|v| VERSIONS.contains(v))
        .unwrap_or(version)
        .to_string();
    let mut st = TargetState {
        ready: true,
        upstream_session: answer.session_id,
        version: Some(negotiated),
        capabilities: result.get("capabilities").cloned().unwrap_or(json!({})),
        instructions: result
            .get("instructions")
            .and_then(Value::as_str)
            .map(str::to_string),
        failure: None,
        attempted: Some(Instant::now()),
    };
    let headers = match target_headers(cx, ex, target, &st).await {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    if let Err(e) = upstream::post(&client, &url, headers, &note, None, timeout).await {
        st.ready = false;
        st.failure = Some(e.to_string());
    }
    if let Ok(mut s) = ts.state.lock() {
        *s = st;
    }
}

/// One upstream JSON-RPC request to a target, re-initializing once when its session was lost
/// or when it failed longer ago than `mcpTargetRetry`.
async fn call_target(
    cx: &Ctx<'_>,
    ex: &Exchange,
    session: &Session,
    index: usize,
    method: &str,
    params: Value,
) -> Result<Value, String> {
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
                    &session.version,
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
        let TargetTransport::Http(TargetEndpoint { url, .. }) = &target.transport else {
            return Err(format!(
                "MCP target '{}' is unavailable: transport not implemented",
                target.name
            ));
        };
        let client = target_client(cx, target)?;
        let headers = target_headers(cx, ex, target, &st).await?;
        let n = ts.next_id.fetch_add(1, Ordering::Relaxed);
        let msg = json!({"jsonrpc": "2.0", "id": n, "method": method, "params": params});
        match upstream::post(
            &client,
            url,
            headers,
            &msg,
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
                    &session.version,
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

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Tool,
    Prompt,
    Resource,
    Template,
}

impl Kind {
    fn list_key(self) -> &'static str {
        match self {
            Kind::Tool => "tools",
            Kind::Prompt => "prompts",
            Kind::Resource => "resources",
            Kind::Template => "resourceTemplates",
        }
    }
    fn name_key(self) -> &'static str {
        match self {
            Kind::Tool | Kind::Prompt => "name",
            Kind::Resource => "uri",
            Kind::Template => "uriTemplate",
        }
    }
}

fn expose(cx: &Ctx<'_>, kind: Kind, target: &str, name: &str) -> String {
    if !cx.mcp.prefixed() {
        return name.to_string();
    }
    match kind {
        Kind::Tool | Kind::Prompt => format!("{target}_{name}"),
        Kind::Resource | Kind::Template => {
            if name.contains("://") || name.contains(':') {
                format!("{target}+{name}")
            } else {
                name.to_string()
            }
        }
    }
}

/// Splits an exposed name into (target index, upstream name).
fn resolve(cx: &Ctx<'_>, session: &Session, kind: Kind, exposed: &str) -> Option<(usize, String)> {
    if !cx.mcp.prefixed() {
        if cx.mcp.targets.len() == 1 {
            return Some((0, exposed.to_string()));
        }
        // prefixMode never with several targets: the index of the last list decides.
        let lists = session.lists.lock().ok()?;
        let idx = lists.get(&format!("index:{}", kind.list_key()))?.1.clone();
        return idx.iter().find_map(|v| {
            (v.get("name").and_then(Value::as_str) == Some(exposed))
                .then(|| {
                    v.get("target")
                        .and_then(Value::as_u64)
                        .map(|t| (t as usize, exposed.to_string()))
                })
                .flatten()
        });
    }
    let sep = match kind {
        Kind::Tool | Kind::Prompt => '_',
        _ => '+',
    };
    let (target, name) = exposed.split_once(sep)?;
    let idx = cx.mcp.targets.iter().position(|t| t.name == target)?;
    Some((idx, name.to_string()))
}

#[allow(clippy::too_many_arguments)]
async fn dispatch(
    cx: &Ctx<'_>,
    ex: &mut Exchange,
    session: &Arc<Session>,
    sid: &str,
    method: &str,
    id: Value,
    params: &Value,
    part: &mut McpPart,
) -> (StatusCode, Value) {
    let data = json!({"correlationId": ex.correlation_id});
    match method {
        "ping" => (
            StatusCode::OK,
            json!({"jsonrpc": "2.0", "id": id, "result": {}}),
        ),
        "tools/list" => list(cx, ex, session, sid, Kind::Tool, id, params, part).await,
        "prompts/list" => list(cx, ex, session, sid, Kind::Prompt, id, params, part).await,
        "resources/list" => list(cx, ex, session, sid, Kind::Resource, id, params, part).await,
        "resources/templates/list" => {
            list(cx, ex, session, sid, Kind::Template, id, params, part).await
        }
        "tools/call"
        | "prompts/get"
        | "resources/read"
        | "resources/subscribe"
        | "resources/unsubscribe"
        | "completion/complete" => {
            let (kind, exposed) = match method {
                "tools/call" => (
                    Kind::Tool,
                    params
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                ),
                "prompts/get" => (
                    Kind::Prompt,
                    params
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                ),
                "completion/complete" => {
                    let Some(r) = params.get("ref").filter(|r| r.is_object()).cloned() else {
                        return (
                            StatusCode::OK,
                            rpc_error(&id, -32602, "Invalid params: ref must be an object", data),
                        );
                    };
                    if r.get("type").and_then(Value::as_str) == Some("ref/prompt") {
                        (
                            Kind::Prompt,
                            r.get("name")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                        )
                    } else {
                        (
                            Kind::Resource,
                            r.get("uri")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                        )
                    }
                }
                _ => (
                    Kind::Resource,
                    params
                        .get("uri")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                ),
            };
            let unknown = |what: &str| {
                rpc_error(
                    &id,
                    -32602,
                    &format!("Unknown {what}: {exposed}"),
                    data.clone(),
                )
            };
            let what = match kind {
                Kind::Tool => "tool",
                Kind::Prompt => "prompt",
                _ => "resource",
            };
            let Some((idx, upstream_name)) = resolve(cx, session, kind, &exposed) else {
                return (StatusCode::OK, unknown(what));
            };
            let target_name = cx.mcp.targets[idx].name.clone();
            part.target = Some(target_name.clone());
            match kind {
                Kind::Tool => {
                    part.tool = Some(upstream_name.clone());
                    part.exposed_name = Some(exposed.clone());
                }
                Kind::Prompt => part.prompt = Some(upstream_name.clone()),
                _ => part.resource = Some(upstream_name.clone()),
            }
            let item = McpItem {
                name: upstream_name.clone(),
                target: target_name.clone(),
                arguments: None,
            };
            let info = McpInfo {
                method: method.to_string(),
                session_id: Some(sid.to_string()),
                tool: (kind == Kind::Tool).then(|| McpItem {
                    name: upstream_name.clone(),
                    target: target_name.clone(),
                    arguments: params.get("arguments").cloned(),
                }),
                prompt: (kind == Kind::Prompt).then(|| McpItem {
                    name: item.name.clone(),
                    target: item.target.clone(),
                    arguments: None,
                }),
                resource: matches!(kind, Kind::Resource | Kind::Template).then_some(item),
            };
            let d = authorize(cx, ex, &info);
            ex.record_decision("mcpAuthorization", &d);
            if !d.allow {
                return (StatusCode::OK, unknown(what));
            }
            let mut upstream_params = params.clone();
            match (method, kind) {
                ("completion/complete", Kind::Prompt) => {
                    upstream_params["ref"]["name"] = Value::String(upstream_name)
                }
                ("completion/complete", _) => {
                    upstream_params["ref"]["uri"] = Value::String(upstream_name)
                }
                (_, Kind::Tool) | (_, Kind::Prompt) => {
                    upstream_params["name"] = Value::String(upstream_name)
                }
                _ => upstream_params["uri"] = Value::String(upstream_name),
            }
            match call_target(cx, ex, session, idx, method, upstream_params).await {
                Ok(mut reply) => {
                    reply["id"] = id;
                    if method == "resources/read"
                        && cx.mcp.prefixed()
                        && let Some(contents) = reply
                            .pointer_mut("/result/contents")
                            .and_then(Value::as_array_mut)
                    {
                        for c in contents {
                            if let Some(uri) =
                                c.get("uri").and_then(Value::as_str).map(str::to_string)
                            {
                                c["uri"] =
                                    Value::String(expose(cx, Kind::Resource, &target_name, &uri));
                            }
                        }
                    }
                    (StatusCode::OK, reply)
                }
                Err(msg) => (
                    StatusCode::OK,
                    rpc_error(
                        &id,
                        -32603,
                        &msg,
                        json!({"correlationId": ex.correlation_id, "target": target_name}),
                    ),
                ),
            }
        }
        "logging/setLevel" => {
            for i in 0..cx.mcp.targets.len() {
                let _ = call_target(cx, ex, session, i, method, params.clone()).await;
            }
            (
                StatusCode::OK,
                json!({"jsonrpc": "2.0", "id": id, "result": {}}),
            )
        }
        other => (
            StatusCode::OK,
            rpc_error(&id, -32601, &format!("Method not found: {other}"), data),
        ),
    }
}

#[allow(clippy::too_many_arguments)]
async fn list(
    cx: &Ctx<'_>,
    ex: &mut Exchange,
    session: &Arc<Session>,
    sid: &str,
    kind: Kind,
    id: Value,
    params: &Value,
    part: &mut McpPart,
) -> (StatusCode, Value) {
    let data = json!({"correlationId": ex.correlation_id});
    let list_key = kind.list_key();
    // A cursor pages through the snapshot taken by the first page.
    if let Some(cursor) = params.get("cursor").and_then(Value::as_str) {
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
                rpc_error(&id, -32602, "Invalid cursor", data),
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
    let per_item = rules_levels(cx).iter().any(|(_, r)| r.references_mcp());
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
        Some(authorize(cx, ex, &info))
    };
    let decided_by_rules = !rules_levels(cx).is_empty();
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
            let cap = match kind {
                Kind::Tool => "tools",
                Kind::Prompt => "prompts",
                _ => "resources",
            };
            let has_cap = session.targets[i]
                .state
                .lock()
                .map(|s| !s.ready || s.capabilities.get(cap).is_some())
                .unwrap_or(true);
            if !has_cap {
                break;
            }
            match call_target(cx, ex, session, i, method, p).await {
                Ok(reply) => {
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
                            None => authorize(cx, ex, &info),
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
    ex.decision = crate::audit::DecisionPart {
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
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

async fn close_targets(cx: &Ctx<'_>, ex: &Exchange, session: &Session) {
    for (i, ts) in session.targets.iter().enumerate() {
        let target = &cx.mcp.targets[i];
        let st = ts.state.lock().map(|s| s.clone()).unwrap_or_default();
        if st.upstream_session.is_none() {
            continue;
        }
        if let (TargetTransport::Http(TargetEndpoint { url, .. }), Ok(client)) =
            (&target.transport, target_client(cx, target))
            && let Ok(h) = target_headers(cx, ex, target, &st).await
        {
            upstream::delete(&client, url, h).await;
        }
    }
}

async fn delete(cx: &Ctx<'_>, ex: &mut Exchange, headers: &HeaderMap) -> Response<Body> {
    let header = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (sid, session) = match session_for(cx, ex, header, &Value::Null) {
        Ok(found) => found,
        Err(resp) => return *resp,
    };
    cx.gw.sessions.remove(&sid);
    cx.gw
        .metrics
        .mcp_sessions
        .get_or_create(&vec![("route".to_string(), cx.route.id.clone())])
        .dec();
    close_targets(cx, ex, &session).await;
    let mut event = ex.event("mcp", 200);
    event.mcp = Some(McpPart {
        method: "session/delete".into(),
        session_id: Some(sid),
        ..Default::default()
    });
    cx.gw.record(ex, event, None);
    Response::new(body::empty())
}
