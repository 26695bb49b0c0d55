//! The device-code sign-in pages in a real browser (headless Debian Chromium driven by
//! playwright-core), completing MSAL Python's and MSAL Node's device flows. Screenshots of
//! every page land in `target/screenshots/` for a person to look at.

use agentid_testkit::{Db, TestSts, claims};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::AsyncBufReadExt;

use agentid_testkit::demo::DEMO_TENANT as DEMO;
const BP: &str = "85075aa5-1d73-42de-812a-95348218e4b2";
const GRAPH_CLI: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn require_tools() {
    assert!(
        PathBuf::from("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: run scripts/node-deps.sh (the test command does)"
    );
    assert!(
        root()
            .join("tests/browser/node_modules/playwright-core")
            .exists(),
        "tests/browser/node_modules is missing: run scripts/node-deps.sh"
    );
}

/// Signs `user` in on /devicelogin with Chromium; screenshots go to target/screenshots/<name>.
async fn browser_sign_in(sts: &TestSts, user_code: &str, user: &str, password: &str, name: &str) {
    let shots = root().join("target/screenshots").join(name);
    let _ = std::fs::remove_dir_all(&shots);
    let out = tokio::process::Command::new("node")
        .arg(root().join("tests/browser/devicelogin.mjs"))
        .env("BASE", sts.base())
        .env("CA_FILE", sts.ca_file())
        .env("USER_CODE", user_code)
        .env("USERNAME", user)
        .env("PASSWORD", password)
        .env("SHOT_DIR", &shots)
        .output()
        .await
        .expect("node runs");
    assert!(
        out.status.success(),
        "Chromium sign-in failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for page in ["1-enter-code", "2-sign-in", "4-done"] {
        let f = shots.join(format!("{page}.png"));
        assert!(
            std::fs::metadata(&f)
                .map(|m| m.len() > 1000)
                .unwrap_or(false),
            "screenshot {} missing",
            f.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msal_python_device_flow_in_chromium() {
    require_tools();
    let sts = TestSts::start(Db::Sqlite, DEMO).await;
    let python = std::env::var("AGENTID_CONFORMANCE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target/conformance-venv/bin/python"));
    let mut child = tokio::process::Command::new(python)
        .arg(root().join("tests/conformance/msal_device_flow.py"))
        .env("REQUESTS_CA_BUNDLE", sts.ca_file())
        .env("AUTHORITY", sts.authority())
        .env("CLIENT_ID", GRAPH_CLI)
        // User.ReadWrite is not pre-consented: Bob sees the consent page.
        .env("SCOPES", "User.ReadWrite")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python runs");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let flow: Value =
        serde_json::from_str(&lines.next_line().await.unwrap().expect("flow")).unwrap();
    browser_sign_in(
        &sts,
        flow["user_code"].as_str().unwrap(),
        "bob@contoso.test",
        "bob-builds-agents",
        "msal-python-device",
    )
    .await;
    assert!(
        root()
            .join("target/screenshots/msal-python-device/3-consent.png")
            .exists(),
        "Bob was asked to consent"
    );
    let result: Value =
        serde_json::from_str(&lines.next_line().await.unwrap().expect("result")).unwrap();
    let c = claims(
        result["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token: {result}")),
    );
    assert_eq!(
        (
            c["upn"].as_str(),
            c["scp"].as_str().map(|s| s.contains("User.ReadWrite"))
        ),
        (Some("bob@contoso.test"), Some(true))
    );
    // The consent page granted offline_access too: MSAL refreshes silently.
    let refreshed: Value =
        serde_json::from_str(&lines.next_line().await.unwrap().expect("refresh result")).unwrap();
    assert!(refreshed["access_token"].is_string(), "{refreshed}");
    assert!(child.wait().await.unwrap().success());
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msal_node_device_flow_in_chromium() {
    require_tools();
    let sts = TestSts::start(Db::Sqlite, DEMO).await;
    let mut child = tokio::process::Command::new("node")
        .arg(root().join("tests/browser/msal_node_device.mjs"))
        .env("BASE", sts.base())
        .env("TENANT", &sts.tenant_id)
        .env("CLIENT_ID", GRAPH_CLI)
        .env("SCOPES", format!("api://{BP}/access_as_user"))
        .env("NODE_EXTRA_CA_CERTS", sts.ca_file())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let cb: Value = serde_json::from_str(
        &lines
            .next_line()
            .await
            .unwrap()
            .expect("device code callback"),
    )
    .unwrap();
    let code = cb["userCode"]
        .as_str()
        .unwrap_or_else(|| panic!("no user code: {cb}"));
    assert_eq!(cb["verificationUri"], format!("{}/devicelogin", sts.base()));
    browser_sign_in(
        &sts,
        code,
        "alice@contoso.test",
        "correct-horse-battery",
        "msal-node-device",
    )
    .await;
    let result: Value =
        serde_json::from_str(&lines.next_line().await.unwrap().expect("result")).unwrap();
    let c = claims(
        result["accessToken"]
            .as_str()
            .unwrap_or_else(|| panic!("MSAL Node got no token: {result}")),
    );
    assert_eq!(
        (c["aud"].as_str(), c["upn"].as_str()),
        (
            Some(format!("api://{BP}").as_str()),
            Some("alice@contoso.test")
        )
    );
    assert_eq!(result["account"], "alice@contoso.test");
    assert!(child.wait().await.unwrap().success());
    sts.stop().await;
}
