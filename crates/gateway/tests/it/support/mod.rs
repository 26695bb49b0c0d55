//! Test fixtures: the demo tenant's STS (real HTTPS, real tokens) and the mock upstreams, both
//! from the testkit, and the gateway started in-process on port 0.
#![allow(dead_code)]

pub mod mcp_oauth;
pub mod ship;

use agentid_testkit::{Chain, Db, TestSts};
use serde_json::{Value, json};

pub use agentid_testkit::demo::{AGENT, ALICE, BLUEPRINT as BP, MCP_APP};
pub use agentid_testkit::upstream::recording::{Recorder, mcp_router, mock_llm, mock_mcp};
pub use agentid_testkit::upstream::serve;

/// The demo tenant plus the grant the guide's LLM leg needs (agent → Azure OpenAI).
pub async fn sts() -> TestSts {
    sts_with(|y| y).await
}

/// Like `sts`, with the tenant YAML edited first.
pub async fn sts_with(edit: impl FnOnce(String) -> String) -> TestSts {
    let yaml = agentid_testkit::demo::demo_tenant_with_llm_grant();
    TestSts::start(Db::Sqlite, &edit(yaml)).await
}

pub async fn t1(sts: &TestSts) -> String {
    Chain::demo().t1(sts).await
}

/// alice's token for the blueprint's API, with the OpenID scopes a signed-in app asks for.
pub async fn user_token(sts: &TestSts) -> String {
    let scope = format!("api://{BP}/access_as_user openid profile offline_access");
    Chain::demo().user_token(sts, &scope).await
}

/// The agent acting for alice (T2 on behalf of the user) for `scope`.
pub async fn agent_obo(sts: &TestSts, scope: &str) -> String {
    Chain::demo().agent_obo(sts, scope).await
}

/// The agent acting as itself (autonomous T2) for `scope`.
pub async fn agent_autonomous(sts: &TestSts, scope: &str) -> String {
    Chain::demo().agent_autonomous(sts, scope).await
}

pub fn claim(token: &str, name: &str) -> Value {
    agentid_testkit::claims(token)
        .get(name)
        .cloned()
        .unwrap_or(Value::Null)
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
            serving_threads: 2,
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

    /// Polls the audit log until `query` finds at least `n` events (or 10 s pass); returns
    /// what it found then, so the caller's assertion names the shortfall.
    pub async fn audit_until(&self, query: &str, n: usize) -> Vec<Value> {
        let limit = std::time::Duration::from_secs(10);
        let deadline = std::time::Instant::now() + limit;
        agentid_testkit::poll::eventually(limit + limit, "audit events", || async {
            let events = self.audit(query).await;
            (events.len() >= n || std::time::Instant::now() > deadline).then_some(events)
        })
        .await
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
        self.token_with(json!({"iss": ISS, "aud": AUD, "sub": sub, "azp": "app-1", "exp": now + 600, "iat": now}))
    }

    /// A token with exactly these claims.
    pub fn token_with(&self, claims: Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, &claims, &self.enc).unwrap()
    }
}
