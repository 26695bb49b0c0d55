//! The same MCP sign-in as `mcp_auth.rs` (docs/gateway.md §18, docs/sts.md §16), from Rust:
//! rmcp's OAuth client, knowing only the gateway's URL, meets the route's 401, discovers the
//! protected resource metadata and the STS's authorization server metadata from it, registers
//! dynamically, builds the authorization URL; a browser without JavaScript signs alice in and
//! consents; rmcp exchanges the code and its streamable HTTP client calls a tool. The audit trail
//! then reads "user alice via client …" (docs/audit.md §3.3) in the chain (what `agentid sts
//! audit --chain` prints) and in the console; and people and agents are told apart by route
//! rules (docs/gateway.md §18.1).

use crate::support::mcp_oauth::{REDIRECT, browser_sign_in, mcp_setup};
use crate::support::*;
use agentid_testkit::browser::Browser;
use agentid_testkit::demo::{ALICE_PASSWORD, ALICE_UPN};
use agentid_testkit::poll::eventually;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::service::ClientInitializeError;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::auth::{AuthClient, AuthorizationManager, AuthorizationRequest, OAuthState};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransportConfig, StreamableHttpError,
};
use serde_json::{Value, json};
use std::time::Duration;

const CLIENT_NAME: &str = "rmcp OAuth test client";

/// rmcp's HTTP client (reqwest 0.13) trusting the testkit CA, on agentid's TLS provider.
fn rmcp_http(ca_pem: &str) -> reqwest013::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest013::Client::builder()
        .add_root_certificate(reqwest013::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

/// The `WWW-Authenticate` challenge of a connection attempt refused with 401.
fn challenge_of(e: &ClientInitializeError) -> Option<String> {
    let ClientInitializeError::TransportError { error, .. } = e else {
        return None;
    };
    error
        .error
        .downcast_ref::<StreamableHttpError<reqwest013::Error>>()
        .and_then(|e| e.auth_challenge())
        .map(str::to_string)
}

/// The tools `token` is shown at `path` (`mcpAuthorization` filters the list per caller), or
/// the HTTP status and challenge when the route refuses the request.
async fn tools_at(gw: &Gw, path: &str, token: &str) -> Result<Vec<String>, String> {
    let post = |msg: Value, session: Option<String>| {
        let mut req = gw
            .http
            .post(format!(
                "http://127.0.0.1:{}{path}",
                gw.running.addr(3000).port()
            ))
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .json(&msg);
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        req.send()
    };
    let r = post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "probe", "version": "1"}}}),
        None,
    )
    .await
    .unwrap();
    if r.status() != 200 {
        let challenge = r
            .headers()
            .get("www-authenticate")
            .map(|h| h.to_str().unwrap().to_string())
            .unwrap_or_default();
        return Err(format!("{} {challenge}", r.status().as_u16()));
    }
    let session = r.headers()["mcp-session-id"].to_str().unwrap().to_string();
    let body: Value = post(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        Some(session),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    Ok(body["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_oauth_client_signs_in_through_agentid() {
    let setup = mcp_setup().await;
    let (sts, gw, mcp_url) = (&setup.sts, &setup.gw, setup.mcp_url.clone());
    let ca = std::fs::read_to_string(sts.ca_file()).unwrap();
    let http = rmcp_http(&ca);

    // 1. Unauthenticated, rmcp's streamable HTTP client meets the route's 401 challenge.
    let anonymous = AuthClient::new(
        http.clone(),
        AuthorizationManager::new(mcp_url.as_str()).await.unwrap(),
    );
    let Err(refused) = ClientConfig::default()
        .serve(StreamableHttpClientTransport::with_client(
            anonymous,
            StreamableHttpClientTransportConfig::with_uri(mcp_url.clone()),
        ))
        .await
    else {
        panic!("the route refuses a client without a token");
    };
    let challenge = challenge_of(&refused).unwrap_or_else(|| panic!("no challenge: {refused}"));
    assert!(
        challenge.contains("oauth-protected-resource/mcp"),
        "{challenge}"
    );

    // 2. From the challenge alone: protected resource metadata → the STS's RFC 8414 metadata →
    // dynamic registration → the authorization URL (PKCE S256, RFC 8707 resource).
    let mut oauth = OAuthState::new(mcp_url.as_str(), Some(http.clone()))
        .await
        .unwrap();
    oauth
        .start_authorization(
            AuthorizationRequest::new(REDIRECT)
                .with_client_name(CLIENT_NAME)
                .with_challenge(challenge),
        )
        .await
        .unwrap_or_else(|e| panic!("discovery and registration: {e}"));
    let authorize_url = oauth.get_authorization_url().await.unwrap();
    let (_, oidc) = sts
        .get_json(&format!(
            "{}/v2.0/.well-known/openid-configuration",
            sts.authority()
        ))
        .await;
    let authorize = oidc["authorization_endpoint"].as_str().unwrap();
    let query: std::collections::HashMap<String, String> = url::Url::parse(&authorize_url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert!(authorize_url.starts_with(authorize), "{authorize_url}");
    assert_eq!(query["code_challenge_method"], "S256", "{authorize_url}");
    assert_eq!(query["resource"], mcp_url, "{authorize_url}");
    assert_eq!(query["redirect_uri"], REDIRECT, "{authorize_url}");
    assert!(
        query["scope"].split(' ').any(|s| s == "access_as_user"),
        "{authorize_url}"
    );

    // 3. alice signs in and consents in a browser; rmcp gets the redirect and exchanges the code.
    let (back, consent) = browser_sign_in(sts, &authorize_url, ALICE_UPN, ALICE_PASSWORD).await;
    assert!(
        agentid_testkit::browser::unescape(&consent)
            .contains(&format!("{CLIENT_NAME} (unverified, self-registered)")),
        "{consent}"
    );
    oauth
        .handle_callback_url(&back)
        .await
        .unwrap_or_else(|e| panic!("code exchange: {e}"));
    let (client_id, _) = oauth.get_credentials().await.unwrap();
    let OAuthState::Authorized(manager) = oauth else {
        panic!("not authorized after the callback");
    };
    let authorized = AuthClient::new(http.clone(), manager);
    let token = authorized.get_access_token().await.unwrap();
    assert_eq!(claim(&token, "aud"), json!(format!("api://{MCP_APP}")));
    assert_eq!(claim(&token, "appid"), json!(client_id));
    assert_eq!(claim(&token, "oid"), json!(ALICE));
    let tid: uuid::Uuid = sts.tenant_id.parse().unwrap();
    let registered = sts
        .running
        .state
        .store
        .application_by_app_id(&tid, &client_id.parse().unwrap())
        .await
        .unwrap()
        .expect("the registered client is in the directory");
    assert!(registered.is_public_client);

    // 4. rmcp's streamable HTTP client, authorized, lists and calls a tool through the gateway.
    let client = ClientConfig::default()
        .serve(StreamableHttpClientTransport::with_client(
            authorized,
            StreamableHttpClientTransportConfig::with_uri(mcp_url.clone()),
        ))
        .await
        .unwrap_or_else(|e| panic!("MCP session: {e}"));
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "whoami"), "{tools:?}");
    let result = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap();
    let text: String = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect();
    assert!(text.contains("ran whoami"), "{text}");
    let _ = client.cancel().await;

    // 5. The gateway's event: a person through a client, no agent.
    let call = eventually(Duration::from_secs(10), "the tools/call event", || async {
        gw.audit("route=mcp")
            .await
            .into_iter()
            .find(|e| e["mcp"]["method"] == "tools/call")
    })
    .await;
    assert_eq!(call["identity"]["userOid"], json!(ALICE), "{call}");
    assert_eq!(call["identity"]["clientAppId"], json!(client_id), "{call}");
    assert_eq!(call["identity"]["agentId"], Value::Null, "{call}");

    // 6. The trail says so, in the chain `agentid sts audit --chain` prints and in the console.
    let uti = claim(&token, "uti").as_str().unwrap().to_string();
    let via = format!("user {ALICE_UPN} via client {CLIENT_NAME} (unverified, self-registered)");
    let store = &sts.running.state.store;
    let chain = eventually(Duration::from_secs(20), "the decision shipped", || async {
        let c = agentid_directory::trail::chain(store, &tid, &uti)
            .await
            .unwrap()?;
        c.hops
            .iter()
            .any(|h| {
                h.kind == agentid_directory::trail::HopKind::Decision
                    && h.title.contains("tool whoami")
            })
            .then_some(c)
    })
    .await;
    let text = chain.to_text();
    assert!(
        text.contains(&format!("gateway allowed tool whoami on route mcp ({via})")),
        "{text}"
    );
    let web = Browser::new(sts.base(), sts.running.ca_pem.as_deref());
    let p = web.get("/console/signin").await;
    let home = web
        .post(
            "/devicelogin/signin",
            &[
                ("csrf", &p.csrf()),
                ("username", ALICE_UPN),
                ("password", ALICE_PASSWORD),
            ],
        )
        .await;
    assert!(home.url.ends_with("/console"), "{} {}", home.url, home.html);
    for page in [
        "/console/audit".to_string(),
        format!("/console/chains/{uti}"),
    ] {
        let p = web.get(&page).await;
        assert_eq!(p.status, 200, "{page}");
        assert!(
            agentid_testkit::browser::unescape(&p.html).contains(&via),
            "{page}: {}",
            p.html
        );
    }

    // 7. People and agents on routes of their own (docs/gateway.md §18.1): the person
    // (agent.id null) sees the tool on the people-only route and none on the agents-only one,
    // which as a route rule refuses them outright; the agent acting for alice the reverse.
    let whoami = Ok(vec!["whoami".to_string()]);
    assert_eq!(tools_at(gw, "/people", &token).await, whoami);
    assert_eq!(tools_at(gw, "/agents", &token).await, Ok(vec![]));
    let refused = tools_at(gw, "/agents-http", &token).await.unwrap_err();
    assert!(
        refused.starts_with("403 ") && refused.contains(r#"error="insufficient_scope""#),
        "{refused}"
    );
    let agent = &setup.agent_token;
    assert_eq!(tools_at(gw, "/people", agent).await, Ok(vec![]));
    assert_eq!(tools_at(gw, "/agents", agent).await, whoami);
    assert_eq!(tools_at(gw, "/agents-http", agent).await, whoami);
    assert_eq!(tools_at(gw, "/mcp", agent).await, whoami);
    let agent_call = eventually(Duration::from_secs(10), "the agent's event", || async {
        gw.audit("route=agents")
            .await
            .into_iter()
            .find(|e| e["identity"]["agentId"].is_string())
    })
    .await;
    assert_eq!(
        agent_call["identity"]["agentId"],
        json!(AGENT),
        "{agent_call}"
    );
    assert_eq!(
        agent_call["identity"]["userOid"],
        json!(ALICE),
        "{agent_call}"
    );
    drop(setup.rec);
    setup.sts.stop().await;
}
