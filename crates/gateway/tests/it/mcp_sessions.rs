//! MCP behaviours that need a scripted upstream: pagination across targets' pages and the
//! gateway's own cursors (M6), and an upstream that forgets its session (M9).

use crate::support::*;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Clone, Default)]
struct Scripted {
    /// Sessions issued so far (the current one is `s{n}`).
    sessions: Arc<AtomicU32>,
    /// When set, the next request on a session answers 404 once (the server "restarted").
    forget_next: Arc<AtomicU32>,
    initializes: Arc<AtomicU32>,
}

/// 2,500 tools in upstream pages of 1,000, 1,000 and 500.
async fn handle(State(s): State<Scripted>, headers: HeaderMap, body: Bytes) -> Response {
    let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let method = msg["method"].as_str().unwrap_or("").to_string();
    let current = format!("s{}", s.sessions.load(Ordering::SeqCst));
    if method != "initialize" {
        let sent = headers
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if sent != current || s.forget_next.swap(0, Ordering::SeqCst) == 1 {
            return StatusCode::NOT_FOUND.into_response();
        }
    }
    let Some(id) = msg.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response();
    };
    let result = match method.as_str() {
        "initialize" => {
            s.initializes.fetch_add(1, Ordering::SeqCst);
            let n = s.sessions.fetch_add(1, Ordering::SeqCst) + 1;
            let reply = json!({"jsonrpc": "2.0", "id": id, "result": {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": "big", "version": "1"}}});
            return (
                [
                    ("content-type", "application/json"),
                    ("mcp-session-id", format!("s{n}").as_str()),
                ],
                axum::Json(reply),
            )
                .into_response();
        }
        "tools/list" => {
            let start: usize = msg["params"]["cursor"]
                .as_str()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let end = (start + 1000).min(2500);
            let tools: Vec<Value> = (start..end)
                .map(|i| json!({"name": format!("tool{i:04}"), "inputSchema": {"type": "object"}}))
                .collect();
            let mut r = json!({"tools": tools});
            if end < 2500 {
                r["nextCursor"] = Value::String(end.to_string());
            }
            r
        }
        "tools/call" => {
            json!({"content": [{"type": "text", "text": format!("ran {}", msg["params"]["name"].as_str().unwrap_or(""))}]})
        }
        _ => json!({}),
    };
    let reply = json!({"jsonrpc": "2.0", "id": id, "result": result});
    ([("content-type", "application/json")], axum::Json(reply)).into_response()
}

async fn gateway() -> (agentid_testkit::TestSts, Gw, Scripted, String) {
    let sts = sts().await;
    let token = agent_obo(&sts, &format!("api://{MCP_APP}/access_as_user")).await;
    let iss = claim(&token, "iss").as_str().unwrap().to_string();
    let scripted = Scripted::default();
    let addr = serve(
        axum::Router::new()
            .route("/mcp", axum::routing::post(handle))
            .with_state(scripted.clone()),
    )
    .await;
    let jwks = format!("{}/discovery/v2.0/keys", sts.authority());
    let config = format!(
        r#"
binds:
- port: 3000
  listeners:
  - routes:
    - matches: [{{path: {{exact: /mcp}}}}]
      backends:
      - mcp:
          prefixMode: always
          targets:
          - name: big
            mcp: {{host: "http://{addr}/mcp"}}
      policies:
        jwtAuth:
          mode: strict
          issuer: {iss}
          audiences: [api://{MCP_APP}]
          jwks: {{url: "{jwks}"}}
        mcpAuthorization:
          rules:
          - deny: mcp.tool.name == 'tool0007'
"#
    );
    let gw = Gw::start(&config, Some(sts.ca_file())).await;
    (sts, gw, scripted, token)
}

#[tokio::test]
async fn lists_are_gathered_across_upstream_pages_and_paged_to_the_client() {
    let (sts, gw, _, token) = gateway().await;
    let sid = gw.mcp_session(3000, &token).await;
    let mut names = Vec::new();
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let (st, _, body) = gw
            .mcp(
                3000,
                Some(&token),
                Some(&sid),
                json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list", "params": params}),
            )
            .await;
        assert_eq!(st, 200, "{body}");
        let tools = body["result"]["tools"].as_array().unwrap();
        pages.push(tools.len());
        names.extend(
            tools
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_string()),
        );
        match body["result"]["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    // 2,500 upstream tools, one denied by the rule: 2,499 in pages of 1,000.
    assert_eq!(pages, vec![1000, 1000, 499]);
    assert_eq!(names.first().map(String::as_str), Some("big_tool0000"));
    assert!(!names.contains(&"big_tool0007".to_string()));
    assert_eq!(names.last().map(String::as_str), Some("big_tool2499"));
    let (_, _, body) = gw.mcp(3000, Some(&token), Some(&sid), json!({"jsonrpc": "2.0", "id": 6, "method": "tools/list", "params": {"cursor": "not-a-cursor"}})).await;
    assert_eq!(body["error"]["code"], json!(-32602));
    assert_eq!(body["error"]["message"], json!("Invalid cursor"));
    sts.stop().await;
}

#[tokio::test]
async fn a_target_that_forgets_its_session_is_reinitialized_once() {
    let (sts, gw, scripted, token) = gateway().await;
    let sid = gw.mcp_session(3000, &token).await;
    assert_eq!(scripted.initializes.load(Ordering::SeqCst), 1);
    scripted.forget_next.store(1, Ordering::SeqCst);
    let (_, _, body) = gw.mcp(3000, Some(&token), Some(&sid), json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "big_tool0001", "arguments": {}}})).await;
    assert_eq!(
        body["result"]["content"][0]["text"],
        json!("ran tool0001"),
        "{body}"
    );
    assert_eq!(body["id"], json!(9));
    assert_eq!(
        scripted.initializes.load(Ordering::SeqCst),
        2,
        "one re-initialize, then the call succeeded"
    );
    sts.stop().await;
}
