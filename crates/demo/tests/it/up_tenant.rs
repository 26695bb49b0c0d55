//! The demo services against a real STS running `examples/up-tenant.yaml`: the token chain of
//! `agentid up` (workload token → T1 → agent on-behalf-of token) ends at the demo MCP server,
//! which sees the agent and the user and does its own on-behalf-of exchange to Graph; the
//! offline model takes the same kind of token for its own audience and refuses others.

use crate::common::*;
use agentid_demo::{ModelSettings, RunningServer};
use agentid_testkit::claims;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

async fn mcp_client(
    server: &RunningServer,
    token: &str,
) -> rmcp::service::RunningService<rmcp::RoleClient, ClientConfig> {
    // rmcp's reqwest 0.13 is built without a TLS provider of its own: use ring, as agentid does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", server.base_url()))
            .auth_header(token),
    );
    ClientConfig::default()
        .serve(transport)
        .await
        .expect("MCP session")
}

async fn call(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ClientConfig>,
    name: &str,
    args: Value,
) -> CallToolResult {
    let mut p = CallToolRequestParams::new(name.to_string());
    if let Value::Object(m) = args {
        p = p.with_arguments(m);
    }
    client.call_tool(p).await.expect("tools/call")
}

fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_token_chain_reaches_the_mcp_server_and_graph() {
    let f = fixture().await;
    let t2 = f
        .agent_obo(&format!("api://{MCP_APP}/access_as_user"))
        .await;
    let c = claims(&t2);
    assert_eq!(c["aud"], format!("api://{MCP_APP}"));
    let mcp = f.start_mcp().await;

    let client = mcp_client(&mcp, &t2).await;
    let tools = client.list_all_tools().await.expect("tools/list");
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort();
    assert_eq!(
        names,
        ["add_note", "get_my_profile", "list_notes", "whoami"]
    );
    for t in &tools {
        let schema = serde_json::to_value(&*t.input_schema).unwrap();
        assert_eq!(schema["type"], "object", "{}: {schema}", t.name);
    }
    let add = tools.iter().find(|t| t.name == "add_note").unwrap();
    let schema = serde_json::to_value(&*add.input_schema).unwrap();
    assert_eq!(schema["properties"]["text"]["type"], "string", "{schema}");
    assert_eq!(schema["required"], json!(["text"]), "{schema}");

    // whoami: the agent acting for the user, as the MCP server sees the token.
    let who = call(&client, "whoami", json!({})).await;
    assert_ne!(who.is_error, Some(true), "{}", text(&who));
    let s = who.structured_content.clone().expect("structured whoami");
    assert_eq!(s["agent"]["id"], AGENT, "{s}");
    assert_eq!(s["agent"]["isAgent"], true, "{s}");
    assert_eq!(s["user"]["upn"], USER, "{s}");
    assert_eq!(s["user"]["oid"], USER_OID, "{s}");
    assert_eq!(s["blueprint"], BP, "{s}");
    assert_eq!(s["tokenType"], "user", "{s}");
    assert_eq!(s["scopes"], json!(["access_as_user"]), "{s}");
    assert!(
        text(&who).contains(&format!("agent {AGENT} acting on behalf of {USER}")),
        "{}",
        text(&who)
    );

    // get_my_profile: the server's own on-behalf-of exchange, then Graph /me.
    let profile = call(&client, "get_my_profile", json!({})).await;
    assert_ne!(profile.is_error, Some(true), "{}", text(&profile));
    let p = profile
        .structured_content
        .clone()
        .expect("structured profile");
    assert_eq!(p["userPrincipalName"], USER, "{p}");
    assert_eq!(p["displayName"], "Demo User", "{p}");
    assert_eq!(p["id"], USER_OID, "{p}");

    // Notes are per user; arguments are validated against the schema.
    let added = call(&client, "add_note", json!({"text": "buy milk"})).await;
    assert_ne!(added.is_error, Some(true), "{}", text(&added));
    let listed = call(&client, "list_notes", json!({})).await;
    let l = listed.structured_content.clone().unwrap();
    assert_eq!(l["notes"][0]["text"], "buy milk", "{l}");
    assert_eq!(l["owner"], USER, "{l}");
    let bad = client
        .call_tool(
            CallToolRequestParams::new("add_note")
                .with_arguments(json!({"words": 1}).as_object().unwrap().clone()),
        )
        .await;
    assert!(
        bad.is_err() || bad.as_ref().is_ok_and(|r| r.is_error == Some(true)),
        "add_note without text was accepted: {bad:?}"
    );
    let _ = client.cancel().await;

    // An autonomous agent (no user): whoami says so, get_my_profile refuses, notes are separate.
    let t1 = f.t1(AUTONOMOUS).await;
    let (st, b) = f
        .sts
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", AUTONOMOUS),
            ("client_assertion_type", AT),
            ("client_assertion", &t1),
            ("scope", &format!("api://{MCP_APP}/.default")),
        ])
        .await;
    // Entra, and agentid, issue it without roles: the API decides what an app-only caller may do.
    assert_eq!(st, 200, "{b}");
    let app = b["access_token"].as_str().unwrap();
    let client = mcp_client(&mcp, app).await;
    let who = call(&client, "whoami", json!({})).await;
    let s = who.structured_content.clone().unwrap();
    assert_eq!(s["user"], Value::Null, "{s}");
    assert_eq!(s["agent"]["id"], AUTONOMOUS, "{s}");
    assert!(text(&who).contains("acting as itself"), "{}", text(&who));
    let p = call(&client, "get_my_profile", json!({})).await;
    assert_eq!(p.is_error, Some(true));
    assert!(text(&p).contains("signed-in user"), "{}", text(&p));
    let l = call(&client, "list_notes", json!({})).await;
    assert_eq!(l.structured_content.unwrap()["notes"], json!([]));
    let _ = client.cancel().await;

    // Without a token, or with one for another audience: 401 with a reason in identity terms.
    let http = reqwest::Client::new();
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let r = http
        .post(format!("{}/mcp", mcp.base_url()))
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer error=\"invalid_token\"")
    );
    let model_token = f.agent_obo(&format!("{COGNITIVE}/.default")).await;
    let r = http
        .post(format!("{}/mcp", mcp.base_url()))
        .header("accept", "application/json, text/event-stream")
        .bearer_auth(&model_token)
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_token");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(COGNITIVE) && msg.contains(&format!("api://{MCP_APP}")),
        "{msg}"
    );

    mcp.shutdown().await;
    f.sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_checks_the_bearer_and_calls_the_offered_tool() {
    let f = fixture().await;
    let model = agentid_demo::start_model(ModelSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        check: Some(f.check(COGNITIVE).await),
    })
    .await
    .expect("model starts");
    let url = format!("{}/v1/chat/completions", model.base_url());
    let http = reqwest::Client::new();
    let body = json!({
        "model": "agentid-offline",
        "messages": [{"role": "user", "content": "Who am I?"}],
        "tools": [{"type": "function", "function": {"name": "whoami", "description": "who",
            "parameters": {"type": "object", "properties": {}}}}],
    });

    let r = http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));

    let mcp_token = f
        .agent_obo(&format!("api://{MCP_APP}/access_as_user"))
        .await;
    let r = http
        .post(&url)
        .bearer_auth(&mcp_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "invalid_token");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("api://{MCP_APP}")),
        "{e}"
    );

    let token = f.agent_obo(&format!("{COGNITIVE}/.default")).await;
    assert_eq!(claims(&token)["aud"], COGNITIVE);
    let r = http
        .post(&url)
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "whoami", "{v}");
    assert_eq!(call["function"]["arguments"], "{}", "{v}");

    // A tampered token (signature no longer matches) is refused.
    // A character early in the signature: the last one may only carry padding bits.
    let sig_at = token.rfind('.').unwrap() + 5;
    let swapped = if &token[sig_at..=sig_at] == "A" {
        "B"
    } else {
        "A"
    };
    let forged = format!("{}{swapped}{}", &token[..sig_at], &token[sig_at + 1..]);
    let r = http
        .post(&url)
        .bearer_auth(&forged)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    model.shutdown().await;
    f.sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_refusals_reach_the_caller_as_tool_errors() {
    let f = fixture().await;
    // The MCP server configured with a wrong secret: its on-behalf-of exchange is refused.
    let mcp = agentid_demo::start_mcp(agentid_demo::McpSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        check: f.check(&format!("api://{MCP_APP}")).await,
        token_endpoint: f.sts.token_url(),
        graph_base: f.sts.base().to_string(),
        client_id: MCP_APP.into(),
        client_secret: "not-the-secret".into(),
        ca_pem: f.ca_pem(),
    })
    .await
    .unwrap();
    let t2 = f
        .agent_obo(&format!("api://{MCP_APP}/access_as_user"))
        .await;
    let client = mcp_client(&mcp, &t2).await;
    let r = call(&client, "get_my_profile", json!({})).await;
    assert_eq!(r.is_error, Some(true));
    let t = text(&r);
    assert!(t.contains("AADSTS7000215"), "{t}");
    assert!(t.contains("on-behalf-of"), "{t}");
    // The other tools do not depend on the exchange.
    let who = call(&client, "whoami", json!({})).await;
    assert_ne!(who.is_error, Some(true));
    let _ = client.cancel().await;
    mcp.shutdown().await;
    f.sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_user_signs_in_without_consent_and_gets_a_refresh_token() {
    let f = fixture().await;
    // What `agentid agent login` asks for: the blueprint's API plus the OIDC scopes.
    let (st, b) = f
        .sts
        .token(&[
            ("grant_type", "password"),
            ("client_id", GRAPH_CLI),
            ("username", USER),
            ("password", PASSWORD),
            (
                "scope",
                &format!("api://{BP}/access_as_user openid profile offline_access"),
            ),
        ])
        .await;
    assert_eq!(st, 200, "{b}");
    assert!(b["refresh_token"].is_string(), "{b}");
    let c = claims(b["access_token"].as_str().unwrap());
    assert_eq!(c["aud"], format!("api://{BP}"));
    assert_eq!(c["scp"], "access_as_user");
    f.sts.stop().await;
}
