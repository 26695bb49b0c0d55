//! The agent against real parts: the testkit STS, the sidecar, an rmcp MCP server and a
//! scripted OpenAI-compatible model, all in-process.

use crate::support::*;
use agentid_agent::agent::{AgentError, Event};
use agentid_agent::config::TokenMode;
use agentid_agent::setup::{self, SignInOptions};
use agentid_agent::signin::SignInError;
use agentid_agent::tokens::Api;
use serde_json::Value;
use std::sync::Arc;

fn alice() -> SignInOptions {
    SignInOptions {
        username: Some(ALICE_UPN.into()),
        password: Some(ALICE_PASSWORD.into()),
        no_prompt: true,
        ..Default::default()
    }
}

fn no_prompt() -> SignInOptions {
    SignInOptions {
        no_prompt: true,
        ..Default::default()
    }
}

fn s<'a>(c: &'a serde_json::Map<String, Value>, k: &str) -> &'a str {
    c.get(k)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("claim {k} missing in {c:?}"))
}

fn mcp_api() -> Api {
    Api {
        name: "mcp".into(),
        scope: Some(format!("api://{MCP}/.default")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_login_is_cached_0600_and_refreshed_silently() {
    let sts = start_sts().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&sts, dir.path(), &[]);
    let user = setup::session(&cfg).unwrap();
    let tc = setup::sign_in(&user, &alice(), &mut std::io::sink())
        .await
        .unwrap();
    let c = claims(&tc);
    assert_eq!(s(&c, "aud"), format!("api://{BP}"));
    assert_eq!(s(&c, "upn"), ALICE_UPN);
    assert_eq!(s(&c, "scp"), "access_as_user");

    let cache = dir.path().join("tokens.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the token cache must be private");
    }
    let text = std::fs::read_to_string(&cache).unwrap();
    assert!(text.contains("refreshToken"), "{text}");

    // A later run: the access token is made stale, so the refresh token must be used.
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["entries"][0]["expiresAt"] = 0.into();
    std::fs::write(&cache, v.to_string()).unwrap();
    let later = setup::session(&cfg).unwrap();
    let tc2 = setup::sign_in(&later, &no_prompt(), &mut std::io::sink())
        .await
        .expect("silent refresh");
    assert_ne!(tc2, tc, "a new access token from the refresh token");
    assert_eq!(s(&claims(&tc2), "upn"), ALICE_UPN);
    let v2: Value = serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    assert!(v2["entries"][0]["expiresAt"].as_i64().unwrap() > 0);

    // Logout deletes the cache; nothing is left to sign in with.
    assert!(later.forget().unwrap());
    assert!(!cache.exists());
    let again = setup::session(&cfg).unwrap();
    let err = setup::sign_in(&again, &no_prompt(), &mut std::io::sink())
        .await
        .unwrap_err();
    assert!(
        matches!(err, setup::SetupError::SignIn(SignInError::NotSignedIn)),
        "{err}"
    );
    // A wrong password is explained with the AADSTS sentence.
    let bad = SignInOptions {
        password: Some("nope".into()),
        ..alice()
    };
    let err = setup::sign_in(&again, &bad, &mut std::io::sink())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("AADSTS50126") && err.contains("password is wrong"),
        "{err}"
    );
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_provider_runs_t1_then_agent_obo_and_autonomous() {
    let sts = start_sts().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&sts, dir.path(), &[]);
    let user = setup::session(&cfg).unwrap();
    setup::sign_in(&user, &alice(), &mut std::io::sink())
        .await
        .unwrap();
    let p = setup::provider(&cfg, TokenMode::Direct, Some(user)).unwrap();
    let t = p.token(&mcp_api(), false).await.unwrap();
    let c = claims(&t.token);
    assert_eq!(s(&c, "aud"), format!("api://{MCP}"));
    assert_eq!(s(&c, "idtyp"), "user");
    assert_eq!(s(&c, "appid"), AGENT);
    assert_eq!(s(&c, "upn"), ALICE_UPN);
    assert_eq!(s(&c, "xms_par_app_azp"), BP);
    assert!(
        s(&c, "xms_act_fct").split(' ').any(|f| f == "11"),
        "actor is an agent identity: {c:?}"
    );
    // Cached: the same token again; forced: a new one.
    assert_eq!(p.token(&mcp_api(), false).await.unwrap().token, t.token);
    assert_ne!(p.token(&mcp_api(), true).await.unwrap().token, t.token);
    let held = p.held().await;
    let t1 = held
        .iter()
        .find(|(l, _)| l.starts_with("T1"))
        .expect("T1 held");
    assert_eq!(s(&claims(&t1.1), "azp"), BP);

    // Autonomous: app-only agent token, the agent acting as itself.
    let auto = setup::provider(&cfg, TokenMode::Direct, None).unwrap();
    let a = claims(&auto.token(&mcp_api(), false).await.unwrap().token);
    assert_eq!(s(&a, "idtyp"), "app");
    assert_eq!((s(&a, "appid"), s(&a, "sub")), (AGENT, AGENT));
    assert_eq!(a["roles"], serde_json::json!(["Tools.Invoke"]));
    assert!(auto.describe().contains("autonomous"));

    // A scope nobody consented to is explained as missing consent.
    let err = p
        .token(
            &Api {
                name: "graph-mail".into(),
                scope: Some("https://graph.microsoft.com/User.ReadWrite".into()),
            },
            false,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("AADSTS65001") && err.contains("Consent is missing"),
        "{err}"
    );
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_provider_for_the_user_and_autonomous() {
    let sts = start_sts().await;
    let sidecar = start_sidecar(&sts).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        &sts,
        dir.path(),
        &[
            ("AGENTID_AGENT_TOKENS", "sidecar".into()),
            ("AGENTID_AGENT_SIDECAR_URL", sidecar.url()),
        ],
    );
    assert_eq!(cfg.tokens, TokenMode::Sidecar);
    let user = setup::session(&cfg).unwrap();
    setup::sign_in(&user, &alice(), &mut std::io::sink())
        .await
        .unwrap();
    let p = setup::provider(&cfg, cfg.tokens, Some(user)).unwrap();
    let t = p.token(&mcp_api(), false).await.unwrap();
    let c = claims(&t.token);
    assert_eq!(s(&c, "aud"), format!("api://{MCP}"));
    assert_eq!(s(&c, "idtyp"), "user");
    assert_eq!(s(&c, "appid"), AGENT);
    assert_eq!(s(&c, "upn"), ALICE_UPN);
    assert!(s(&c, "xms_act_fct").split(' ').any(|f| f == "11"));
    assert!(t.expires_at > agentid_agent::tokens::now() + 600);
    // Cached by the agent; a forced refresh reaches through the sidecar's own cache too.
    assert_eq!(p.token(&mcp_api(), false).await.unwrap().token, t.token);
    assert_ne!(p.token(&mcp_api(), true).await.unwrap().token, t.token);
    let model = p
        .token(
            &Api {
                name: "openai".into(),
                scope: None,
            },
            false,
        )
        .await
        .unwrap();
    assert_eq!(s(&claims(&model.token), "aud"), COGNITIVE);

    let auto = setup::provider(&cfg, cfg.tokens, None).unwrap();
    let a = claims(&auto.token(&mcp_api(), false).await.unwrap().token);
    assert_eq!(s(&a, "idtyp"), "app");
    assert_eq!(s(&a, "appid"), AGENT);

    // An API the sidecar does not know: the sidecar's answer is passed on readably.
    let err = p
        .token(
            &Api {
                name: "nope".into(),
                scope: None,
            },
            false,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("No scopes found") && err.contains("400"),
        "{err}"
    );
    sidecar.shutdown();
    sts.stop().await;
}

/// Everything for a tool-loop test: the agent (direct mode, signed in as alice), the MCP
/// server and the model.
async fn loop_fixture(
    sts: &agentid_testkit::TestSts,
    dir: &std::path::Path,
    script: Vec<Say>,
    extra: &[(&str, String)],
) -> (agentid_agent::Agent, McpServer, FakeLlm) {
    let mcp = McpServer::start(&format!("api://{MCP}")).await;
    let llm = FakeLlm::start(COGNITIVE, script).await;
    let mut env = vec![
        ("AGENTID_AGENT_LLM_BASE_URL", format!("{}/v1", llm.base)),
        ("AGENTID_AGENT_LLM_MODEL", "scripted".into()),
        ("AGENTID_AGENT_MCP", format!("gw={}", mcp.url)),
        ("AGENTID_AGENT_MCP_SCOPE", format!("api://{MCP}/.default")),
    ];
    env.extend(extra.iter().cloned());
    let cfg = config(sts, dir, &env);
    let user = setup::session(&cfg).unwrap();
    setup::sign_in(&user, &alice(), &mut std::io::sink())
        .await
        .unwrap();
    let p = setup::provider(&cfg, cfg.tokens, Some(user)).unwrap();
    let agent = setup::agent(&cfg, p).await.unwrap();
    (agent, mcp, llm)
}

fn tool_messages(body: &Value) -> Vec<(String, String)> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            (
                m["tool_call_id"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every assistant tool_call id in the conversation has exactly one tool answer.
fn assert_no_dangling(messages: &[Value]) {
    let ids: Vec<String> = messages
        .iter()
        .filter_map(|m| m["tool_calls"].as_array())
        .flatten()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    for id in &ids {
        let answers = messages
            .iter()
            .filter(|m| m["role"] == "tool" && m["tool_call_id"] == id.as_str())
            .count();
        assert_eq!(answers, 1, "tool call {id} answered {answers} times");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_loop_calls_mcp_with_the_agent_token_and_survives_bad_arguments() {
    let sts = start_sts().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, mcp, llm) = loop_fixture(
        &sts,
        dir.path(),
        vec![
            Say::Tools(vec![("whoami".into(), "{}".into())]),
            Say::Tools(vec![
                ("echo".into(), "{\"text\": \"unterminated".into()),
                ("echo".into(), "{\"text\": \"hi\"}".into()),
                ("fail".into(), "{}".into()),
            ]),
            Say::Text("All done.".into()),
        ],
        &[],
    )
    .await;
    // All pages of tools/list were read.
    let tools = agent.toolbox.openai_tools();
    let names: Vec<&str> = tools
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["whoami", "echo", "fail"]);

    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let ev = events.clone();
    let mut on = move |e: Event| ev.lock().unwrap().push(e);
    let answer = agent.ask("Who am I?", &mut on).await.unwrap();
    assert_eq!(answer, "All done.");
    let streamed: String = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Event::Text(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(streamed, "All done.");

    // The MCP server saw the agent acting for alice, with a token for its own audience.
    let calls = mcp.calls();
    let names: Vec<&str> = calls.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["whoami", "echo", "fail"],
        "the malformed call never reached the server"
    );
    for (_, c) in &calls {
        assert_eq!(s(c, "aud"), format!("api://{MCP}"));
        assert_eq!(s(c, "appid"), AGENT);
        assert_eq!(s(c, "upn"), ALICE_UPN);
        assert_eq!(s(c, "idtyp"), "user");
    }

    // The model: called with the agent's token for Cognitive Services, given every result.
    let reqs = llm.requests();
    assert_eq!(reqs.len(), 3);
    for (bearer, body) in &reqs {
        let c = claims(bearer.as_deref().expect("bearer"));
        assert_eq!(s(&c, "aud"), COGNITIVE);
        assert_eq!(s(&c, "appid"), AGENT);
        assert_eq!(body["model"], "scripted");
        assert_eq!(body["stream"], true);
    }
    let first = tool_messages(&reqs[1].1);
    assert_eq!(first.len(), 1);
    assert!(first[0].1.contains(ALICE_UPN), "{first:?}");
    let second = tool_messages(&reqs[2].1);
    assert_eq!(second.len(), 4);
    assert!(
        second[1]
            .1
            .starts_with("Error: the arguments are not valid JSON"),
        "{second:?}"
    );
    assert_eq!(second[2].1, "echo: hi");
    assert!(
        second[3].1.starts_with("Error: the tool failed on purpose"),
        "{second:?}"
    );
    assert_no_dangling(&agent.messages);
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_loop_stops_at_the_cap_with_every_call_answered() {
    let sts = start_sts().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, mcp, llm) = loop_fixture(
        &sts,
        dir.path(),
        vec![],
        &[("AGENTID_AGENT_MAX_ITERATIONS", "3".into())],
    )
    .await;
    *llm.state.fallback.lock().unwrap() = Some(Say::Tools(vec![("whoami".into(), "{}".into())]));
    let err = agent.ask("loop forever", &mut |_| {}).await.unwrap_err();
    assert!(matches!(err, AgentError::CapReached(3)), "{err}");
    assert_eq!(llm.requests().len(), 3);
    assert_eq!(mcp.calls().len(), 3);
    assert_no_dangling(&agent.messages);
    // The conversation goes on after the cap.
    *llm.state.fallback.lock().unwrap() = Some(Say::Text("ok".into()));
    assert_eq!(agent.ask("stop now", &mut |_| {}).await.unwrap(), "ok");
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_refusing_the_token_gets_a_reconnect_with_a_fresh_one() {
    let sts = start_sts().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, mcp, _llm) = loop_fixture(
        &sts,
        dir.path(),
        vec![
            Say::Tools(vec![("whoami".into(), "{}".into())]),
            Say::Text("first".into()),
            Say::Tools(vec![("whoami".into(), "{}".into())]),
            Say::Text("second".into()),
        ],
        &[],
    )
    .await;
    assert_eq!(agent.ask("one", &mut |_| {}).await.unwrap(), "first");
    let server = agent.toolbox.servers[0].clone();
    assert_eq!(server.connects.load(std::sync::atomic::Ordering::SeqCst), 1);
    // The server now refuses every token it has accepted so far (as if they were revoked).
    let seen: Vec<String> = mcp
        .state
        .seen_tokens
        .lock()
        .unwrap()
        .iter()
        .cloned()
        .collect();
    assert_eq!(seen.len(), 1);
    mcp.state.refuse.lock().unwrap().extend(seen.clone());
    let before = mcp
        .state
        .unauthorized
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(agent.ask("two", &mut |_| {}).await.unwrap(), "second");
    assert!(
        mcp.state
            .unauthorized
            .load(std::sync::atomic::Ordering::SeqCst)
            > before
    );
    assert_eq!(server.connects.load(std::sync::atomic::Ordering::SeqCst), 2);
    let calls = mcp.calls();
    assert_eq!(
        calls.len(),
        2,
        "the second call went through after the reconnect"
    );
    let tool_results = tool_messages(&agent.messages.iter().fold(
        serde_json::json!({"messages": []}),
        |mut acc, m| {
            acc["messages"].as_array_mut().unwrap().push(m.clone());
            acc
        },
    ));
    assert!(
        tool_results.iter().all(|(_, c)| !c.starts_with("Error")),
        "{tool_results:?}"
    );
    assert_eq!(
        mcp.state.seen_tokens.lock().unwrap().len(),
        2,
        "a new token was used"
    );
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_mcp_server_is_skipped_and_same_names_are_namespaced() {
    let sts = start_sts().await;
    let dir = tempfile::tempdir().unwrap();
    let second = McpServer::start(&format!("api://{MCP}")).await;
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/mcp", l.local_addr().unwrap())
    };
    let mcp_list = |first: &str| format!("a={first},b={},dead={dead}", second.url);
    let mcp = McpServer::start(&format!("api://{MCP}")).await;
    let (mut agent, _unused, llm) = loop_fixture(
        &sts,
        dir.path(),
        vec![
            Say::Tools(vec![("b__echo".into(), "{\"text\":\"via b\"}".into())]),
            Say::Text("fine".into()),
        ],
        &[("AGENTID_AGENT_MCP", mcp_list(&mcp.url))],
    )
    .await;
    assert_eq!(agent.toolbox.unavailable.len(), 1);
    assert_eq!(agent.toolbox.unavailable[0].0, "dead");
    let names: Vec<String> = agent
        .toolbox
        .openai_tools()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        names.contains(&"a__whoami".to_string()) && names.contains(&"b__echo".to_string()),
        "{names:?}"
    );
    assert_eq!(names.len(), 6);
    assert_eq!(agent.ask("echo via b", &mut |_| {}).await.unwrap(), "fine");
    assert_eq!(second.calls().len(), 1);
    assert!(mcp.calls().is_empty());
    assert_eq!(llm.requests().len(), 2);
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_refusing_the_token_is_explained_in_identity_terms() {
    let sts = start_sts().await;
    let dir = tempfile::tempdir().unwrap();
    // The model expects another audience than the one the agent is configured for.
    let (mut agent, _mcp, _) = loop_fixture(&sts, dir.path(), vec![], &[]).await;
    let llm = FakeLlm::start("https://models.example", vec![]).await;
    let cfg = config(
        &sts,
        dir.path(),
        &[
            ("AGENTID_AGENT_LLM_KIND", "azure".into()),
            ("AGENTID_AGENT_LLM_BASE_URL", llm.base.clone()),
            ("AGENTID_AGENT_LLM_DEPLOYMENT", "gpt".into()),
        ],
    );
    agent.llm = Some(agentid_agent::llm::LlmClient::new(
        agentid_agent::http::client(cfg.ca_file.as_deref()).unwrap(),
        cfg.llm.clone().unwrap(),
    ));
    let err = agent.ask("hello", &mut |_| {}).await.unwrap_err();
    let AgentError::Denied(msg) = &err else {
        panic!("expected an explained denial, got {err}")
    };
    // One retry with a fresh token, then the explanation.
    assert_eq!(llm.requests().len(), 2);
    for needle in [
        "HTTP 401",
        "/openai/deployments/gpt/chat/completions?api-version=",
        &format!("a token for {COGNITIVE}"),
        &format!("agent/app {AGENT} acting for the user {ALICE_UPN}"),
        "audience must be https://models.example",
        "wrong audience",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in: {msg}");
    }
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_near_expiry_are_replaced_before_use() {
    // Every access token lives 200 s: always inside the five-minute refresh margin.
    let sts = agentid_testkit::TestSts::start_with(
        agentid_testkit::Db::Sqlite,
        &tenant(),
        agentid_testkit::sts::Options {
            tls: true,
            configure: Box::new(|s| {
                s.access_lifetime = agentid_sts::settings::AccessLifetime::Fixed(200)
            }),
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (mut agent, mcp, _llm) = loop_fixture(
        &sts,
        dir.path(),
        vec![
            Say::Tools(vec![("whoami".into(), "{}".into())]),
            Say::Text("one".into()),
            Say::Tools(vec![("whoami".into(), "{}".into())]),
            Say::Text("two".into()),
        ],
        &[],
    )
    .await;
    let t = agent.tokens.token(&mcp_api(), false).await.unwrap();
    assert!(!t.fresh());
    assert_ne!(
        agent.tokens.token(&mcp_api(), false).await.unwrap().token,
        t.token,
        "a token inside the margin is not reused"
    );
    assert_eq!(agent.ask("1", &mut |_| {}).await.unwrap(), "one");
    assert_eq!(agent.ask("2", &mut |_| {}).await.unwrap(), "two");
    // The MCP connection was renewed with a new token instead of sending an expiring one,
    // and the server never had to refuse anything.
    let server = agent.toolbox.servers[0].clone();
    assert!(server.connects.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    assert_eq!(
        mcp.state
            .unauthorized
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    assert!(mcp.state.seen_tokens.lock().unwrap().len() >= 3);
    sts.stop().await;
}
