//! Conformance of the offline model with the unmodified `openai` Python client, run from the
//! pinned venv that `scripts/conformance-venv.sh` builds: `OpenAI(base_url=…/v1)` and
//! `AzureOpenAI(azure_endpoint=…)`, streaming and not, with a real agent token from the STS as
//! the bearer. The Python side prints what the client parsed; it is asserted here.

use crate::common::*;
use agentid_demo::ModelSettings;
use serde_json::{Value, json};
use std::path::PathBuf;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_client_talks_to_the_offline_model() {
    let f = fixture().await;
    let model = agentid_demo::start_model(ModelSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        check: Some(f.check(COGNITIVE).await),
    })
    .await
    .expect("model starts");
    let token = f.agent_obo(&format!("{COGNITIVE}/.default")).await;
    let wrong = f
        .agent_obo(&format!("api://{MCP_APP}/access_as_user"))
        .await;
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/openai_client.py");
    let out = tokio::process::Command::new(python())
        .arg(script)
        .env("MODEL_BASE_URL", model.base_url())
        .env("TOKEN", &token)
        .env("WRONG_TOKEN", &wrong)
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openai_client.py failed:\n{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("openai_client.py printed no JSON ({e}): {stdout}"));

    for flavour in ["openai", "azure"] {
        let p = &r[flavour]["plain"];
        assert_eq!(p["model"], "agentid-offline", "{flavour}: {p}");
        assert_eq!(p["finish_reason"], "tool_calls", "{flavour}: {p}");
        assert_eq!(p["tool"], "whoami", "{flavour}: {p}");
        assert_eq!(p["arguments"], json!({}), "{flavour}: {p}");
        assert!(p["usage_total"].as_u64().unwrap() > 0, "{flavour}: {p}");
        assert_eq!(
            p["summary"], "The tool whoami says: agent A acting on behalf of demo@agentid.local",
            "{flavour}: {p}"
        );
        let s = &r[flavour]["stream"];
        assert_eq!(s["tool"], "add_note", "{flavour}: {s}");
        assert_eq!(
            s["arguments"],
            json!({"text": "buy milk"}),
            "{flavour}: {s}"
        );
        assert_eq!(s["ids"].as_array().unwrap().len(), 1, "{flavour}: {s}");
        assert_eq!(s["finish"], "tool_calls", "{flavour}: {s}");
        assert!(s["usage_total"].as_u64().is_some(), "{flavour}: {s}");
        assert_eq!(
            s["text"], "agentid-offline model: you said \"hello\".",
            "{flavour}: {s}"
        );
    }
    assert_eq!(r["models"], json!(["agentid-offline"]));
    assert_eq!(r["errors"]["empty_messages"]["status"], 400, "{r}");
    assert_eq!(r["errors"]["wrong_token"]["status"], 401, "{r}");
    assert!(
        r["errors"]["wrong_token"]["message"]
            .as_str()
            .unwrap()
            .contains(COGNITIVE),
        "{r}"
    );
    model.shutdown().await;
    f.sts.stop().await;
}
