//! gateway.md §17 behaviours beyond the guide's routes: config loading and its errors, MCP bad
//! input, a target that is down, hot reload, JWT refusals seen end to end, and upstream timeouts.

use crate::support::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const SEED: &str = include_str!("../fixtures/seed-agentgateway.yaml");

fn load(text: &str) -> Result<agentid_gateway::config::Snapshot, String> {
    agentid_gateway::serve::load_offline(&agentid_gateway::Source::Inline(text.to_string()), &[])
        .map_err(|e| e.to_string())
}

#[test]
fn seed_file_loads_offline_and_keeps_its_meaning() {
    let snap = load(SEED).expect("the seed loads");
    let bind = &snap.binds[0];
    assert_eq!(bind.port, 3000);
    let routes = &bind.listeners[0].routes;
    assert_eq!(routes[0].id, "openai");
    assert_eq!(
        routes[1].id, "3000/0/1",
        "unnamed routes are named port/listener/route"
    );
    let effective = serde_json::to_string(&snap.effective).unwrap();
    assert!(effective.contains("ceposta-azure-openai.openai.azure.com"));
}

#[test]
fn yaml_and_json_forms_give_the_same_effective_config() {
    let value: Value = serde_yaml_ng::from_str(SEED).unwrap();
    let as_json = serde_json::to_string(&value).unwrap();
    assert_eq!(
        load(SEED).unwrap().effective,
        load(&as_json).unwrap().effective
    );
}

#[test]
fn config_errors_name_their_path_and_kind() {
    let with_policy = |p: &str| {
        SEED.replacen(
            "        backendTLS: {}\n",
            &format!("        backendTLS: {{}}\n        {p}\n"),
            1,
        )
    };
    let unknown = load(&with_policy("extAuthZ: {}")).unwrap_err();
    assert!(unknown.starts_with("config error at binds[0].listeners[0].routes[0].policies: unknown key \"extAuthZ\" (allowed: "), "{unknown}");
    let unsupported = load(&with_policy("extAuthz: {}")).unwrap_err();
    assert_eq!(
        unsupported,
        "config error at binds[0].listeners[0].routes[0].policies.extAuthz: \"extAuthz\" is an agentgateway feature that agentid does not support"
    );
    let foundry = load(&SEED.replace(
        "openAI:\n              model: gpt-4.1-mini",
        "azure:\n              resourceName: r\n              resourceType: foundry",
    ))
    .unwrap_err();
    assert!(
        foundry.contains("routes[0].backends[0].ai.provider.azure.resourceType")
            && foundry.contains("does not support"),
        "{foundry}"
    );
    let cel = load(&SEED.replace("\"jwt.sub != null\"", "\"jwt.sub != \"")).unwrap_err();
    assert!(
        cel.contains("routes[0].policies.authorization.rules[0]") && cel.contains("CEL"),
        "{cel}"
    );
    let regex = load(&SEED.replace("exact: /mcp", "regex: \"/mcp[\"")).unwrap_err();
    assert!(
        regex.contains("matches[0].path.regex") && regex.contains("regex"),
        "{regex}"
    );
    let env = load(&SEED.replace("gpt-4.1-mini", "$AGENTID_TEST_UNDEFINED_VAR")).unwrap_err();
    assert!(
        env.contains("AGENTID_TEST_UNDEFINED_VAR") && env.contains("line"),
        "{env}"
    );
    let underscore = load(&SEED.replace("name: exa-ai", "name: exa_ai")).unwrap_err();
    assert!(underscore.contains("targets[1].name"), "{underscore}");
    let groups =
        load(&SEED.replace("hostOverride:", "groups: []\n          hostOverride:")).unwrap_err();
    assert!(
        groups.contains("\"groups\" is an agentgateway feature"),
        "{groups}"
    );
    let mcp_in_authz =
        load(&SEED.replace("\"jwt.sub != null\"", "\"mcp.tool.name == 'x'\"")).unwrap_err();
    assert!(
        mcp_in_authz.contains("authorization.rules[0]"),
        "{mcp_in_authz}"
    );
    assert!(
        load("binds: [{port: 1}]\n---\nbinds: []\n")
            .unwrap_err()
            .contains("multi-document")
    );
}

async fn two_target_gateway(sts: &agentid_testkit::TestSts, t1: &str, t2: &str, extra: &str) -> Gw {
    let jwks = format!("{}/discovery/v2.0/keys", sts.authority());
    let config = format!(
        r#"
agentid:
  timeouts: {{mcpTargetRetry: 50ms, mcpInitialize: 2s}}
  limits: {{mcpRequestBodyBytes: 65536}}
binds:
- port: 3000
  listeners:
  - routes:
    - matches: [{{path: {{exact: /mcp}}}}]
      backends:
      - mcp:
          targets:
          - name: one
            mcp: {{host: "{t1}"}}
          - name: two
            mcp: {{host: "{t2}"}}
      policies:
        jwtAuth:
          mode: strict
          issuer: ISSUER
          audiences: [api://{MCP_APP}]
          jwks: {{url: "{jwks}"}}
{extra}"#
    );
    let token = agent_obo(sts, &format!("api://{MCP_APP}/access_as_user")).await;
    let iss = claim(&token, "iss").as_str().unwrap().to_string();
    Gw::start(&config.replace("ISSUER", &iss), Some(sts.ca_file())).await
}

#[tokio::test]
async fn mcp_bad_input_gets_json_rpc_errors_and_the_gateway_keeps_serving() {
    let sts = sts().await;
    let token = agent_obo(&sts, &format!("api://{MCP_APP}/access_as_user")).await;
    let (a, _) = mock_mcp("one", &["x"]).await;
    let (b, _) = mock_mcp("two", &["x"]).await;
    let gw = two_target_gateway(
        &sts,
        &format!("http://{a}/mcp"),
        &format!("http://{b}/mcp"),
        "",
    )
    .await;
    let url = gw.url(3000, "/mcp");
    let post = |body: &'static str, ct: &'static str| {
        gw.http
            .post(&url)
            .bearer_auth(&token)
            .header("content-type", ct)
            .header("accept", "application/json, text/event-stream")
            .body(body)
            .send()
    };
    let r = post("{not json", "application/json").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        json!(-32700)
    );
    let r = post(
        "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]",
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        json!(-32600)
    );
    let r = post("{}", "text/plain").await.unwrap();
    assert_eq!(r.status(), 415);
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{{\"pad\":\"{}\"}}}}",
        "x".repeat(100_000)
    );
    let r = gw
        .http
        .post(&url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let (st, _, body) = gw
        .mcp(
            3000,
            Some(&token),
            Some("no-such-session"),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        )
        .await;
    assert_eq!((st, body["error"]["code"].clone()), (404, json!(-32001)));
    let (st, _, body) = gw
        .mcp(
            3000,
            Some(&token),
            None,
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        )
        .await;
    assert_eq!((st, body["error"]["code"].clone()), (400, json!(-32600)));
    let sid = gw.mcp_session(3000, &token).await;
    let (st, _, body) = gw
        .mcp(
            3000,
            Some(&token),
            Some(&sid),
            json!({"jsonrpc": "2.0", "id": 7, "method": "server/discover"}),
        )
        .await;
    assert_eq!(
        (st, body["error"]["code"].clone(), body["id"].clone()),
        (200, json!(-32601), json!(7))
    );
    // Same session id, another principal: not found (no hint that it exists).
    let autonomous = agent_autonomous(&sts, &format!("api://{MCP_APP}/.default")).await;
    let (st, _, _) = gw
        .mcp(
            3000,
            Some(&autonomous),
            Some(&sid),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        )
        .await;
    assert_eq!(st, 404);
    // An unsigned token (alg none) never reaches a target.
    let parts: Vec<&str> = token.split('.').collect();
    let none = format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    let r = gw
        .http
        .post(&url)
        .bearer_auth(&none)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("alg_not_allowed")
    );
    // Still serving after all that.
    let (st, _, body) = gw
        .mcp(
            3000,
            Some(&token),
            Some(&sid),
            json!({"jsonrpc": "2.0", "id": 9, "method": "ping"}),
        )
        .await;
    assert_eq!((st, body["result"].clone()), (200, json!({})));
    // DELETE ends the session at both targets; the id is then unknown.
    let r = gw
        .http
        .delete(&url)
        .bearer_auth(&token)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (st, _, _) = gw
        .mcp(
            3000,
            Some(&token),
            Some(&sid),
            json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
        )
        .await;
    assert_eq!(st, 404);
    sts.stop().await;
}

fn base64_url(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[tokio::test]
async fn a_target_that_is_down_does_not_break_the_others() {
    let sts = sts().await;
    let token = agent_obo(&sts, &format!("api://{MCP_APP}/access_as_user")).await;
    let (a, _) = mock_mcp("one", &["alpha"]).await;
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gw = two_target_gateway(
        &sts,
        &format!("http://{a}/mcp"),
        &format!("http://{dead}/mcp"),
        "",
    )
    .await;
    let sid = gw.mcp_session(3000, &token).await;
    let (_, _, body) = gw
        .mcp(
            3000,
            Some(&token),
            Some(&sid),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .await;
    let names: Vec<&str> = body["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["one_alpha"]);
    assert_eq!(
        body["result"]["_meta"]["agentid/unavailableTargets"],
        json!(["two"])
    );
    let (_, _, body) = gw.mcp(3000, Some(&token), Some(&sid), json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "two_beta", "arguments": {}}})).await;
    assert_eq!(body["error"]["code"], json!(-32603), "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("'two'"),
        "{body}"
    );
    sts.stop().await;
}

#[tokio::test]
async fn hot_reload_serves_a_valid_change_and_refuses_a_broken_file() {
    let sts = sts().await;
    let (a, _) = mock_mcp("one", &["alpha"]).await;
    let (b, _) = mock_mcp("two", &["beta"]).await;
    let gw = two_target_gateway(
        &sts,
        &format!("http://{a}/mcp"),
        &format!("http://{b}/mcp"),
        "",
    )
    .await;
    let path = gw.dir.path().join("gateway.yaml");
    let original = std::fs::read_to_string(&path).unwrap();
    let probe = || gw.http.get(gw.url(3000, "/health-route")).send();
    assert_eq!(probe().await.unwrap().status(), 404);
    // Add a plain route to an upstream that answers.
    let (up, _) = mock_llm().await;
    let added = original.replace("    - matches: [{path: {exact: /mcp}}]", &format!("    - name: extra\n      matches: [{{path: {{exact: /health-route}}}}]\n      backends: [{{host: \"{up}\"}}]\n    - matches: [{{path: {{exact: /mcp}}}}]"));
    std::fs::write(&path, &added).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while probe().await.unwrap().status() == 404 {
        assert!(
            Instant::now() < deadline,
            "the new route never started serving"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A broken file is refused; the previous config keeps serving.
    std::fs::write(&path, "binds: [ {port: oops").unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let dump: Value = gw
            .http
            .get(gw.admin("/config_dump"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if dump["lastReload"]["ok"] == json!(false) {
            assert!(
                dump["lastReload"]["error"]
                    .as_str()
                    .unwrap()
                    .contains("config error")
            );
            break;
        }
        assert!(Instant::now() < deadline, "the broken file was never seen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(
        probe().await.unwrap().status(),
        404,
        "old config still serving"
    );
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
        metrics.contains("agentid_gateway_config_reloads_total{result=\"error\"} 1"),
        "{metrics}"
    );
    sts.stop().await;
}

#[tokio::test]
async fn an_upstream_that_hangs_times_out_with_504() {
    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = hang.local_addr().unwrap();
    // Accepts and never answers.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in hang.incoming() {
            held.push(s);
        }
    });
    let config = format!(
        "binds:\n- port: 3000\n  listeners:\n  - routes:\n    - backends: [{{host: \"{addr}\"}}]\n      policies: {{timeout: {{backendRequestTimeout: 300ms}}}}\n"
    );
    let gw = Gw::start(&config, None).await;
    let r = gw.http.get(gw.url(3000, "/x")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("upstream_timeout"));
    // Connection refused is 503.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = format!(
        "binds:\n- port: 3000\n  listeners:\n  - routes:\n    - backends: [{{host: \"{dead}\"}}]\n"
    );
    let gw2 = Gw::start(&config, None).await;
    let r = gw2.http.get(gw2.url(3000, "/x")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let events = gw2.audit("").await;
    assert_eq!(events[0]["status"], json!(503));
    assert!(events[0]["upstream"]["error"].as_str().is_some());
}

#[tokio::test]
async fn a_reload_that_changes_the_targets_ends_existing_sessions() {
    let sts = sts().await;
    let token = agent_obo(&sts, &format!("api://{MCP_APP}/access_as_user")).await;
    let (a, _) = mock_mcp("one", &["alpha"]).await;
    let (b, _) = mock_mcp("two", &["beta"]).await;
    let gw = two_target_gateway(
        &sts,
        &format!("http://{a}/mcp"),
        &format!("http://{b}/mcp"),
        "",
    )
    .await;
    let sid = gw.mcp_session(3000, &token).await;
    let (c, _) = mock_mcp("three", &["gamma"]).await;
    let path = gw.dir.path().join("gateway.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let three = text.replace(
        "          - name: two\n",
        &format!("          - name: three\n            mcp: {{host: \"http://{c}/mcp\"}}\n          - name: two\n"),
    );
    assert_ne!(three, text);
    std::fs::write(&path, three).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let dump: Value = gw
            .http
            .get(gw.admin("/config_dump"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if dump["config"].to_string().contains("three") {
            break;
        }
        assert!(Instant::now() < deadline, "the reload was never applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The old session's targets no longer match the route's: not found, never a 500.
    let (st, _, body) = gw
        .mcp(
            3000,
            Some(&token),
            Some(&sid),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .await;
    assert_eq!(
        (st, body["error"]["code"].clone()),
        (404, json!(-32001)),
        "{body}"
    );
    // A new session sees all three targets.
    let sid = gw.mcp_session(3000, &token).await;
    let (_, _, body) = gw
        .mcp(
            3000,
            Some(&token),
            Some(&sid),
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}),
        )
        .await;
    let names: Vec<&str> = body["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["one_alpha", "three_gamma", "two_beta"]);
    sts.stop().await;
}
