//! MCP clients through `mcpAuthentication` (docs/gateway.md §18, docs/sts.md §16): the official
//! MCP Python SDK client with its OAuth provider, unmodified, knowing only the gateway URL,
//! discovers, registers, signs in (forms submitted like a browser without JavaScript), calls a
//! tool, and refreshes silently on a second run; an agent's token reaches the same route; and
//! the refusals.

use crate::support::*;
use agentid_directory::mcp_clients::RegistrationMode;
use serde_json::{Value, json};
use std::path::PathBuf;

const IAT: &str = "initial-access-token-for-tests";
const REDIRECT: &str = "http://127.0.0.1:53682/callback";

fn python() -> PathBuf {
    std::env::var("AGENTID_CONFORMANCE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/conformance-venv/bin/python")
        })
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/mcp_oauth_client.py")
}

fn route(name: &str, audience: &str, iss: &str, mcp: std::net::SocketAddr) -> String {
    format!(
        r#"
    - name: {name}
      matches: [{{path: {{exact: /{name}}}}}]
      backends:
      - mcp:
          targets:
          - name: demo
            mcp: {{host: "http://{mcp}/mcp"}}
      policies:
        mcpAuthentication:
          issuer: {iss}
          audiences: [{audience}]
          provider: {{entra: {{}}}}
          resourceMetadata: {{scopesSupported: [access_as_user]}}
        mcpAuthorization:
          rules:
          - agent.onBehalfOfUser
          - "!agent.isAgent && agent.tokenType == 'user'"
"#
    )
}

fn no_redirects(ca: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `error` of the redirect `/authorize` answers with.
async fn authorize_error(http: &reqwest::Client, url: &str, params: &[(&str, &str)]) -> String {
    let r = http.get(url).query(params).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303, "{}", r.text().await.unwrap());
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with(REDIRECT), "{loc}");
    url::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "error")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no error in {loc}"))
}

async fn run_client(gw_mcp: &str, storage: &std::path::Path, ca: &PathBuf, second: bool) -> Value {
    let out = tokio::process::Command::new(python())
        .arg(script())
        .env("MCP_URL", gw_mcp)
        .env("STORAGE", storage)
        .env("CA_FILE", ca)
        .env("USERNAME", agentid_testkit::demo::ALICE_UPN)
        .env("PASSWORD", agentid_testkit::demo::ALICE_PASSWORD)
        .env("TOOL", "whoami")
        .env("SECOND_RUN", if second { "1" } else { "0" })
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the MCP client failed (second run: {second}):\n{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_python_sdk_oauth_client_signs_in_through_agentid() {
    let sts = sts().await;
    let store = sts.running.state.store.clone();
    let tid: uuid::Uuid = sts.tenant_id.parse().unwrap();
    let agent_token = agent_obo(&sts, &format!("api://{MCP_APP}/access_as_user")).await;
    let iss = claim(&agent_token, "iss").as_str().unwrap().to_string();
    let (mcp, _rec) = mock_mcp("demo", &["whoami"]).await;
    let config = format!(
        "binds:\n- port: 3000\n  listeners:\n  - routes:{}{}",
        route("mcp", &format!("api://{MCP_APP}"), &iss, mcp),
        route("other", &format!("api://{BP}"), &iss, mcp),
    );
    let gw = Gw::start(&config, Some(sts.ca_file())).await;
    let mcp_url = gw.url(3000, "/mcp");
    let other_url = gw.url(3000, "/other");
    store
        .set_protected_resource(&tid, &mcp_url, &MCP_APP.parse().unwrap())
        .await
        .unwrap();
    store
        .set_protected_resource(&tid, &other_url, &BP.parse().unwrap())
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    store
        .set_registration_policy(&tid, RegistrationMode::Token, Some(IAT), now)
        .await
        .unwrap();
    let ca = std::fs::read_to_string(sts.ca_file()).unwrap();
    let http = no_redirects(&ca);

    // 1. The 401 names the metadata; the metadata names the tenant's v2 authority.
    let r = gw
        .http
        .post(&mcp_url)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    let prm_url = format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        gw.url(3000, "")
    );
    assert_eq!(
        challenge,
        format!(r#"Bearer resource_metadata="{prm_url}", scope="access_as_user""#)
    );
    let r = gw
        .http
        .get(&prm_url)
        .header("origin", "https://inspector.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let prm: Value = r.json().await.unwrap();
    let authority = format!("{}/v2.0", sts.authority());
    assert_eq!(prm["resource"], json!(mcp_url));
    assert_eq!(prm["authorization_servers"], json!([authority]));
    assert_eq!(prm["scopes_supported"], json!(["access_as_user"]));
    let asm_url = format!(
        "{}/.well-known/oauth-authorization-server/{}/v2.0",
        sts.base(),
        sts.tenant_id
    );
    let (status, asm) = sts.get_json(&asm_url).await;
    assert_eq!(status, 200);
    let (_, oidc) = sts
        .get_json(&format!(
            "{}/v2.0/.well-known/openid-configuration",
            sts.authority()
        ))
        .await;
    assert_eq!(asm["issuer"], json!(authority));
    assert_eq!(
        asm["authorization_endpoint"],
        oidc["authorization_endpoint"]
    );
    assert_eq!(asm["code_challenge_methods_supported"], json!(["S256"]));
    let register = asm["registration_endpoint"].as_str().unwrap().to_string();

    // 2. Registration: refused without the initial access token, accepted with it.
    let body = json!({"redirect_uris": [REDIRECT], "client_name": "refusal probe"});
    let r = http.post(&register).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .post(&register)
        .bearer_auth("wrong-token-wrong-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .post(&register)
        .bearer_auth(IAT)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let probe: Value = r.json().await.unwrap();
    let probe_id = probe["client_id"].as_str().unwrap().to_string();
    assert_eq!(probe["token_endpoint_auth_method"], "none");

    // 3. Refusals at /authorize: PKCE plain, an unknown resource, another route's resource.
    let authorize = oidc["authorization_endpoint"].as_str().unwrap();
    let challenge_s256 = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let base = |resource: &str, method: &str, scope: &str| {
        vec![
            ("client_id", probe_id.clone()),
            ("redirect_uri", REDIRECT.to_string()),
            ("response_type", "code".to_string()),
            ("scope", scope.to_string()),
            ("code_challenge", challenge_s256.to_string()),
            ("code_challenge_method", method.to_string()),
            ("resource", resource.to_string()),
        ]
    };
    let ask = |p: Vec<(&'static str, String)>| {
        let http = http.clone();
        let url = authorize.to_string();
        async move {
            let refs: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
            authorize_error(&http, &url, &refs).await
        }
    };
    assert_eq!(
        ask(base(&mcp_url, "plain", "access_as_user")).await,
        "invalid_request"
    );
    assert_eq!(
        ask(base(
            "https://unknown.example/mcp",
            "S256",
            "access_as_user"
        ))
        .await,
        "invalid_target"
    );
    assert_eq!(
        ask(base(
            &other_url,
            "S256",
            &format!("api://{MCP_APP}/access_as_user")
        ))
        .await,
        "invalid_target"
    );

    // 4. The SDK client: open registration (what clients that know nothing of the tenant use).
    store
        .set_registration_policy(&tid, RegistrationMode::Open, None, now)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("tokens.json");
    let first = run_client(&mcp_url, &storage, &sts.ca_file(), false).await;
    assert_eq!(first["browser"], json!(true), "{first}");
    let authorize_url = first["authorize_url"].as_str().unwrap();
    assert!(
        authorize_url.starts_with(authorize)
            && authorize_url.contains("code_challenge_method=S256"),
        "{authorize_url}"
    );
    assert!(
        first["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "whoami"),
        "{first}"
    );
    assert!(
        first["called"][0].as_str().unwrap().contains("ran whoami"),
        "{first}"
    );
    let client_id = first["client_id"].as_str().unwrap().to_string();
    let token = first["access_token"].as_str().unwrap();
    assert_eq!(claim(token, "aud"), json!(format!("api://{MCP_APP}")));
    assert_eq!(claim(token, "appid"), json!(client_id));
    assert_eq!(claim(token, "oid"), json!(ALICE));
    let client = store
        .application_by_app_id(&tid, &client_id.parse().unwrap())
        .await
        .unwrap()
        .expect("the registered client is in the directory");
    assert!(client.is_public_client);
    let consent = first["consent_page"].as_str().unwrap_or_default();
    assert!(
        consent.contains("agentid conformance MCP client (unverified, self-registered)"),
        "{consent}"
    );

    // The audit says "user X via client Y" (no agent).
    let call = agentid_testkit::poll::eventually(
        std::time::Duration::from_secs(10),
        "the tools/call audit event",
        || async {
            gw.audit("route=mcp")
                .await
                .into_iter()
                .find(|e| e["mcp"]["method"] == "tools/call")
        },
    )
    .await;
    assert_eq!(call["identity"]["userOid"], json!(ALICE), "{call}");
    assert_eq!(call["identity"]["clientAppId"], json!(client_id), "{call}");
    assert_eq!(call["identity"]["agentId"], Value::Null, "{call}");

    // 5. A token for the wrong resource: this route's token at the other route.
    let r = gw
        .http
        .post(&other_url)
        .bearer_auth(token)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let c = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        c.contains("oauth-protected-resource/other") && c.contains(r#"error="invalid_token""#),
        "{c}"
    );

    // 6. Silent refresh: the expired access token was refreshed without the browser, and a
    // second run (a new process) uses the stored tokens without it.
    assert_ne!(
        first["token_before_refresh"], first["token_sha256"],
        "refreshed: {first}"
    );
    assert!(
        first["called_after_refresh"][0]
            .as_str()
            .unwrap()
            .contains("ran whoami")
    );
    let second = run_client(&mcp_url, &storage, &sts.ca_file(), true).await;
    assert_eq!(second["browser"], json!(false));
    assert_eq!(second["client_id"], json!(client_id));
    assert_eq!(second["token_sha256"], first["token_sha256"]);
    assert!(second["called"][0].as_str().unwrap().contains("ran whoami"));

    // 7. Agents stay first-class: the agent acting for alice reaches the same route.
    let (status, _, _) = gw
        .mcp(
            3000,
            Some(&agent_token),
            None,
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "agent", "version": "1"}}}),
        )
        .await;
    assert_eq!(status, 200);
    sts.stop().await;
}
