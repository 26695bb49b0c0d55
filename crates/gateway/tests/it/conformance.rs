//! Unmodified clients through the gateway, from the pinned venv (`scripts/conformance-venv.sh`):
//! the official MCP Python SDK client listing and calling tools across two upstreams — one built
//! with `rmcp` (agentid's demo MCP server), one with the MCP Python SDK's server — and the
//! `openai` Python client (`OpenAI` and `AzureOpenAI`, streaming and not) through `/llm`.

use crate::support::*;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const COGNITIVE: &str = "https://cognitiveservices.azure.com";

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("AGENTID_CONFORMANCE_PYTHON") {
        return p.into();
    }
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/conformance-venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/conformance-venv.sh (scripts/test does)",
        p.display()
    );
    p
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/conformance")
        .join(name)
}

struct Child(tokio::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

async fn check(sts: &agentid_testkit::TestSts, audience: &str) -> agentid_demo::TokenCheck {
    let ca = std::fs::read_to_string(sts.ca_file()).unwrap();
    let d = agentid_demo::discover(&sts.authority(), Some(&ca))
        .await
        .unwrap();
    agentid_demo::TokenCheck {
        jwks_url: d.jwks_url,
        issuer: d.issuer,
        audience: audience.to_string(),
        ca_pem: Some(ca),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_python_sdk_client_through_the_gateway_to_rmcp_and_python_servers() {
    let sts = sts().await;
    let token = agent_obo(&sts, &format!("api://{MCP_APP}/access_as_user")).await;
    let iss = claim(&token, "iss").as_str().unwrap().to_string();
    let ca = std::fs::read_to_string(sts.ca_file()).unwrap();
    let d = agentid_demo::discover(&sts.authority(), Some(&ca))
        .await
        .unwrap();
    // rmcp target: agentid's demo MCP server (checks the bearer: passthrough below).
    let rmcp_server = agentid_demo::start_mcp(agentid_demo::McpSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        check: check(&sts, &format!("api://{MCP_APP}")).await,
        token_endpoint: d.token_endpoint.clone(),
        graph_base: sts.base().to_string(),
        client_id: MCP_APP.into(),
        client_secret: "unused".into(),
        ca_pem: Some(ca.clone()),
    })
    .await
    .unwrap();
    // Python SDK target.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _py = Child(
        tokio::process::Command::new(python())
            .arg(script("mcp_python_server.py"))
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the Python MCP server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
          - name: demo
            mcp: {{host: "http://{rmcp}/mcp"}}
            policies: {{backendAuth: {{passthrough: {{}}}}}}
          - name: py
            mcp: {{host: "http://127.0.0.1:{port}/mcp"}}
      policies:
        jwtAuth:
          mode: strict
          issuer: {iss}
          audiences: [api://{MCP_APP}]
          jwks: {{url: "{jwks}"}}
        mcpAuthorization:
          rules:
          - require: agent.onBehalfOfUser
          - deny: mcp.tool.name.startsWith('delete_')
"#,
        rmcp = rmcp_server.addr
    );
    let gw = Gw::start(&config, Some(sts.ca_file())).await;
    let out = tokio::process::Command::new(python())
        .arg(script("mcp_gateway_client.py"))
        .env("MCP_URL", gw.url(3000, "/mcp"))
        .env("TOKEN", &token)
        .env("ALLOWED", "demo_whoami")
        .env("DENIED", "py_delete_everything")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client failed:\n{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r["server"], json!("agentid-gateway"));
    let tools: Vec<&str> = r["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tools.contains(&"demo_whoami") && tools.contains(&"py_py_echo"),
        "{tools:?}"
    );
    assert!(
        !tools.contains(&"py_delete_everything"),
        "the denied tool is filtered out: {tools:?}"
    );
    assert!(
        r["allowed"][0]
            .as_str()
            .unwrap()
            .contains("acting on behalf of alice@contoso.test"),
        "{r}"
    );
    assert_eq!(r["denied"]["code"], json!(-32602), "{r}");
    assert_eq!(
        r["denied"]["message"],
        json!("Unknown tool: py_delete_everything")
    );

    // The Python server's echo tool, through the same SDK client.
    let out = tokio::process::Command::new(python())
        .arg(script("mcp_gateway_client.py"))
        .env("MCP_URL", gw.url(3000, "/mcp"))
        .env("TOKEN", &token)
        .env("ALLOWED", "py_py_echo")
        .env("ALLOWED_ARGS", r#"{"text": "hi"}"#)
        .env("DENIED", "py_delete_everything")
        .output()
        .await
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(
        r["allowed"][0],
        json!("python says: hi"),
        "{r} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    rmcp_server.shutdown().await;
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_client_through_the_llm_route() {
    let sts = sts().await;
    let token = agent_obo(&sts, &format!("{COGNITIVE}/.default")).await;
    let wrong = agent_obo(&sts, &format!("api://{MCP_APP}/access_as_user")).await;
    let iss = claim(&token, "iss").as_str().unwrap().to_string();
    let model = agentid_demo::start_model(agentid_demo::ModelSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        check: Some(check(&sts, COGNITIVE).await),
    })
    .await
    .unwrap();
    let jwks = format!("{}/discovery/v2.0/keys", sts.authority());
    let config = format!(
        r#"
binds:
- port: 3000
  listeners:
  - routes:
    - name: llm
      matches: [{{path: {{pathPrefix: /llm}}}}]
      backends:
      - ai:
          name: offline
          hostOverride: "{addr}"
          provider: {{openAI: {{}}}}
      policies:
        urlRewrite: {{path: {{prefix: ""}}}}
        backendAuth: {{passthrough: {{}}}}
        jwtAuth:
          mode: strict
          issuer: {iss}
          audiences: [{COGNITIVE}]
          jwks: {{url: "{jwks}"}}
        authorization: {{rules: ["jwt.sub != null"]}}
"#,
        addr = model.addr
    );
    let gw = Gw::start(&config, Some(sts.ca_file())).await;
    let out = tokio::process::Command::new(python())
        .arg(script("openai_client.py"))
        .env("MODEL_BASE_URL", gw.url(3000, "/llm"))
        .env("TOKEN", &token)
        .env("WRONG_TOKEN", &wrong)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openai_client.py failed:\n{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(&stdout).unwrap();
    for flavour in ["openai", "azure"] {
        assert_eq!(
            r[flavour]["plain"]["tool"],
            json!("whoami"),
            "{flavour}: {r}"
        );
        assert_eq!(
            r[flavour]["stream"]["tool"],
            json!("add_note"),
            "{flavour}: {r}"
        );
        assert_eq!(
            r[flavour]["stream"]["finish"],
            json!("tool_calls"),
            "{flavour}: {r}"
        );
    }
    // The gateway refuses the token for another audience before the model sees it.
    assert_eq!(r["errors"]["wrong_token"]["status"], json!(401), "{r}");
    // Usage per agent and user from the streamed and plain calls.
    let events = gw.audit("kind=llm&decision=allow").await;
    assert!(
        events.iter().any(|e| e["llm"]["streaming"] == json!(true)
            && e["llm"]["usage"]["total"].as_u64().is_some()),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .all(|e| e["identity"]["agentId"] == json!(AGENT))
    );
    model.shutdown().await;
    sts.stop().await;
}
