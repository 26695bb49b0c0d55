//! Test fixtures: the demo tenant's STS (real HTTPS, real tokens), mock upstreams standing in
//! for outside services (an OpenAI/Azure-compatible chat server, streamable-HTTP MCP servers),
//! and the gateway started in-process on port 0.
#![allow(dead_code)]

use agentid_testkit::{Db, TestSts};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub const DEMO: &str = include_str!("../../../../examples/demo-tenant.yaml");
pub const BP: &str = "85075aa5-1d73-42de-812a-95348218e4b2";
pub const BP_SECRET: &str = "demo-blueprint-secret-change-me";
pub const AGENT: &str = "f3897825-fd03-45f5-90eb-fdbf26135650";
pub const MCP_APP: &str = "ec791040-80f8-4129-bf34-96a0e0672c96";
pub const GRAPH_CLI: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
pub const ALICE: &str = "0501a526-79e4-46ff-bd07-6605a752287b";
const CC: &str = "client_credentials";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The demo tenant plus the grant the guide's LLM leg needs (agent → Azure OpenAI).
pub async fn sts() -> TestSts {
    sts_with(|y| y).await
}

/// Like `sts`, with the tenant YAML edited first.
pub async fn sts_with(edit: impl FnOnce(String) -> String) -> TestSts {
    let yaml = DEMO.replace(
        "appRoleAssignments:",
        "  - client: blog-agent\n    resource: cognitive-services\n    scopes: [user_impersonation]\n\nappRoleAssignments:",
    );
    TestSts::start(Db::Sqlite, &edit(yaml)).await
}

pub async fn t1(sts: &TestSts) -> String {
    let (st, body) = sts
        .token(&[
            ("grant_type", CC),
            ("client_id", BP),
            ("client_secret", BP_SECRET),
            ("scope", "api://AzureADTokenExchange/.default"),
            ("fmi_path", AGENT),
        ])
        .await;
    assert_eq!(st, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

pub async fn user_token(sts: &TestSts) -> String {
    let scope = format!("api://{BP}/access_as_user openid profile offline_access");
    let (st, body) = sts
        .token(&[
            ("grant_type", "password"),
            ("client_id", GRAPH_CLI),
            ("username", "alice@contoso.test"),
            ("password", "correct-horse-battery"),
            ("scope", &scope),
        ])
        .await;
    assert_eq!(st, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

/// The agent acting for alice (T2 on behalf of the user) for `scope`.
pub async fn agent_obo(sts: &TestSts, scope: &str) -> String {
    let t1 = t1(sts).await;
    let tc = user_token(sts).await;
    let (st, body) = sts
        .token(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("client_id", AGENT),
            ("requested_token_use", "on_behalf_of"),
            ("assertion", &tc),
            ("scope", scope),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &t1),
        ])
        .await;
    assert_eq!(st, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

/// The agent acting as itself (autonomous T2) for `scope`.
pub async fn agent_autonomous(sts: &TestSts, scope: &str) -> String {
    let t1 = t1(sts).await;
    let (st, body) = sts
        .token(&[
            ("grant_type", CC),
            ("client_id", AGENT),
            ("scope", scope),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &t1),
        ])
        .await;
    assert_eq!(st, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

pub fn claim(token: &str, name: &str) -> Value {
    agentid_testkit::claims(token)
        .get(name)
        .cloned()
        .unwrap_or(Value::Null)
}

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

pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.ok();
    });
    addr
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

pub struct Gw {
    pub running: agentid_gateway::RunningGateway,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
}

impl Gw {
    pub async fn start(yaml: &str, ca: Option<std::path::PathBuf>) -> Gw {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.yaml");
        // Audit events stay in memory (queried by the tests), not on the test's stdout.
        let yaml = if yaml.contains("\nagentid:\n") {
            yaml.replacen("\nagentid:\n", "\nagentid:\n  audit: {stdout: false}\n", 1)
        } else {
            format!("agentid:\n  audit: {{stdout: false}}\n{yaml}")
        };
        std::fs::write(&path, yaml).unwrap();
        let running = agentid_gateway::start(agentid_gateway::Options {
            source: agentid_gateway::Source::File(path),
            extra_roots: ca.into_iter().collect(),
            ephemeral_ports: true,
        })
        .await
        .expect("gateway starts");
        Gw {
            running,
            http: reqwest::Client::new(),
            dir,
        }
    }

    pub fn url(&self, port: u16, path: &str) -> String {
        format!("http://{}{path}", self.running.addr(port))
    }

    pub fn admin(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.admin.unwrap())
    }

    /// Polls the audit log until `query` finds at least `n` events (or 10 s pass).
    pub async fn audit_until(&self, query: &str, n: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let events = self.audit(query).await;
            if events.len() >= n || std::time::Instant::now() > deadline {
                return events;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub async fn audit(&self, query: &str) -> Vec<Value> {
        let v: Value = self
            .http
            .get(self.admin(&format!("/audit/events?{query}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["events"].as_array().cloned().unwrap_or_default()
    }

    /// MCP JSON-RPC POST; returns status, session id and body.
    pub async fn mcp(
        &self,
        port: u16,
        token: Option<&str>,
        session: Option<&str>,
        msg: Value,
    ) -> (u16, Option<String>, Value) {
        let mut req = self
            .http
            .post(self.url(port, "/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .json(&msg);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let sid = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, sid, body)
    }

    pub async fn mcp_session(&self, port: u16, token: &str) -> String {
        let (st, sid, body) = self
            .mcp(port, Some(token), None, json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}))
            .await;
        assert_eq!(st, 200, "{body}");
        sid.expect("session id")
    }
}

/// A token issuer that needs no STS: an ES256 key whose JWKS goes inline into `jwtAuth.jwks`.
pub struct Signer {
    enc: jsonwebtoken::EncodingKey,
    jwk: Value,
}

impl Default for Signer {
    fn default() -> Self {
        Signer::new()
    }
}

pub const ISS: &str = "https://issuer.gateway.test";
pub const AUD: &str = "api://gateway-test";

impl Signer {
    pub fn new() -> Signer {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = kp.public_key_raw();
        Signer {
            enc: jsonwebtoken::EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap(),
            jwk: json!({"kty": "EC", "crv": "P-256", "kid": "k1",
                "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..65])}),
        }
    }

    /// The JWKS document, for `jwks: '<this>'`.
    pub fn jwks(&self) -> String {
        json!({"keys": [self.jwk]}).to_string()
    }

    /// A token for `sub` from issuer [`ISS`] to audience [`AUD`], actor app `app-1`.
    pub fn token(&self, sub: &str) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("k1".into());
        let claims = json!({"iss": ISS, "aud": AUD, "sub": sub, "azp": "app-1", "exp": now + 600, "iat": now});
        jsonwebtoken::encode(&header, &claims, &self.enc).unwrap()
    }
}
