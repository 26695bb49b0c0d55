//! Real parts in-process: the testkit STS, the sidecar, and the testkit's scripted model and
//! rmcp MCP server (both check the bearer's audience); plus the agent's configuration for them.
#![allow(dead_code)]

use agentid_agent::config::{AgentConfig, Sources};
use agentid_testkit::{Db, TestSts};
use serde_json::{Map, Value};
use std::time::Duration;

pub use agentid_testkit::demo::{
    AGENT, ALICE_PASSWORD, ALICE_UPN, BLUEPRINT as BP, BLUEPRINT_SECRET as BP_SECRET, COGNITIVE,
    MCP_APP as MCP,
};
pub use agentid_testkit::upstream::scripted::{FakeLlm, McpServer, Say};

/// The demo tenant plus consent for the agent to call the model for the user.
pub fn tenant() -> String {
    agentid_testkit::demo::demo_tenant_with_llm_grant()
}

pub async fn start_sts() -> TestSts {
    TestSts::start(Db::Sqlite, &tenant()).await
}

pub fn claims(jwt: &str) -> Map<String, Value> {
    agentid_testkit::claims(jwt)
}

/// Polls `f` until it is true (10 s at most).
pub async fn eventually(what: &str, f: impl FnMut() -> bool) {
    agentid_testkit::poll::until(Duration::from_secs(10), what, f).await
}

/// The agent configuration for these parts, through the same loader the CLI uses.
pub fn config(sts: &TestSts, dir: &std::path::Path, extra: &[(&str, String)]) -> AgentConfig {
    let mut env: Vec<(String, String)> = vec![
        ("AGENTID_AGENT_AUTHORITY".into(), sts.base().to_string()),
        ("AGENTID_AGENT_TENANT".into(), sts.tenant_id.clone()),
        ("AGENTID_AGENT_BLUEPRINT".into(), BP.into()),
        ("AGENTID_AGENT_AGENT_ID".into(), AGENT.into()),
        ("AGENTID_AGENT_BLUEPRINT_SECRET".into(), BP_SECRET.into()),
        (
            "AGENTID_AGENT_CA_FILE".into(),
            sts.ca_file().display().to_string(),
        ),
        (
            "AGENTID_AGENT_TOKEN_CACHE".into(),
            dir.join("tokens.json").display().to_string(),
        ),
        ("AGENTID_AGENT_TOKENS".into(), "direct".into()),
    ];
    for (k, v) in extra {
        env.retain(|(x, _)| x != k);
        env.push((k.to_string(), v.clone()));
    }
    agentid_agent::config::load(&Sources {
        file: None,
        env: env.into_iter().collect(),
        cwd: dir.to_path_buf(),
        home: Some(dir.to_path_buf()),
    })
    .expect("configuration")
}

// ---------------------------------------------------------------- sidecar

pub async fn start_sidecar(sts: &TestSts) -> agentid_sidecar::RunningSidecar {
    let env: Vec<(String, String)> = [
        ("AzureAd__Instance", format!("{}/", sts.base())),
        ("AzureAd__TenantId", sts.tenant_id.clone()),
        ("AzureAd__ClientId", BP.to_string()),
        (
            "AzureAd__ClientCredentials__0__SourceType",
            "ClientSecret".into(),
        ),
        (
            "AzureAd__ClientCredentials__0__ClientSecret",
            BP_SECRET.into(),
        ),
        (
            "DownstreamApis__mcp__Scopes__0",
            format!("api://{MCP}/.default"),
        ),
        (
            "DownstreamApis__openai__Scopes__0",
            format!("{COGNITIVE}/.default"),
        ),
        ("Sidecar__AllowedAgentIdentities__0", AGENT.into()),
        ("Sidecar__ListenUrl", "http://127.0.0.1:0".into()),
        ("Sidecar__HealthListenUrl", "off".into()),
        (
            "Sidecar__ExtraCaBundlePath",
            sts.ca_file().display().to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let config = agentid_sidecar::config::load(&agentid_sidecar::ConfigSources::from_vars(&env))
        .expect("sidecar configuration");
    agentid_sidecar::start(config)
        .await
        .expect("sidecar starts")
}
