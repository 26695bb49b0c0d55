//! docs/gateway.md §17 behaviours beyond the guide's routes: config loading and its errors, MCP bad
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

/// How a config error's message is checked.
enum Expect {
    /// The whole message.
    Is(&'static str),
    StartsWith(&'static str),
    /// Every one of these fragments.
    Contains(&'static [&'static str]),
}

/// A config text that must fail to load, and what its error must say.
struct ConfigCase {
    name: &'static str,
    text: String,
    expect: Expect,
}

#[test]
fn config_errors_name_their_path_and_kind() {
    // Each edit must find its text, so a changed seed cannot turn a case into a no-op.
    let edit = |from: &str, to: &str| {
        assert!(SEED.contains(from), "the seed no longer holds {from:?}");
        SEED.replace(from, to)
    };
    let with_policy = |p: &str| {
        let anchor = "        backendTLS: {}\n";
        assert!(SEED.contains(anchor));
        SEED.replacen(anchor, &format!("{anchor}        {p}\n"), 1)
    };
    let cases = [
        ConfigCase {
            name: "unknown policy key",
            text: with_policy("extAuthZ: {}"),
            expect: Expect::StartsWith(
                "config error at binds[0].listeners[0].routes[0].policies: unknown key \"extAuthZ\" (allowed: ",
            ),
        },
        ConfigCase {
            name: "unsupported policy",
            text: with_policy("extAuthz: {}"),
            expect: Expect::Is(
                "config error at binds[0].listeners[0].routes[0].policies.extAuthz: \"extAuthz\" is an agentgateway feature that agentid does not support",
            ),
        },
        ConfigCase {
            name: "unsupported Azure resource type",
            text: edit(
                "openAI:\n              model: gpt-4.1-mini",
                "azure:\n              resourceName: r\n              resourceType: foundry",
            ),
            expect: Expect::Contains(&[
                "routes[0].backends[0].ai.provider.azure.resourceType",
                "does not support",
            ]),
        },
        ConfigCase {
            name: "CEL that does not parse",
            text: edit("\"jwt.sub != null\"", "\"jwt.sub != \""),
            expect: Expect::Contains(&["routes[0].policies.authorization.rules[0]", "CEL"]),
        },
        ConfigCase {
            name: "regex that does not compile",
            text: edit("exact: /mcp", "regex: \"/mcp[\""),
            expect: Expect::Contains(&["matches[0].path.regex", "regex"]),
        },
        ConfigCase {
            name: "undefined environment variable",
            text: edit("gpt-4.1-mini", "$AGENTID_TEST_UNDEFINED_VAR"),
            expect: Expect::Contains(&["AGENTID_TEST_UNDEFINED_VAR", "line"]),
        },
        ConfigCase {
            name: "underscore in a target name",
            text: edit("name: exa-ai", "name: exa_ai"),
            expect: Expect::Contains(&["targets[1].name"]),
        },
        ConfigCase {
            name: "target groups",
            text: edit("hostOverride:", "groups: []\n          hostOverride:"),
            expect: Expect::Contains(&["\"groups\" is an agentgateway feature"]),
        },
        ConfigCase {
            name: "MCP variables in an authorization rule",
            text: edit("\"jwt.sub != null\"", "\"mcp.tool.name == 'x'\""),
            expect: Expect::Contains(&["authorization.rules[0]"]),
        },
        ConfigCase {
            name: "multi-document YAML",
            text: "binds: [{port: 1}]\n---\nbinds: []\n".to_string(),
            expect: Expect::Contains(&["multi-document"]),
        },
    ];
    for case in cases {
        let name = case.name;
        let Err(error) = load(&case.text) else {
            panic!("{name}: the config loaded");
        };
        match case.expect {
            Expect::Is(want) => assert_eq!(error, want, "{name}"),
            Expect::StartsWith(want) => assert!(error.starts_with(want), "{name}: {error}"),
            Expect::Contains(fragments) => {
                for want in fragments {
                    assert!(error.contains(want), "{name}: {want:?} not in {error}");
                }
            }
        }
    }
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

/// One MCP bad-input request: a body with its content type, sent with a bearer token and, if
/// given, a session id.
struct McpCase {
    name: &'static str,
    token: String,
    session: Option<String>,
    content_type: &'static str,
    body: String,
    status: u16,
    /// The JSON-RPC error code, when the answer carries one.
    code: Option<i64>,
    also: Also,
}

/// A check some cases add to status and code.
enum Also {
    Nothing,
    /// The JSON-RPC answer echoes this request id.
    EchoesId(i64),
    /// `www-authenticate` names this error.
    Challenge(&'static str),
}

fn mcp_raw(
    name: &'static str,
    token: &str,
    content_type: &'static str,
    body: &str,
    status: u16,
    code: Option<i64>,
) -> McpCase {
    McpCase {
        name,
        token: token.to_string(),
        session: None,
        content_type,
        body: body.to_string(),
        status,
        code,
        also: Also::Nothing,
    }
}

fn mcp_rpc(
    name: &'static str,
    token: &str,
    session: Option<&str>,
    msg: Value,
    status: u16,
    code: Option<i64>,
) -> McpCase {
    McpCase {
        session: session.map(str::to_string),
        ..mcp_raw(
            name,
            token,
            "application/json",
            &msg.to_string(),
            status,
            code,
        )
    }
}

impl McpCase {
    fn also(self, also: Also) -> Self {
        Self { also, ..self }
    }
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
    let sid = gw.mcp_session(3000, &token).await;
    let autonomous = agent_autonomous(&sts, &format!("api://{MCP_APP}/.default")).await;
    let parts: Vec<&str> = token.split('.').collect();
    let unsigned = format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{{\"pad\":\"{}\"}}}}",
        "x".repeat(100_000)
    );
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let json = "application/json";
    let cases = [
        mcp_raw("not JSON", &token, json, "{not json", 400, Some(-32700)),
        mcp_raw(
            "a batch",
            &token,
            json,
            "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]",
            400,
            Some(-32600),
        ),
        mcp_raw("not JSON content", &token, "text/plain", "{}", 415, None),
        mcp_raw("body over the limit", &token, json, &big, 413, None),
        mcp_rpc(
            "unknown session",
            &token,
            Some("no-such-session"),
            list.clone(),
            404,
            Some(-32001),
        ),
        mcp_rpc(
            "no session and not initialize",
            &token,
            None,
            list.clone(),
            400,
            Some(-32600),
        ),
        mcp_rpc(
            "unknown method",
            &token,
            Some(&sid),
            json!({"jsonrpc": "2.0", "id": 7, "method": "server/discover"}),
            200,
            Some(-32601),
        )
        .also(Also::EchoesId(7)),
        // Same session id, another principal: not found (no hint that it exists).
        mcp_rpc(
            "another principal's session",
            &autonomous,
            Some(&sid),
            list.clone(),
            404,
            None,
        ),
        // An unsigned token never reaches a target.
        mcp_raw("unsigned token", &unsigned, json, "{}", 401, None)
            .also(Also::Challenge("alg_not_allowed")),
    ];
    for case in cases {
        let name = case.name;
        let mut req = gw
            .http
            .post(&url)
            .bearer_auth(&case.token)
            .header("content-type", case.content_type)
            .header("accept", "application/json, text/event-stream")
            .body(case.body);
        if let Some(s) = &case.session {
            req = req.header("mcp-session-id", s);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let challenge = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string());
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, case.status, "{name}: {body}");
        if let Some(code) = case.code {
            assert_eq!(body["error"]["code"], json!(code), "{name}: {body}");
        }
        match case.also {
            Also::Nothing => {}
            Also::EchoesId(id) => assert_eq!(body["id"], json!(id), "{name}: {body}"),
            Also::Challenge(error) => assert!(
                challenge.as_deref().unwrap_or("").contains(error),
                "{name}: {challenge:?}"
            ),
        }
    }
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
