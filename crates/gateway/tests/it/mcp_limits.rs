//! Issue 10, item 9: MCP sessions are capped per principal (iss, sub, actor) as well as in all;
//! a refusal is a JSON-RPC error with its HTTP status, and an audit event.

use crate::support::*;
use serde_json::{Value, json};

async fn gateway(signer: &Signer, per_principal: usize, total: usize) -> Gw {
    let (target, _) = mock_mcp("one", &["x"]).await;
    let config = format!(
        r#"
agentid:
  limits: {{maxMcpSessionsPerPrincipal: {per_principal}, maxMcpSessions: {total}}}
binds:
- port: 3000
  listeners:
  - routes:
    - matches: [{{path: {{exact: /mcp}}}}]
      backends:
      - mcp: {{targets: [{{name: one, mcp: {{host: "http://{target}/mcp"}}}}]}}
      policies:
        jwtAuth:
          mode: strict
          issuer: {ISS}
          audiences: [{AUD}]
          jwks: '{jwks}'
"#,
        jwks = signer.jwks()
    );
    Gw::start(&config, None).await
}

fn init(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
}

#[tokio::test]
async fn one_principal_cannot_take_every_session() {
    let signer = Signer::new();
    let gw = gateway(&signer, 2, 3).await;
    let alice = signer.token("alice");
    let bob = signer.token("bob");
    let carol = signer.token("carol");

    let a1 = gw.mcp_session(3000, &alice).await;
    let _a2 = gw.mcp_session(3000, &alice).await;
    let (st, sid, body) = gw.mcp(3000, Some(&alice), None, init(7)).await;
    assert_eq!(st, 429, "{body}");
    assert!(sid.is_none());
    assert_eq!(body["id"], json!(7), "{body}");
    assert_eq!(body["error"]["code"], json!(-32000), "{body}");
    assert_eq!(body["error"]["data"]["limit"], json!(2), "{body}");
    assert!(body["error"]["data"]["correlationId"].is_string(), "{body}");

    // Another principal still gets a session, up to the gateway's total.
    let _b1 = gw.mcp_session(3000, &bob).await;
    let (st, _, body) = gw.mcp(3000, Some(&carol), None, init(8)).await;
    assert_eq!(st, 503, "{body}");
    assert_eq!(body["error"]["data"]["limit"], json!(3), "{body}");

    // Ending a session gives the share back.
    let resp = gw
        .http
        .delete(gw.url(3000, "/mcp"))
        .bearer_auth(&alice)
        .header("mcp-session-id", &a1)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let _a3 = gw.mcp_session(3000, &alice).await;

    // Every refusal is audited.
    let denied = gw.audit_until("kind=mcp&decision=deny", 2).await;
    let reasons: Vec<(&str, u64)> = denied
        .iter()
        .map(|e| {
            (
                e["decision"]["reason"].as_str().unwrap_or(""),
                e["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert!(
        reasons.contains(&("session_limit_principal", 429))
            && reasons.contains(&("session_limit_gateway", 503)),
        "{denied:?}"
    );
    assert!(
        denied
            .iter()
            .all(|e| e["decision"]["stage"] == json!("mcpSessions")),
        "{denied:?}"
    );
}

#[test]
fn session_limits_are_configurable_and_checked_at_load() {
    let load = |limits: &str| {
        agentid_gateway::serve::load_offline(
            &agentid_gateway::Source::Inline(format!("agentid:\n  limits: {limits}\nbinds: []\n")),
            &[],
        )
        .map_err(|e| e.to_string())
    };
    let snap = load("{}").unwrap();
    assert_eq!(snap.settings.limits.max_mcp_sessions_per_principal, 100);
    assert_eq!(snap.settings.limits.max_mcp_sessions, 10_000);
    let snap = load("{maxMcpSessionsPerPrincipal: 5}").unwrap();
    assert_eq!(snap.settings.limits.max_mcp_sessions_per_principal, 5);
    for bad in [
        "{maxMcpSessionsPerPrincipal: 0}",
        "{maxMcpSessions: 0}",
        "{maxConnections: 0}",
        "{maxRequestHeaderBytes: 100}",
    ] {
        let e = load(bad).unwrap_err();
        assert!(
            e.starts_with("config error at agentid.limits."),
            "{bad}: {e}"
        );
    }
}
