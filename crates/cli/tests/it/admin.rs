//! `agentid admin` against a real STS: sign in, create a blueprint and an agent, federate it,
//! consent, and get tokens for what was created.

use agentid_testkit::{Db, TestSts, claims};
use serde_json::Value;
use std::process::Command;

use agentid_testkit::demo::DEMO_TENANT as DEMO;

struct Cli<'a> {
    sts: &'a TestSts,
    home: tempfile::TempDir,
}

impl Cli<'_> {
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_agentid"))
            .arg("admin")
            .args(args)
            .args([
                "--authority",
                &self.sts.authority(),
                "--ca-file",
                self.sts.ca_file().to_str().unwrap(),
            ])
            .env("AGENTID_HOME", self.home.path())
            .env("AGENTID_ADMIN_PASSWORD", "correct-horse-battery")
            .env_remove("AGENTID_AUTHORITY")
            .output()
            .expect("agentid runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }

    fn json(&self, args: &[&str]) -> Value {
        let (ok, out, err) = self.run(args);
        assert!(ok, "agentid admin {args:?} failed: {err}");
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_creates_a_working_blueprint_and_agent() {
    let sts = TestSts::start(Db::Sqlite, DEMO).await;
    let cli = Cli {
        sts: &sts,
        home: tempfile::tempdir().unwrap(),
    };
    let (ok, _, err) = cli.run(&["blueprint", "list"]);
    assert!(!ok && err.contains("agentid admin login"), "{err}");
    let (ok, _, err) = cli.run(&["login", "--username", "alice@contoso.test"]);
    assert!(
        ok && err.contains("signed in as alice@contoso.test"),
        "{err}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cli.home.path().join("admin-token.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the token cache is private");
    }
    let bp = cli.json(&[
        "blueprint",
        "create",
        "CLI Blueprint",
        "--secret",
        "--service-account",
        "agents/cli-agent",
        "--issuer",
        "https://kubernetes.default.svc.cluster.local",
        "--json",
    ]);
    let (bp_id, secret) = (
        bp["appId"].as_str().unwrap().to_string(),
        bp["secret"].as_str().unwrap().to_string(),
    );
    let list = cli.json(&["blueprint", "list", "--json"]);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|b| b["appId"] == bp_id.as_str())
    );
    let fics = cli.json(&["fic", "list", &bp_id, "--json"]);
    assert_eq!(fics[0]["subject"], "system:serviceaccount:agents:cli-agent");
    let agent = cli.json(&[
        "agent",
        "create",
        "CLI Agent",
        "--blueprint",
        &bp_id,
        "--blueprint-secret",
        &secret,
        "--consent",
        "https://graph.microsoft.com/User.Read openid profile",
        "--json",
    ]);
    let agent_id = agent["id"].as_str().unwrap().to_string();
    // Consent merges into the existing grant.
    let g = cli.json(&[
        "consent",
        "grant",
        &agent_id,
        "--resource",
        "https://graph.microsoft.com",
        "--scopes",
        "offline_access",
        "--json",
    ]);
    assert_eq!(
        (g["merged"].as_bool(), g["scope"].as_str()),
        (Some(true), Some("User.Read openid profile offline_access"))
    );

    // What the CLI created works at once: T1 → T2, and OBO for Alice on Graph.
    let (st, t1) = sts
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &bp_id),
            ("client_secret", &secret),
            ("scope", "api://AzureADTokenExchange/.default"),
            ("fmi_path", &agent_id),
        ])
        .await;
    assert_eq!(st, 200, "{t1}");
    let t1 = t1["access_token"].as_str().unwrap().to_string();
    // Users sign in for the blueprint's API with the Graph CLI: consent for it (as device-code sign-in would).
    let g = cli.json(&[
        "consent",
        "grant",
        "14d82eec-204b-4c2f-b7e8-296a70dab67e",
        "--resource",
        &format!("api://{bp_id}"),
        "--scopes",
        "access_as_user",
        "--json",
    ]);
    assert_eq!(g["merged"], false);
    let (st, tc) = sts
        .token(&[
            ("grant_type", "password"),
            ("client_id", "14d82eec-204b-4c2f-b7e8-296a70dab67e"),
            ("username", "alice@contoso.test"),
            ("password", "correct-horse-battery"),
            ("scope", &format!("api://{bp_id}/access_as_user")),
        ])
        .await;
    assert_eq!(st, 200, "{tc}");
    let (st, obo) = sts
        .token(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("client_id", &agent_id),
            ("requested_token_use", "on_behalf_of"),
            ("assertion", tc["access_token"].as_str().unwrap()),
            ("scope", "https://graph.microsoft.com/.default"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &t1),
        ])
        .await;
    assert_eq!(st, 200, "{obo}");
    let c = claims(obo["access_token"].as_str().unwrap());
    assert_eq!(
        (c["appid"].as_str(), c["xms_par_app_azp"].as_str()),
        (Some(agent_id.as_str()), Some(bp_id.as_str()))
    );

    // The agent's tokens through the CLI itself, and an MCP server it may call for users.
    let (ok, out, err) = cli.run(&[
        "token",
        "agent",
        "--agent",
        &agent_id,
        "--blueprint",
        &bp_id,
        "--blueprint-secret",
        &secret,
        "--decode",
    ]);
    assert!(ok && out.contains("acts as itself"), "{out}{err}");
    let mcp = cli.json(&[
        "app",
        "create-mcp-server",
        "CLI Tools",
        "--agent",
        &agent_id,
        "--json",
    ]);
    let mcp_scope = mcp["scope"].as_str().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_agentid"))
        .args([
            "admin",
            "token",
            "obo",
            "--agent",
            &agent_id,
            "--blueprint",
            &bp_id,
            "--blueprint-secret",
            &secret,
            "--scope",
            &mcp_scope,
            "--username",
            "alice@contoso.test",
        ])
        .args([
            "--authority",
            &sts.authority(),
            "--ca-file",
            sts.ca_file().to_str().unwrap(),
        ])
        .env("AGENTID_HOME", cli.home.path())
        .env("AGENTID_USER_PASSWORD", "correct-horse-battery")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = claims(String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(
        (c["aud"].as_str(), c["scp"].as_str(), c["upn"].as_str()),
        (
            Some(format!("api://{}", mcp["appId"].as_str().unwrap()).as_str()),
            Some("access_as_user"),
            Some("alice@contoso.test")
        )
    );

    // Errors come back readable, with the Graph code.
    let (ok, _, err) = cli.run(&["blueprint", "show", "00000000-0000-4000-8000-000000000000"]);
    assert!(!ok && err.contains("no application with appId"), "{err}");
    let (ok, _, err) = cli.run(&[
        "agent",
        "create",
        "x",
        "--blueprint",
        &bp_id,
        "--blueprint-secret",
        "wrong",
    ]);
    assert!(
        !ok && err.contains("invalid_client") && err.contains("AADSTS7000215"),
        "{err}"
    );
    cli.json(&["blueprint", "list", "--json"]);
    let (ok, _, _) = cli.run(&["blueprint", "delete", &bp_id]);
    assert!(ok);
    let (ok, _, _) = cli.run(&["logout"]);
    assert!(ok && !cli.home.path().join("admin-token.json").exists());
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_login_with_a_device_code() {
    use tokio::io::AsyncBufReadExt;
    let sts = TestSts::start(Db::Sqlite, DEMO).await;
    let home = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_agentid"))
        .args([
            "admin",
            "login",
            "--authority",
            &sts.authority(),
            "--ca-file",
            sts.ca_file().to_str().unwrap(),
        ])
        .env("AGENTID_HOME", home.path())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let message = lines
        .next_line()
        .await
        .unwrap()
        .expect("the sign-in instructions");
    let code = message
        .rsplit("enter the code ")
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let web = agentid_testkit::browser::Browser::new(sts.base(), sts.running.ca_pem.as_deref());
    let page = web
        .complete_device_login(&code, "alice@contoso.test", "correct-horse-battery", true)
        .await;
    assert!(page.url.ends_with("/devicelogin/done"), "{}", page.html);
    let done = lines.next_line().await.unwrap().unwrap_or_default();
    assert!(done.contains("signed in as alice@contoso.test"), "{done}");
    assert!(child.wait().await.unwrap().success());
    assert!(home.path().join("admin-token.json").exists());
    sts.stop().await;
}
