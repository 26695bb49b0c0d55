//! Route policies end to end: on-behalf-of per MCP target (each target gets a token for its own
//! audience carrying the user), CORS preflights, `key` backend auth, and W3C trace context.

use crate::support::*;
use serde_json::{Value, json};

#[tokio::test]
async fn each_mcp_target_receives_a_token_for_its_own_audience() {
    // The MCP app may exchange tokens for Graph on the user's behalf (it needs a secret and a grant).
    let sts = sts_with(|yaml| {
        yaml.replace(
            "    scopes: [access_as_user]\n    appRoles: [Tools.Invoke]",
            "    scopes: [access_as_user]\n    appRoles: [Tools.Invoke]\n    secrets:\n      - displayName: gateway obo\n        value: mcp-obo-secret",
        )
        .replace(
            "appRoleAssignments:",
            "  - client: mcp-server\n    resource: graph\n    scopes: [User.Read]\n\nappRoleAssignments:",
        )
    })
    .await;
    let token = agent_obo(&sts, &format!("api://{MCP_APP}/access_as_user")).await;
    let iss = claim(&token, "iss").as_str().unwrap().to_string();
    let (target, rec) = mock_mcp("graphy", &["me"]).await;
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
          targets:
          - name: graphy
            mcp: {{host: "http://{target}/mcp"}}
            policies:
              backendAuth:
                onBehalfOf:
                  sts:
                    tokenEndpoint: {token_url}
                    clientId: {MCP_APP}
                    clientSecret: mcp-obo-secret
                    scopes: [https://graph.microsoft.com/User.Read]
      policies:
        jwtAuth:
          mode: strict
          issuer: {iss}
          audiences: [api://{MCP_APP}]
          jwks: {{url: "{jwks}"}}
"#,
        token_url = sts.token_url()
    );
    let gw = Gw::start(&config, Some(sts.ca_file())).await;
    let sid = gw.mcp_session(3000, &token).await;
    let (_, _, body) = gw.mcp(3000, Some(&token), Some(&sid), json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "me", "arguments": {}}})).await;
    assert!(body["result"].is_object(), "{body}");
    let seen = rec.last();
    let upstream_token = seen.headers["authorization"]
        .to_str()
        .unwrap()
        .trim_start_matches("Bearer ")
        .to_string();
    assert_ne!(
        upstream_token, token,
        "the caller's token never reaches the target"
    );
    assert_eq!(
        claim(&upstream_token, "aud"),
        json!("https://graph.microsoft.com")
    );
    assert_eq!(
        claim(&upstream_token, "oid"),
        json!(ALICE),
        "the user travels with the exchange"
    );
    // A second call in the session uses the cached token (no second exchange needed).
    let (_, _, body) = gw.mcp(3000, Some(&token), Some(&sid), json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "me", "arguments": {}}})).await;
    assert!(body["result"].is_object(), "{body}");
    let metrics = gw
        .http
        .get(format!("http://{}/metrics", gw.running.stats.unwrap()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("cache=\"hit\""), "{metrics}");
    // An autonomous token is never exchanged in a user's name.
    let autonomous = agent_autonomous(&sts, &format!("api://{MCP_APP}/.default")).await;
    let sid = gw.mcp(3000, Some(&autonomous), None, json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})).await;
    assert_eq!(sid.2["error"]["code"], json!(-32603), "{}", sid.2);
    assert!(
        sid.2["error"]["message"]
            .as_str()
            .unwrap()
            .contains("token_exchange_requires_user"),
        "{}",
        sid.2
    );
    sts.stop().await;
}

#[tokio::test]
async fn cors_preflight_key_auth_and_trace_context() {
    let (llm, rec) = mock_llm().await;
    let config = format!(
        r#"
binds:
- port: 3000
  listeners:
  - routes:
    - matches: [{{path: {{pathPrefix: /llm}}}}]
      backends:
      - ai:
          name: azure
          hostOverride: "{llm}"
          provider: {{azure: {{resourceName: contoso, resourceType: openAI, apiVersion: "2024-10-21"}}}}
      policies:
        urlRewrite: {{path: {{prefix: ""}}}}
        backendAuth: {{key: {{value: sk-test-key, location: {{header: {{name: api-key}}}}}}}}
        cors:
          allowOrigins: ["https://portal.contoso.com"]
          allowMethods: [POST]
          allowHeaders: [content-type, authorization]
          maxAge: 10m
"#
    );
    let gw = Gw::start(&config, None).await;
    let url = gw.url(
        3000,
        "/llm/openai/deployments/gpt/chat/completions?api-version=2024-10-21",
    );
    let pre = gw
        .http
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://portal.contoso.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 200);
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        "https://portal.contoso.com"
    );
    assert_eq!(pre.headers()["access-control-max-age"], "600");
    assert!(rec.all().is_empty(), "preflights never reach the backend");
    let other = gw
        .http
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let resp = gw
        .http
        .post(&url)
        .header("origin", "https://portal.contoso.com")
        .header("traceparent", trace)
        .header("api-key", "client-supplied")
        .json(&json!({"messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://portal.contoso.com"
    );
    let seen = rec.last();
    assert_eq!(
        seen.headers["api-key"], "sk-test-key",
        "the configured key replaces the client's"
    );
    let tp = seen.headers["traceparent"].to_str().unwrap();
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && tp.ends_with("-01"),
        "{tp}"
    );
    assert_ne!(tp, trace, "the gateway's span is the parent");
    let events = gw.audit("kind=llm").await;
    assert_eq!(
        events[0]["traceId"],
        json!("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(events[0]["upstream"]["credential"], json!("key"));
    // The key never appears in the audit trail or the effective config.
    let dump: Value = gw
        .http
        .get(gw.admin("/config_dump"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!dump.to_string().contains("sk-test-key"), "{dump}");
    assert!(
        !serde_json::to_string(&events)
            .unwrap()
            .contains("sk-test-key")
    );
}
