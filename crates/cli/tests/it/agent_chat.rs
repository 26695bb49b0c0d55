//! `agentid agent chat`, the built binary, driven in a terminal (tmux) against the testkit STS,
//! an rmcp MCP server and a scripted model, all in this test process.

#[path = "../../../agent/tests/it/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use self::support::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn tmux(socket: &str, args: &[&str]) -> std::process::Output {
    Command::new("tmux")
        .arg("-L")
        .arg(socket)
        .args(args)
        .output()
        .expect("tmux runs")
}

fn pane(socket: &str) -> String {
    String::from_utf8_lossy(
        &tmux(
            socket,
            &["capture-pane", "-p", "-J", "-S", "-200", "-t", "agent"],
        )
        .stdout,
    )
    .into_owned()
}

async fn wait_for(socket: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = pane(socket);
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {needle:?}; the terminal shows:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn send(socket: &str, keys: &str) {
    assert!(
        tmux(socket, &["send-keys", "-t", "agent", "-l", keys])
            .status
            .success()
    );
    assert!(
        tmux(socket, &["send-keys", "-t", "agent", "Enter"])
            .status
            .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_in_a_terminal_calls_tools_and_explains_the_token_chain() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!(
            "SKIPPED: tmux is not installed (apt-get install tmux); the terminal chat test did not run"
        );
        return;
    }
    let sts = start_sts().await;
    let mcp = McpServer::start(&format!("api://{MCP}")).await;
    let llm = FakeLlm::start(
        COGNITIVE,
        vec![
            Say::Tools(vec![("whoami".into(), "{}".into())]),
            Say::Text("You are Alice, and I am the blog agent.".into()),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("AGENTID_AGENT_AUTHORITY", sts.base().to_string()),
        ("AGENTID_AGENT_TENANT", sts.tenant_id.clone()),
        ("AGENTID_AGENT_BLUEPRINT", BP.into()),
        ("AGENTID_AGENT_AGENT_ID", AGENT.into()),
        ("AGENTID_AGENT_BLUEPRINT_SECRET", BP_SECRET.into()),
        ("AGENTID_AGENT_TOKENS", "direct".into()),
        ("AGENTID_CA_FILE", sts.ca_file().display().to_string()),
        (
            "AGENTID_AGENT_TOKEN_CACHE",
            dir.path().join("tokens.json").display().to_string(),
        ),
        ("AGENTID_AGENT_USERNAME", ALICE_UPN.into()),
        ("AGENTID_AGENT_PASSWORD", ALICE_PASSWORD.into()),
        ("AGENTID_AGENT_LLM_BASE_URL", format!("{}/v1", llm.base)),
        ("AGENTID_AGENT_MCP", format!("gateway={}", mcp.url)),
        ("AGENTID_AGENT_MCP_SCOPE", format!("api://{MCP}/.default")),
        (
            "AGENTID_HOME",
            dir.path().join("home").display().to_string(),
        ),
    ];
    let mut script = String::from("#!/bin/sh\ncd \"$(dirname \"$0\")\"\n");
    for (k, v) in &env {
        script.push_str(&format!("export {k}='{v}'\n"));
    }
    script.push_str(&format!(
        "exec '{}' agent chat\n",
        env!("CARGO_BIN_EXE_agentid")
    ));
    let script_path = dir.path().join("run.sh");
    std::fs::write(&script_path, script).unwrap();
    let socket = format!("agentid-test-{}", std::process::id());
    let started = tmux(
        &socket,
        &[
            "new-session",
            "-d",
            "-s",
            "agent",
            "-x",
            "200",
            "-y",
            "50",
            &format!("sh {}", script_path.display()),
        ],
    );
    assert!(started.status.success(), "{started:?}");
    // Always stop this test's tmux server, even when an assertion fails.
    struct Kill(String);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = Command::new("tmux")
                .args(["-L", &self.0, "kill-server"])
                .output();
        }
    }
    let _kill = Kill(socket.clone());

    wait_for(&socket, "you> ").await;
    send(&socket, "/tools");
    wait_for(&socket, "whoami — Who is calling").await;
    send(&socket, "who am I?");
    let text = wait_for(&socket, "You are Alice, and I am the blog agent.").await;
    assert!(text.contains("[tool] whoami"), "{text}");
    assert!(
        text.contains(ALICE_UPN),
        "the tool result names the user: {text}"
    );
    send(&socket, "/whoami");
    let text = wait_for(&socket, "acts on behalf of the user alice@contoso.test").await;
    assert!(text.contains("tokens obtained directly"), "{text}");
    // The MCP server saw the agent acting for alice.
    let calls = mcp.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].1["appid"], AGENT);
    send(&socket, "/exit");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tmux(&socket, &["has-session", "-t", "agent"])
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "chat did not exit:\n{}",
            pane(&socket)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The sign-in was cached privately.
    assert!(dir.path().join("tokens.json").exists());
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ask_tokens_config_and_logout_from_the_command_line() {
    let sts = start_sts().await;
    let mcp = McpServer::start(&format!("api://{MCP}")).await;
    let llm = FakeLlm::start(
        COGNITIVE,
        vec![
            Say::Tools(vec![("echo".into(), "{\"text\":\"ping\"}".into())]),
            Say::Text("pong".into()),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("tokens.json");
    let run = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentid"));
        cmd.current_dir(dir.path())
            .env_remove("AGENTID_HOME")
            .env("AGENTID_AGENT_AUTHORITY", sts.base())
            .env("AGENTID_AGENT_TENANT", &sts.tenant_id)
            .env("AGENTID_AGENT_BLUEPRINT", BP)
            .env("AGENTID_AGENT_AGENT_ID", AGENT)
            .env("AGENTID_AGENT_BLUEPRINT_SECRET", BP_SECRET)
            .env("AGENTID_AGENT_TOKENS", "direct")
            .env("AGENTID_CA_FILE", sts.ca_file())
            .env("AGENTID_AGENT_TOKEN_CACHE", &cache)
            .env("AGENTID_AGENT_PASSWORD", ALICE_PASSWORD)
            .env("AGENTID_AGENT_LLM_BASE_URL", format!("{}/v1", llm.base))
            .env("AGENTID_AGENT_MCP", format!("gateway={}", mcp.url))
            .env("AGENTID_AGENT_MCP_SCOPE", format!("api://{MCP}/.default"))
            .args(["agent", "--username", ALICE_UPN])
            .args(args);
        let out = cmd.output().expect("agentid runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stdout, stderr) = tokio::task::block_in_place(|| run(&["ask", "ping", "please"]));
    assert!(ok, "{stderr}");
    assert_eq!(
        stdout, "pong\n",
        "only the answer on stdout; stderr: {stderr}"
    );
    assert!(stderr.contains("[tool] echo"), "{stderr}");
    assert_eq!(mcp.calls().len(), 1);

    let (ok, stdout, stderr) = tokio::task::block_in_place(|| run(&["tokens"]));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("User token (Tc)"), "{stdout}");
    assert!(stdout.contains("T1 (blueprint exchange token)"), "{stdout}");
    assert!(
        stdout.contains("acts on behalf of the user alice@contoso.test"),
        "{stdout}"
    );

    let (ok, stdout, _) = tokio::task::block_in_place(|| run(&["config"]));
    assert!(ok);
    assert!(
        stdout.contains("blueprintSecret: (set, redacted)"),
        "{stdout}"
    );
    assert!(!stdout.contains(BP_SECRET), "{stdout}");

    assert!(cache.exists());
    let (ok, _, stderr) = tokio::task::block_in_place(|| run(&["logout"]));
    assert!(ok && stderr.contains("Signed out"), "{stderr}");
    assert!(!cache.exists());
    sts.stop().await;
}
