//! `agentid up` end to end through the real binary, each part as it runs for a user: the scripted
//! story (`up --demo`), and `up` followed by `agentid agent ask "who am I?"` in its own process,
//! answered by the MCP tool through the gateway on behalf of the signed-in demo user.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const AGENT: &str = "c228e427-7816-4caa-a04f-7353b3a519f7";

/// Seven loopback ports nothing listens on (held until the list is built, then released).
fn free_ports() -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..7)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

fn up_command(dir: &std::path::Path, ports: &[u16]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentid"));
    cmd.current_dir(dir).env_remove("AGENTID_HOME").arg("up");
    for (flag, port) in [
        "--sts-port",
        "--gateway-port",
        "--admin-port",
        "--metrics-port",
        "--sidecar-port",
        "--mcp-port",
        "--model-port",
    ]
    .iter()
    .zip(ports)
    {
        cmd.arg(flag).arg(port.to_string());
    }
    cmd
}

#[test]
fn up_demo_tells_the_whole_story() {
    let dir = tempfile::tempdir().unwrap();
    let out = up_command(dir.path(), &free_ports())
        .arg("--demo")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // T2 names the agent as actor (facet 11) and the user as subject.
    assert!(
        stdout.contains(&format!("T2: actor {AGENT} (facets 11 9 3)")),
        "{stdout}"
    );
    assert!(stdout.contains("user demo@agentid.local"), "{stdout}");
    // The LLM leg is authenticated and answers with the tool call.
    assert!(
        stdout.contains("the model answers with a tool call: whoami"),
        "{stdout}"
    );
    // The MCP server sees both the agent and the user.
    assert!(
        stdout.contains(&format!(
            "whoami says: You are agent {AGENT} acting on behalf of demo@agentid.local"
        )),
        "{stdout}"
    );
    // The autonomous agent is refused, and the audit trail says why.
    assert!(
        stdout.contains("tools offered to this caller: (none)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("error -32602: Unknown tool: whoami"),
        "{stdout}"
    );
    assert!(
        stdout.contains("mode=autonomous → deny (no_allow_rule_matched)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("mode=onBehalfOfUser → allow (rule_matched)"),
        "{stdout}"
    );
    // No audit JSON or token leaks into the story.
    assert!(!stdout.contains("\"grantType\""), "{stdout}");
    assert!(!stdout.contains("eyJ"), "no raw token printed");
    // State written for the user to edit.
    for f in [
        "demo-tenant.yaml",
        "gateway.yaml",
        "agent.yaml",
        "ca.pem",
        "workload-token",
        "workload-jwks.json",
    ] {
        assert!(dir.path().join(".agentid").join(f).exists(), "{f} written");
    }
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn agent_asks_who_am_i_after_up() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports();
    let child = up_command(dir.path(), &ports)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut up = Running(child);
    // Ready once the gateway's admin port answers (it starts last).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", ports[2])).is_ok()
            && dir.path().join(".agentid/agent.yaml").exists()
        {
            break;
        }
        if let Ok(Some(status)) = up.0.try_wait() {
            let mut err = String::new();
            use std::io::Read;
            up.0.stderr.take().unwrap().read_to_string(&mut err).ok();
            panic!("agentid up exited early ({status}): {err}");
        }
        assert!(Instant::now() < deadline, "agentid up did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_agentid"))
        .current_dir(dir.path())
        .env_remove("AGENTID_HOME")
        .env("AGENTID_AGENT_PASSWORD", "agentid-demo-password")
        .args(["agent", "ask", "who am I?"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "You are agent {AGENT} acting on behalf of demo@agentid.local"
        )),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains("[tool] whoami"),
        "the answer came from the MCP tool: {stderr}"
    );

    let ask = |extra: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentid"));
        cmd.current_dir(dir.path())
            .env_remove("AGENTID_HOME")
            .env("AGENTID_AGENT_PASSWORD", "agentid-demo-password")
            .arg("agent")
            .arg("ask")
            .args(extra)
            .arg("who am I?");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    // The same story in direct mode: the agent exchanges the workload token itself.
    let out = ask(&["--tokens", "direct"], &[]);
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success()
            && so.contains(&format!(
                "You are agent {AGENT} acting on behalf of demo@agentid.local"
            )),
        "direct mode:\n{so}\n{se}"
    );
    // Autonomous: the gateway offers no tools to an agent acting without a user.
    let out = ask(&["--autonomous"], &[]);
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        !se.contains("[tool] whoami") && !so.contains("acting on behalf of"),
        "autonomous must not reach the tool:\n{so}\n{se}"
    );
    // The sidecar down: a clear error naming it, not a hang.
    let dead = free_ports()[0];
    let out = ask(
        &[],
        &[(
            "AGENTID_AGENT_SIDECAR_URL",
            &format!("http://127.0.0.1:{dead}"),
        )],
    );
    let se = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && se.to_lowercase().contains("sidecar"),
        "sidecar down:\n{se}"
    );

    // The gateway recorded the decision with agent and user.
    let audit = reqwest_blocking_get(&format!(
        "http://127.0.0.1:{}/audit/events?kind=mcp&decision=allow",
        ports[2]
    ));
    assert!(
        audit.contains(AGENT) && audit.contains("demo@agentid.local"),
        "{audit}"
    );

    // Ctrl-C stops everything cleanly.
    let pid = up.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = up.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "agentid up did not stop on Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "clean exit: {status}");
}

/// A tiny HTTP/1.0 GET (the test crate has no blocking HTTP client).
fn reqwest_blocking_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}
