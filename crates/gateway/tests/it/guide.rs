//! The guide's two routes through the gateway with real STS tokens: `/llm` to an
//! OpenAI-compatible upstream with passthrough, `/mcp` multiplexing two MCP servers under the
//! guide's own rule (which admits the agent's autonomous token) and under the hardened rule
//! `agent.id == '<agent>' && agent.onBehalfOfUser` (which does not).

use crate::support::*;
use serde_json::{Value, json};

fn mcp_config(
    jwks: &str,
    iss: &str,
    t1: std::net::SocketAddr,
    t2: std::net::SocketAddr,
    rule: &str,
) -> String {
    format!(
        r#"
binds:
- port: 3000
  listeners:
  - routes:
    - matches: [{{path: {{exact: /mcp}}}}]
      backends:
      - mcp:
          targets:
          - name: microsoft
            mcp: {{host: "http://{t1}/mcp"}}
          - name: exa-ai
            mcp: {{host: "http://{t2}/mcp"}}
      policies:
        jwtAuth:
          mode: strict
          issuer: {iss}
          audiences: [api://{MCP_APP}]
          jwks: {{url: "{jwks}"}}
        mcpAuthorization:
          rules:
          - "{rule}"
        requestHeaderModifier:
          remove: [x-forwarded-for, x-forwarded-host, x-forwarded-proto]
"#
    )
}

async fn list_names(gw: &Gw, token: &str) -> Vec<String> {
    let sid = gw.mcp_session(3000, token).await;
    let (st, _, body) = gw
        .mcp(
            3000,
            Some(token),
            Some(&sid),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    body["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

async fn call(gw: &Gw, token: &str, tool: &str) -> Value {
    let sid = gw.mcp_session(3000, token).await;
    let (st, _, body) = gw
        .mcp(3000, Some(token), Some(&sid), json!({"jsonrpc": "2.0", "id": "call-1", "method": "tools/call", "params": {"name": tool, "arguments": {}}}))
        .await;
    assert_eq!(st, 200, "{body}");
    body
}

#[tokio::test]
async fn guide_rule_admits_autonomous_agent_hardened_rule_does_not() {
    let sts = sts().await;
    let scope = format!("api://{MCP_APP}/.default");
    let obo = agent_obo(&sts, &format!("api://{MCP_APP}/access_as_user")).await;
    let autonomous = agent_autonomous(&sts, &scope).await;
    assert_eq!(claim(&obo, "idtyp"), json!("user"));
    assert_eq!(claim(&autonomous, "idtyp"), json!("app"));
    let iss = claim(&obo, "iss").as_str().unwrap().to_string();
    let jwks = format!("{}/discovery/v2.0/keys", sts.authority());
    let (t1, rec1) = mock_mcp("microsoft", &["microsoft_docs_search", "fetch"]).await;
    let (t2, _rec2) = mock_mcp("exa-ai", &["web_search_exa"]).await;

    // The guide's rule: appid plus facet 11 — it never checks that a user is present.
    let seed_rule = format!("jwt.appid == '{AGENT}' && '11' in jwt.xms_act_fct.split(' ')");
    let gw = Gw::start(
        &mcp_config(&jwks, &iss, t1, t2, &seed_rule),
        Some(sts.ca_file()),
    )
    .await;
    let names = list_names(&gw, &obo).await;
    assert_eq!(
        names,
        vec![
            "microsoft_microsoft_docs_search",
            "microsoft_fetch",
            "exa-ai_web_search_exa"
        ]
    );
    let r = call(&gw, &obo, "exa-ai_web_search_exa").await;
    assert_eq!(r["id"], json!("call-1"));
    assert!(
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("exa-ai ran web_search_exa"),
        "{r}"
    );
    // The seed's targets receive no credential and no x-forwarded-*.
    let seen = rec1.last();
    assert!(seen.headers.get("authorization").is_none());
    assert!(seen.headers.get("x-forwarded-for").is_none());
    // The gap: the autonomous token passes the guide's rule too.
    assert_eq!(list_names(&gw, &autonomous).await.len(), 3);
    gw.running.shutdown(std::time::Duration::from_secs(1)).await;

    // The hardened rule admits the agent acting for a user and refuses it acting alone.
    let hardened = format!("agent.id == '{AGENT}' && agent.onBehalfOfUser");
    let gw = Gw::start(
        &mcp_config(&jwks, &iss, t1, t2, &hardened),
        Some(sts.ca_file()),
    )
    .await;
    assert_eq!(list_names(&gw, &obo).await.len(), 3);
    assert!(
        list_names(&gw, &autonomous).await.is_empty(),
        "autonomous sees no tools"
    );
    let denied = call(&gw, &autonomous, "exa-ai_web_search_exa").await;
    assert_eq!(denied["error"]["code"], json!(-32602), "{denied}");
    assert_eq!(
        denied["error"]["message"],
        json!("Unknown tool: exa-ai_web_search_exa")
    );
    let allowed = call(&gw, &obo, "microsoft_fetch").await;
    assert!(allowed["result"].is_object(), "{allowed}");

    // The audit trail names the agent and the user for every decision.
    let events = gw.audit("kind=mcp&tool=web_search_exa").await;
    let deny = events
        .iter()
        .find(|e| e["decision"]["result"] == json!("deny"))
        .expect("deny event");
    assert_eq!(deny["identity"]["agentId"], json!(AGENT));
    assert_eq!(deny["identity"]["agentMode"], json!("autonomous"));
    assert_eq!(deny["decision"]["stage"], json!("mcpAuthorization"));
    assert_eq!(deny["decision"]["reason"], json!("no_allow_rule_matched"));
    let allow_events = gw
        .audit(&format!("kind=mcp&user={ALICE}&decision=allow"))
        .await;
    let allow = allow_events
        .iter()
        .find(|e| e["mcp"]["method"] == json!("tools/call"))
        .expect("allowed call event");
    assert_eq!(allow["identity"]["agentId"], json!(AGENT));
    assert_eq!(allow["identity"]["userOid"], json!(ALICE));
    assert_eq!(allow["identity"]["agentMode"], json!("onBehalfOfUser"));
    assert_eq!(allow["identity"]["blueprint"], json!(BP));
    assert_eq!(allow["mcp"]["target"], json!("microsoft"));
    assert_eq!(allow["mcp"]["tool"], json!("fetch"));
    gw.running.shutdown(std::time::Duration::from_secs(1)).await;
    sts.stop().await;
}

#[tokio::test]
async fn llm_route_passes_the_agent_token_through_and_counts_usage() {
    let sts = sts().await;
    let token = agent_obo(&sts, "https://cognitiveservices.azure.com/.default").await;
    let iss = claim(&token, "iss").as_str().unwrap().to_string();
    let jwks = format!("{}/discovery/v2.0/keys", sts.authority());
    let (llm, rec) = mock_llm().await;
    let config = format!(
        r#"
binds:
- port: 3000
  listeners:
  - routes:
    - name: openai
      matches: [{{path: {{pathPrefix: /llm}}}}]
      backends:
      - ai:
          name: openai
          hostOverride: "{llm}"
          provider: {{openAI: {{model: gpt-4.1-mini}}}}
      policies:
        urlRewrite:
          authority: {{full: "ceposta-azure-openai.openai.azure.com"}}
          path: {{prefix: ""}}
        backendAuth: {{passthrough: {{}}}}
        jwtAuth:
          mode: strict
          issuer: {iss}
          audiences: [https://cognitiveservices.azure.com]
          jwks: {{url: "{jwks}"}}
        authorization:
          rules: ["jwt.sub != null"]
"#
    );
    let gw = Gw::start(&config, Some(sts.ca_file())).await;
    let url = gw.url(
        3000,
        "/llm/openai/deployments/gpt4/chat/completions?api-version=2024-10-21",
    );
    let resp = gw
        .http
        .post(&url)
        .bearer_auth(&token)
        .json(&json!({"model": "whatever", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        json!("Hello from mock")
    );
    let seen = rec.last();
    assert_eq!(
        seen.path,
        "/openai/deployments/gpt4/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(
        seen.headers["host"],
        "ceposta-azure-openai.openai.azure.com"
    );
    assert_eq!(
        seen.headers["authorization"].to_str().unwrap(),
        format!("Bearer {token}")
    );
    assert_eq!(seen.body["model"], json!("gpt-4.1-mini"), "model override");

    // Streaming: relayed as it arrives; the usage chunk the gateway asked for is not shown.
    let resp = gw
        .http
        .post(&url)
        .bearer_auth(&token)
        .json(
            &json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("Hello") && text.contains("[DONE]"), "{text}");
    assert!(
        !text.contains("\"usage\""),
        "injected usage chunk must not reach the client: {text}"
    );
    assert_eq!(
        rec.last().body["stream_options"]["include_usage"],
        json!(true)
    );

    // No token: 401 with a reason, upstream not called.
    let before = rec.all().len();
    let resp = gw
        .http
        .post(&url)
        .json(&json!({"messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"agentid\""
    );
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], json!("token_missing"));
    assert_eq!(rec.all().len(), before);

    // Usage per agent and user, in audit and metrics; the stream's usage is recorded once it ends.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let events = loop {
        let events = gw.audit("kind=llm&decision=allow").await;
        if events.len() >= 2 || std::time::Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let streamed = events
        .iter()
        .find(|e| e["llm"]["streaming"] == json!(true))
        .expect("stream event");
    assert_eq!(streamed["llm"]["usage"]["total"], json!(10));
    assert_eq!(streamed["identity"]["agentId"], json!(AGENT));
    assert_eq!(streamed["identity"]["userOid"], json!(ALICE));
    let plain = events
        .iter()
        .find(|e| e["llm"]["streaming"] == json!(false))
        .expect("plain event");
    assert_eq!(plain["llm"]["usage"]["input"], json!(5));
    assert_eq!(plain["llm"]["requestModel"], json!("gpt-4.1-mini"));
    let metrics = gw
        .http
        .get(format!("http://{}/metrics", gw.running.stats.unwrap()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains("agentid_gateway_llm_tokens_total{route=\"openai\",model=\"gpt-4.1-mini\""),
        "{metrics}"
    );
    assert!(metrics.contains(&format!("agent=\"{AGENT}\"")));
    gw.running.shutdown(std::time::Duration::from_secs(1)).await;
    sts.stop().await;
}
