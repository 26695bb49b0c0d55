//! The name `mcpAuthorization` checks is the name the target receives (docs/performance.md
//! §6.2): a hostile `tools/call` (duplicate members, escaped member names, names hidden in
//! nested objects) either is refused or reaches the target with exactly the name and the
//! arguments that were authorized. Also: arguments go upstream as written when no rule reads
//! them.

use crate::support::*;
use agentid_gateway::mcp::envelope::{self, Envelope};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// Every `tools/call` body the target received, as bytes.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Bytes>>>);

async fn target(State(r): State<Received>, body: Bytes) -> Response {
    let msg: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(id) = msg.get("id").cloned() else {
        return axum::http::StatusCode::ACCEPTED.into_response();
    };
    let result = match msg["method"].as_str().unwrap_or("") {
        "initialize" => {
            json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {}}, "serverInfo": {"name": "t", "version": "1"}})
        }
        _ => {
            r.0.lock().unwrap().push(body.clone());
            json!({"content": [{"type": "text", "text": "ran"}]})
        }
    };
    (
        [
            ("content-type", "application/json"),
            ("mcp-session-id", "t-session"),
        ],
        axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})),
    )
        .into_response()
}

async fn gateway() -> (Gw, Received) {
    let received = Received::default();
    let addr = serve(
        axum::Router::new()
            .route("/mcp", axum::routing::post(target))
            .with_state(received.clone()),
    )
    .await;
    let targets = format!(
        r#"[{{name: a, mcp: {{host: "http://{addr}/mcp"}}}}, {{name: b, mcp: {{host: "http://{addr}/mcp"}}}}]"#
    );
    let config = format!(
        r#"
binds:
- port: 3000
  listeners:
  - routes:
    - matches: [{{path: {{exact: /mcp}}}}]
      backends: [{{mcp: {{targets: {targets}}}}}]
      policies:
        mcpAuthorization:
          rules:
          - deny: mcp.tool.name == 'secret'
          - deny: mcp.tool.arguments != null && 'mode' in mcp.tool.arguments && mcp.tool.arguments.mode == 'admin'
    - matches: [{{path: {{exact: /raw}}}}]
      backends: [{{mcp: {{targets: {targets}}}}}]
"#
    );
    (Gw::start(&config, None).await, received)
}

/// POSTs a body as written; returns the HTTP status and the JSON-RPC answer.
async fn post(gw: &Gw, path: &str, sid: Option<&str>, body: &str) -> (u16, Value, Option<String>) {
    let mut req = gw
        .http
        .post(gw.url(3000, path))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(s) = sid {
        req = req.header("mcp-session-id", s);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, resp.json().await.unwrap_or(Value::Null), sid)
}

async fn session(gw: &Gw, path: &str) -> String {
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let (st, body, sid) = post(gw, path, None, init).await;
    assert_eq!(st, 200, "{body}");
    sid.expect("session id")
}

fn call(params: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{params}}}"#)
}

/// What became of a hostile call.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Refused before dispatch: HTTP 400 with this JSON-RPC code.
    Refused(i64),
    /// Answered "Unknown tool" (denied or not found): nothing forwarded.
    Unknown,
    /// Forwarded with this tool name and these arguments (as the target parsed them).
    Forwarded(&'static str, Value),
}

#[tokio::test]
async fn the_name_authorized_is_the_name_forwarded() {
    let (gw, received) = gateway().await;
    let sid = session(&gw, "/mcp").await;
    use Outcome::*;
    let cases: Vec<(String, Outcome)> = vec![
        (call(r#"{"name":"a_echo","arguments":{"n":1}}"#), Forwarded("echo", json!({"n": 1}))),
        (call(r#"{"name":"a_secret"}"#), Unknown),
        // Duplicate members, in either order, plain or escaped: refused.
        (call(r#"{"name":"a_echo","name":"a_secret"}"#), Refused(-32602)),
        (call(r#"{"name":"a_secret","name":"a_echo"}"#), Refused(-32602)),
        (call(r#"{"na\u006de":"a_echo","name":"a_secret"}"#), Refused(-32602)),
        (call(r#"{"name":"a_echo","\u006eame":"a_secret"}"#), Refused(-32602)),
        // An escaped member name is that name; an escaped value is that value.
        (call(r#"{"na\u006de":"a_secret"}"#), Unknown),
        (call(r#"{"name":"a_sec\u0072et"}"#), Unknown),
        (call(r#"{"na\u006de":"b_echo"}"#), Forwarded("echo", Value::Null)),
        // Another case or a lookalike is another member: no name at all.
        (call(r#"{"Name":"a_echo"}"#), Unknown),
        // Names inside other members are data, forwarded as such under the authorized name.
        (
            call(r#"{"name":"a_echo","arguments":{"name":"secret"}}"#),
            Forwarded("echo", json!({"name": "secret"})),
        ),
        (call(r#"{"name":["a_secret"]}"#), Unknown),
        (call(r#"{"name":{"name":"a_secret"}}"#), Unknown),
        // Envelope members twice: refused, whichever comes first.
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a_echo"},"params":{"name":"a_secret"}}"#.into(),
            Refused(-32600),
        ),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"ping","method":"tools/call","params":{"name":"a_secret"}}"#.into(),
            Refused(-32600),
        ),
        // Arguments a rule reads: the target gets what the rule read.
        (call(r#"{"name":"a_echo","arguments":{"mode":"admin"}}"#), Unknown),
        (call(r#"{"name":"a_echo","arguments":{"mode":"read","mode":"admin"}}"#), Unknown),
        (
            call(r#"{"name":"a_echo","arguments":{"mode":"admin","mode":"read"}}"#),
            Forwarded("echo", json!({"mode": "read"})),
        ),
        (
            call(r#"{"name":"a_echo","arguments":{"mode":"adm\u0069n"}}"#),
            Unknown,
        ),
    ];
    for (body, expected) in cases {
        received.0.lock().unwrap().clear();
        let (status, answer, _) = post(&gw, "/mcp", Some(&sid), &body).await;
        let forwarded = received.0.lock().unwrap().clone();
        let got = if status == 400 {
            Refused(answer["error"]["code"].as_i64().unwrap_or(0))
        } else if answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Unknown tool"))
        {
            Unknown
        } else {
            assert_eq!(status, 200, "{body}: {answer}");
            assert_eq!(
                answer["result"]["content"][0]["text"],
                json!("ran"),
                "{body}"
            );
            assert_eq!(answer["id"], json!(7), "{body}");
            assert_eq!(forwarded.len(), 1, "{body}");
            // What the target got is one unambiguous message: no member twice at any level
            // the gateway wrote (the envelope's own parser refuses duplicates).
            let Ok(Envelope::Call(sent)) = envelope::parse(&forwarded[0]) else {
                panic!(
                    "{body}: forwarded {:?}",
                    String::from_utf8_lossy(&forwarded[0])
                );
            };
            let name = sent.params.str("name").unwrap_or_default();
            let args = sent.params.get("arguments").unwrap_or(Value::Null);
            let name: &'static str = Box::leak(name.into_boxed_str());
            Forwarded(name, args)
        };
        if !matches!(got, Forwarded(..)) {
            assert!(forwarded.is_empty(), "{body}: forwarded {forwarded:?}");
        }
        assert_eq!(got, expected, "{body}: {answer}");
    }
}

#[tokio::test]
async fn arguments_no_rule_reads_go_upstream_as_written() {
    let (gw, received) = gateway().await;
    let sid = session(&gw, "/raw").await;
    let args = r#"{"b" : 1,  "a":[1.0, 2e3, "x\u0041"], "big": 123456789012345678901234567890}"#;
    let body = call(&format!(r#"{{"arguments":{args},"name":"b_echo"}}"#));
    let (status, answer, _) = post(&gw, "/raw", Some(&sid), &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["result"]["content"][0]["text"],
        json!("ran"),
        "{answer}"
    );
    let forwarded = received.0.lock().unwrap().clone();
    assert_eq!(forwarded.len(), 1);
    let text = String::from_utf8_lossy(&forwarded[0]).to_string();
    assert!(
        text.contains(&format!(r#""params":{{"arguments":{args},"name":"echo"}}"#)),
        "{text}"
    );
}
