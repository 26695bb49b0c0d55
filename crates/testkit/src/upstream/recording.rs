//! Mock upstreams that record every request they receive, for tests that assert on what the
//! gateway forwarded.

use super::serve;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// What a mock upstream saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Clone, Default)]
pub struct Recorder(pub Arc<Mutex<Vec<Seen>>>);

impl Recorder {
    pub fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
    pub fn last(&self) -> Seen {
        self.all().last().cloned().expect("upstream was called")
    }
}

/// An OpenAI/Azure-compatible chat server: JSON, or SSE in 3 chunks with a usage chunk when
/// `stream_options.include_usage` is set.
pub async fn mock_llm() -> (SocketAddr, Recorder) {
    let rec = Recorder::default();
    async fn chat(
        State(rec): State<Recorder>,
        uri: axum::http::Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        rec.0.lock().unwrap().push(Seen {
            path: uri.to_string(),
            headers,
            body: json.clone(),
        });
        let model = json["model"].as_str().unwrap_or("unknown").to_string();
        if json["stream"] == json!(true) {
            let mut events = Vec::new();
            for (i, word) in ["Hello", " from", " mock"].iter().enumerate() {
                let role = if i == 0 {
                    json!({"role": "assistant", "content": word})
                } else {
                    json!({"content": word})
                };
                events.push(json!({"id": "c1", "object": "chat.completion.chunk", "model": model, "choices": [{"index": 0, "delta": role, "finish_reason": null}]}));
            }
            events.push(json!({"id": "c1", "object": "chat.completion.chunk", "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}));
            if json.pointer("/stream_options/include_usage") == Some(&json!(true)) {
                events.push(json!({"id": "c1", "object": "chat.completion.chunk", "model": model, "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}));
            }
            let mut text = String::new();
            for e in events {
                text.push_str(&format!("data: {e}\n\n"));
            }
            text.push_str("data: [DONE]\n\n");
            return ([("content-type", "text/event-stream")], text).into_response();
        }
        axum::Json(json!({
            "id": "c1", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from mock"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
        }))
        .into_response()
    }
    let router = axum::Router::new().fallback(chat).with_state(rec.clone());
    (serve(router).await, rec)
}

/// A streamable-HTTP MCP server (answers over SSE, like rmcp's server does) with the given
/// tools; it records the headers of every request and echoes the caller's bearer claims.
pub async fn mock_mcp(
    name: &'static str,
    tools: &'static [&'static str],
) -> (SocketAddr, Recorder) {
    let (router, rec) = mcp_router(name, tools);
    (serve(router).await, rec)
}

/// The router of [`mock_mcp`], to serve over another transport (TLS).
pub fn mcp_router(name: &'static str, tools: &'static [&'static str]) -> (axum::Router, Recorder) {
    let rec = Recorder::default();
    #[derive(Clone)]
    struct S {
        rec: Recorder,
        name: &'static str,
        tools: &'static [&'static str],
    }
    async fn handle(
        State(s): State<S>,
        method: axum::http::Method,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        if method == axum::http::Method::DELETE {
            s.rec.0.lock().unwrap().push(Seen {
                path: "DELETE".into(),
                headers,
                body: Value::Null,
            });
            return StatusCode::OK.into_response();
        }
        let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        s.rec.0.lock().unwrap().push(Seen {
            path: "/mcp".into(),
            headers: headers.clone(),
            body: msg.clone(),
        });
        let Some(id) = msg.get("id").cloned() else {
            return StatusCode::ACCEPTED.into_response();
        };
        let result = match msg["method"].as_str().unwrap_or("") {
            "initialize" => {
                json!({"protocolVersion": msg["params"]["protocolVersion"], "capabilities": {"tools": {"listChanged": true}}, "serverInfo": {"name": s.name, "version": "1"}})
            }
            "tools/list" => {
                json!({"tools": s.tools.iter().map(|t| json!({"name": t, "description": format!("{t} on {}", s.name), "inputSchema": {"type": "object"}})).collect::<Vec<_>>()})
            }
            "tools/call" => {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                json!({"content": [{"type": "text", "text": format!("{} ran {} (authorization: {})", s.name, msg["params"]["name"].as_str().unwrap_or(""), if auth.is_empty() { "none" } else { "bearer" })}], "isError": false})
            }
            _ => {
                let err = json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "Method not found"}});
                return (
                    [
                        ("content-type", "text/event-stream"),
                        ("mcp-session-id", "up-1"),
                    ],
                    format!("data: {err}\n\n"),
                )
                    .into_response();
            }
        };
        let reply = json!({"jsonrpc": "2.0", "id": id, "result": result});
        // A notification before the response, as real servers send progress/logging.
        let note = json!({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "working"}});
        (
            [
                ("content-type", "text/event-stream"),
                ("mcp-session-id", "up-1"),
            ],
            format!("event: message\ndata: {note}\n\nevent: message\ndata: {reply}\n\n"),
        )
            .into_response()
    }
    let router = axum::Router::new()
        .route("/mcp", axum::routing::any(handle))
        .with_state(S {
            rec: rec.clone(),
            name,
            tools,
        });
    (router, rec)
}
