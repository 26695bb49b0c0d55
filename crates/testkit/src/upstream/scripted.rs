//! A scripted OpenAI-compatible model and an rmcp streamable-HTTP MCP server. Both refuse a
//! bearer whose audience is not theirs (401 with `WWW-Authenticate`, as Azure OpenAI and MCP
//! servers do), so a client that sends the wrong token fails as it would against the real thing.

use super::StopOnDrop;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock as Content, ErrorData,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use serde_json::{Map, Value, json};
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

// ---------------------------------------------------------------- MCP server

/// What the MCP server saw.
#[derive(Default)]
pub struct McpState {
    pub audience: String,
    /// Claims of every accepted caller of tools/call, with the tool name.
    pub calls: Mutex<Vec<(String, Map<String, Value>)>>,
    /// Raw tokens the server now refuses (a revoked or expired token).
    pub refuse: Mutex<HashSet<String>>,
    pub unauthorized: AtomicUsize,
    /// Tokens seen on accepted requests.
    pub seen_tokens: Mutex<HashSet<String>>,
}

#[derive(Clone)]
struct Tools {
    state: Arc<McpState>,
}

fn tool(name: &str, desc: &str, schema: Value) -> Tool {
    let Value::Object(schema) = schema else {
        unreachable!()
    };
    Tool::new(name.to_string(), desc.to_string(), Arc::new(schema))
}

impl rmcp::ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    // Two pages, so that a client reading only the first misses `echo`.
    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let second = request.and_then(|r| r.cursor).as_deref() == Some("page-2");
        let mut r = if second {
            ListToolsResult::with_all_items(vec![
                tool(
                    "echo",
                    "Echoes its text",
                    json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
                ),
                tool("fail", "Always fails", json!({"type": "object"})),
            ])
        } else {
            ListToolsResult::with_all_items(vec![tool(
                "whoami",
                "Who is calling, as the server sees it",
                json!({"type": "object", "properties": {}}),
            )])
        };
        if !second {
            r.next_cursor = Some("page-2".into());
        }
        Ok(r)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let token = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| bearer(&p.headers))
            .unwrap_or_default();
        let c = agentid_claims::UnverifiedJwt::parse(&token)
            .map(|j| j.claims)
            .unwrap_or_default();
        self.state
            .calls
            .lock()
            .unwrap()
            .push((request.name.to_string(), c.clone()));
        let result = match request.name.as_ref() {
            "whoami" => {
                let pick = |k: &str| c.get(k).cloned().unwrap_or(Value::Null);
                CallToolResult::success(vec![Content::text(
                    json!({
                        "aud": pick("aud"), "idtyp": pick("idtyp"), "appid": pick("appid"),
                        "upn": pick("upn"), "scp": pick("scp"), "roles": pick("roles"),
                    })
                    .to_string(),
                )])
            }
            "echo" => {
                let text = request
                    .arguments
                    .as_ref()
                    .and_then(|a| a.get("text"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                CallToolResult::success(vec![Content::text(format!("echo: {text}"))])
            }
            "fail" => CallToolResult::error(vec![Content::text("the tool failed on purpose")]),
            other => {
                return Err(ErrorData::invalid_params(format!("no tool {other}"), None));
            }
        };
        Ok(result.into())
    }
}

fn bearer(h: &HeaderMap) -> Option<String> {
    h.get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
}

async fn check_bearer(
    State(state): State<Arc<McpState>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let token = bearer(req.headers());
    let ok = token.as_deref().is_some_and(|t| {
        !state.refuse.lock().unwrap().contains(t)
            && agentid_claims::UnverifiedJwt::parse(t)
                .is_ok_and(|j| j.audiences().contains(&state.audience.as_str()))
    });
    if !ok {
        state.unauthorized.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::UNAUTHORIZED,
            [(
                "www-authenticate",
                format!(
                    "Bearer error=\"invalid_token\", resource=\"{}\"",
                    state.audience
                ),
            )],
        )
            .into_response();
    }
    if let Some(t) = token {
        state.seen_tokens.lock().unwrap().insert(t);
    }
    next.run(req).await
}

pub struct McpServer {
    pub url: String,
    pub state: Arc<McpState>,
    _stop: StopOnDrop,
}

impl McpServer {
    pub async fn start(audience: &str) -> McpServer {
        let state = Arc::new(McpState {
            audience: audience.to_string(),
            ..Default::default()
        });
        let s2 = state.clone();
        let service: StreamableHttpService<Tools, LocalSessionManager> = StreamableHttpService::new(
            move || Ok(Tools { state: s2.clone() }),
            Default::default(),
            StreamableHttpServerConfig::default().with_sse_keep_alive(None),
        );
        let app = axum::Router::new().nest_service("/mcp", service).layer(
            axum::middleware::from_fn_with_state(state.clone(), check_bearer),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        McpServer {
            url,
            state,
            _stop: StopOnDrop(task),
        }
    }

    pub fn calls(&self) -> Vec<(String, Map<String, Value>)> {
        self.state.calls.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------- model

/// One scripted answer of the fake model.
#[derive(Clone, Debug)]
pub enum Say {
    Text(String),
    /// (function name, raw arguments) — arguments may be deliberately malformed.
    Tools(Vec<(String, String)>),
}

#[derive(Default)]
pub struct LlmState {
    pub audience: String,
    pub script: Mutex<VecDeque<Say>>,
    /// Every request body and the bearer it came with.
    pub requests: Mutex<Vec<(Option<String>, Value)>>,
    /// Answer when the script is exhausted.
    pub fallback: Mutex<Option<Say>>,
}

pub struct FakeLlm {
    pub base: String,
    pub state: Arc<LlmState>,
    _stop: StopOnDrop,
}

fn sse(events: Vec<Value>) -> Response {
    let mut body = String::new();
    for e in events {
        body.push_str(&format!("data: {e}\n\n"));
    }
    body.push_str("data: [DONE]\n\n");
    ([("content-type", "text/event-stream")], body).into_response()
}

async fn completions(
    State(state): State<Arc<LlmState>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let token = bearer(&headers);
    state
        .requests
        .lock()
        .unwrap()
        .push((token.clone(), body.clone()));
    let aud_ok = token.as_deref().is_some_and(|t| {
        agentid_claims::UnverifiedJwt::parse(t)
            .is_ok_and(|j| j.audiences().contains(&state.audience.as_str()))
    });
    if !aud_ok {
        return (
            StatusCode::UNAUTHORIZED,
            [(
                "www-authenticate",
                format!("Bearer error=\"invalid_token\", error_description=\"audience must be {}\"", state.audience),
            )],
            "{\"error\":{\"code\":\"401\",\"message\":\"Access denied due to invalid subscription key or wrong API endpoint.\"}}",
        )
            .into_response();
    }
    let next = state.script.lock().unwrap().pop_front();
    let say = next
        .or_else(|| state.fallback.lock().unwrap().clone())
        .unwrap_or(Say::Text("(script exhausted)".into()));
    match say {
        // Streamed in two pieces so the client has to put them together.
        Say::Text(t) => {
            let mid = t.len() / 2;
            let (a, b) = t.split_at(
                t.char_indices()
                    .map(|(i, _)| i)
                    .find(|i| *i >= mid)
                    .unwrap_or(0),
            );
            sse(vec![
                json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": a}}]}),
                json!({"choices": [{"index": 0, "delta": {"content": b}, "finish_reason": "stop"}]}),
            ])
        }
        Say::Tools(calls) => {
            let mut events = Vec::new();
            for (i, (name, args)) in calls.iter().enumerate() {
                let split = args.len() / 2;
                let split = (0..=split)
                    .rev()
                    .find(|x| args.is_char_boundary(*x))
                    .unwrap_or(0);
                events.push(json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                    {"index": i, "id": format!("call_{}_{i}", uuid_like()), "type": "function",
                     "function": {"name": name, "arguments": &args[..split]}}]}}]}));
                events.push(json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                    {"index": i, "function": {"arguments": &args[split..]}}]}}]}));
            }
            sse(events)
        }
    }
}

fn uuid_like() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::SeqCst).to_string()
}

impl FakeLlm {
    pub async fn start(audience: &str, script: Vec<Say>) -> FakeLlm {
        let state = Arc::new(LlmState {
            audience: audience.to_string(),
            script: Mutex::new(script.into()),
            ..Default::default()
        });
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(completions))
            .route(
                "/openai/deployments/{d}/chat/completions",
                axum::routing::post(completions),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeLlm {
            base,
            state,
            _stop: StopOnDrop(task),
        }
    }

    pub fn requests(&self) -> Vec<(Option<String>, Value)> {
        self.state.requests.lock().unwrap().clone()
    }
}
