//! Unmodified clients (docs/sidecar.md §1.1, §16.P6): Microsoft's Python sidecar client from PyPI,
//! run from the pinned venv that `scripts/conformance-venv.sh` builds, and the guide's curl
//! smoke checks with `Host: localhost`.

use crate::support::*;
use serde_json::Value;
use std::path::PathBuf;

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("AGENTID_CONFORMANCE_PYTHON") {
        return p.into();
    }
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/conformance-venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/conformance-venv.sh (the test command does)",
        p.display()
    );
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsoft_python_sidecar_client() {
    let sts = start_sts().await;
    let sc = TestSidecar::direct(
        &sts,
        &[
            ("Sidecar__AllowedAgentIdentities__0", Some(AGENT)),
            ("DownstreamApis__graph__RequestAppToken", Some("true")),
        ],
    )
    .await;
    let port = sc.running.addrs[0].port();
    let oid = sts.id("agentUsers", "blog-agent");
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/sidecar_client.py");
    let out = tokio::process::Command::new(python())
        .arg(script)
        .env("SIDECAR_URL", format!("http://localhost:{port}"))
        .env("SERVICE", "graph")
        .env("AGENT_ID", AGENT)
        .env("AGENT_USER_UPN", AGENT_USER_UPN)
        .env("AGENT_USER_OID", &oid)
        .env("TENANT_ID", &sts.tenant_id)
        .env("SCOPE", GRAPH_DEFAULT)
        .env("FORBIDDEN_AGENT_ID", AGENT_B)
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {stdout}"));
    let claims = |case: &str| {
        assert_eq!(r[case]["scheme"], "Bearer", "{case}: {}", r[case]);
        agentid_testkit::claims(r[case]["token"].as_str().unwrap())
    };
    assert_eq!(r["healthy"], true);
    assert_eq!(claim(&claims("blueprint"), "appid"), BP);
    let c = claims("autonomous");
    assert_eq!((claim(&c, "appid"), claim(&c, "idtyp")), (AGENT, "app"));
    assert_eq!(claim(&claims("autonomous_with_overrides"), "appid"), AGENT);
    for case in ["agent_user_upn", "agent_user_oid", "provider_user"] {
        let c = claims(case);
        assert_eq!(
            (claim(&c, "appid"), claim(&c, "upn")),
            (AGENT, AGENT_USER_UPN),
            "{case}"
        );
    }
    assert_eq!(claim(&claims("provider_instance"), "appid"), AGENT);
    // Refusals surface as the client's own errors, with the problem title.
    assert_eq!(
        r["forbidden_agent"]["error"], "SidecarAuthError",
        "{}",
        r["forbidden_agent"]
    );
    assert!(
        r["forbidden_agent"]["message"]
            .as_str()
            .unwrap()
            .contains("403")
    );
    assert_eq!(
        r["unknown_api"]["error"], "ValueError",
        "{}",
        r["unknown_api"]
    );
    assert_eq!(r["provider_healthy"], true);
    sts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_curl_checks() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("curl is not installed; skipped");
        return;
    }
    let sts = start_sts().await;
    let api = crate::support::downstream::MockApi::start().await;
    // The guide's client-secret ConfigMap: graph as an app-token API.
    let sc = TestSidecar::direct(
        &sts,
        &[
            (
                "DownstreamApis__graph__BaseUrl",
                Some(&format!("{}/ok", api.url)),
            ),
            ("DownstreamApis__graph__RequestAppToken", Some("true")),
            ("Sidecar__AllowedAgentIdentities__0", Some(AGENT)),
        ],
    )
    .await;
    let base = sc.url.clone();
    let curl = |args: Vec<String>| async move {
        let out = tokio::process::Command::new("curl")
            .args([
                "-s",
                "-S",
                "--noproxy",
                "*",
                "-H",
                "Host: localhost",
                "-w",
                "\n%{http_code}",
            ])
            .args(args)
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.parse::<u16>().unwrap(), body.to_string())
    };
    let (code, body) = curl(vec![format!("{base}/healthz")]).await;
    assert_eq!((code, body.as_str()), (200, "Healthy"));
    let oid = sts.id("agentUsers", "blog-agent");
    let cases = [
        (
            format!("{base}/AuthorizationHeaderUnauthenticated/graph"),
            BP,
            None,
        ),
        (
            format!("{base}/AuthorizationHeaderUnauthenticated/graph?AgentIdentity={AGENT}"),
            AGENT,
            None,
        ),
        (
            format!(
                "{base}/AuthorizationHeaderUnauthenticated/graph?AgentIdentity={AGENT}&AgentUsername={AGENT_USER_UPN}"
            ),
            AGENT,
            Some(AGENT_USER_UPN),
        ),
        (
            format!(
                "{base}/AuthorizationHeaderUnauthenticated/graph?AgentIdentity={AGENT}&AgentUserId={oid}"
            ),
            AGENT,
            Some(AGENT_USER_UPN),
        ),
    ];
    for (url, appid, upn) in cases {
        let (code, body) = curl(vec![url.clone()]).await;
        assert_eq!(code, 200, "{url}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let token = v["authorizationHeader"]
            .as_str()
            .unwrap()
            .strip_prefix("Bearer ")
            .unwrap();
        let c = agentid_testkit::claims(token);
        assert_eq!(claim(&c, "appid"), appid, "{url}");
        if let Some(u) = upn {
            assert_eq!(claim(&c, "upn"), u);
        }
    }
    let (code, body) = curl(vec![
        "-X".into(),
        "POST".into(),
        format!("{base}/DownstreamApiUnauthenticated/graph?AgentIdentity={AGENT}"),
    ])
    .await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["statusCode"].as_u64(), v["content"].as_str()),
        (Some(200), Some(r#"{"ok":true}"#))
    );
    sts.stop().await;
}
