//! The `agentid` binary as a user runs it.

use std::process::Command;

use agentid_testkit::demo::DEMO_TENANT as DEMO;

fn agentid(args: &[&str], data_dir: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_agentid"))
        .args(args)
        .env("AGENTID_HOME", data_dir)
        .env_remove("AGENTID_MASTER_KEY")
        .output()
        .expect("agentid runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn b64(v: &serde_json::Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[test]
fn token_decode_explains_an_entra_agent_obo_token() {
    // Claims as Entra issues them for an agent acting on behalf of a user (the guide's sample).
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5t": "abc", "kid": "abc"});
    let claims = serde_json::json!({
        "aud": "https://graph.microsoft.com", "iss": "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/",
        "exp": 4102444800i64, "appid": "f3897825-fd03-45f5-90eb-fdbf26135650", "app_displayname": "My Test Agent",
        "idtyp": "user", "upn": "adele@contoso.local", "oid": "u-1", "scp": "openid profile User.Read email",
        "xms_act_fct": "3 9 11", "xms_sub_fct": "2 3", "xms_par_app_azp": "85075aa5-1d73-42de-812a-95348218e4b2", "ver": "1.0"
    });
    let token = format!("{}.{}.c2ln", b64(&header), b64(&claims));
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = agentid(&["token", "decode", &token], dir.path());
    assert!(ok, "{err}");
    assert!(out.contains("Agent f3897825-fd03-45f5-90eb-fdbf26135650 (\"My Test Agent\") acts on behalf of the user adele@contoso.local"), "{out}");
    assert!(
        out.contains("blueprint 85075aa5-1d73-42de-812a-95348218e4b2"),
        "{out}"
    );
    let (ok, out, _) = agentid(
        &["token", "decode", "--json", &format!("Bearer {token}")],
        dir.path(),
    );
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["claims"]["upn"], "adele@contoso.local");
    let (ok, _, err) = agentid(&["token", "decode", "not-a-token"], dir.path());
    assert!(
        !ok && err.contains("expected three dot-separated parts"),
        "{err}"
    );
}

#[test]
fn apply_keys_and_audit_on_a_stopped_instance() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenant.yaml");
    std::fs::write(&file, DEMO).unwrap();
    let data = dir.path().join("state");
    let (ok, out, err) = agentid(
        &["sts", "apply", file.to_str().unwrap(), "--print-ids"],
        &data,
    );
    assert!(ok, "{err}");
    assert!(err.contains("created, 0 updated"), "{err}");
    let ids: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        ids["ids"]["agents"]["blog-agent"],
        "f3897825-fd03-45f5-90eb-fdbf26135650"
    );
    let (ok, _, err) = agentid(&["sts", "apply", file.to_str().unwrap()], &data);
    assert!(ok && err.contains("0 created, 0 updated"), "{err}");
    // An invalid file names the bad key and applies nothing.
    std::fs::write(
        &file,
        DEMO.replace(
            "  allowPasswordGrant: true",
            "  allowPasswordGrant: true\n  colour: blue",
        ),
    )
    .unwrap();
    let (ok, _, err) = agentid(&["sts", "apply", file.to_str().unwrap()], &data);
    assert!(
        !ok && err.contains("tenant.colour") && err.contains("unknown field"),
        "{err}"
    );

    let (ok, out, err) = agentid(
        &["sts", "keys", "rotate", "--tenant", "contoso.test"],
        &data,
    );
    assert!(ok, "{err}");
    assert!(out.contains("published now, signs from"), "{out}");
    let (ok, out, _) = agentid(&["sts", "keys", "list"], &data);
    assert!(ok);
    assert_eq!(out.matches("pending").count(), 1, "{out}");
    let (ok, out, err) = agentid(&["sts", "audit", "--json", "--since", "1h"], &data);
    assert!(
        ok && out.is_empty(),
        "no token was requested yet: {out}{err}"
    );
    let (ok, _, err) = agentid(&["sts", "audit", "--since", "yesterday"], &data);
    assert!(
        !ok && err.contains("neither an RFC 3339 time nor a duration"),
        "{err}"
    );
}

fn sidecar(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_agentid"))
        .arg("sidecar")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("agentid runs")
}

const SIDECAR_BASE: [(&str, &str); 4] = [
    ("AzureAd__TenantId", "5e7d8166-7876-4755-a1a4-b476d4a344f6"),
    ("AzureAd__ClientId", "85075aa5-1d73-42de-812a-95348218e4b2"),
    ("AzureAd__ClientCredentials__0__SourceType", "ClientSecret"),
    (
        "AzureAd__ClientCredentials__0__ClientSecret",
        "s3cr3t-value",
    ),
];

#[test]
fn sidecar_configuration_errors_exit_2_with_one_line_naming_the_key() {
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[("AzureAd__ClientCredentials__0__SourceType", "KeyVault")],
            "unsupported credential SourceType 'KeyVault'",
        ),
        (
            &[
                ("AzureAd__ClientCredentials__1__SourceType", "Path"),
                (
                    "AzureAd__ClientCredentials__1__CertificateDiskPath",
                    "/c.pem",
                ),
                ("AzureAd__ClientCredentials__1__CertificatePassword", "pw"),
            ],
            "AzureAd__ClientCredentials__1__CertificatePassword",
        ),
        (
            &[("DownstreamApis__graph__Scopse__0", "x")],
            "DownstreamApis__graph__Scopse",
        ),
        (
            &[("Sidecar__AllowedAgentIdentities__0", "my-agent")],
            "Sidecar__AllowedAgentIdentities__0",
        ),
    ];
    for (extra, needle) in cases {
        let mut env = SIDECAR_BASE.to_vec();
        env.extend_from_slice(extra);
        let out = sidecar(&["--health-listen", "off"], &env);
        assert_eq!(out.status.code(), Some(2), "{needle}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn sidecar_check_config_hides_secrets_and_probe_reports_health() {
    let out = sidecar(&["--check-config"], &SIDECAR_BASE);
    assert!(out.status.success());
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(!shown.contains("s3cr3t-value"));
    let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["AzureAd"]["ClientCredentials"][0]["ClientSecret"], "***");
    // A real sidecar process, probed the way an exec probe does.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentid"))
        .args(["sidecar", "--listen", &url, "--health-listen", "off"])
        .env_clear()
        .envs(SIDECAR_BASE)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let healthz = format!("{url}/healthz");
    loop {
        let probe = sidecar(&["probe", &healthz], &[]);
        if probe.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sidecar never became healthy"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let probe = sidecar(&["probe", &format!("{url}/nope")], &[]);
    assert!(!probe.status.success());
    child.kill().unwrap();
    child.wait().unwrap();
}
