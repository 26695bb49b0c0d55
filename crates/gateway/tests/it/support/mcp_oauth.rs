//! An MCP route behind `mcpAuthentication` (docs/gateway.md §18) with the STS set up for MCP
//! clients (docs/sts.md §16): the route's resource registered, registration open; and the
//! sign-in a person does in a browser without JavaScript.

use super::ship::{ship_block, with_gateway_app};
use super::{Gw, MCP_APP, Recorder, agent_obo, claim, mock_mcp, sts_with};
use agentid_directory::mcp_clients::RegistrationMode;
use agentid_testkit::TestSts;
use agentid_testkit::browser::Browser;

/// The loopback redirect URI a native MCP client registers (nothing listens: the browser stops
/// at the redirect and hands its URL back to the client).
pub const REDIRECT: &str = "http://127.0.0.1:53682/callback";

/// Rules admitting agents acting for a person and people's own MCP clients (docs/gateway.md
/// §18.1).
const MCP_RULES: &str = "mcpAuthorization";

pub const PEOPLE_AND_AGENTS: &[&str] = &[
    "agent.onBehalfOfUser",
    "!agent.isAgent && agent.tokenType == 'user'",
];

/// One `mcpAuthentication` route `/{name}` for tokens of `audience`, with `rules` as its
/// `policy` (`mcpAuthorization`: per tool; `authorization`: the whole route, 403).
pub fn mcp_route(
    name: &str,
    audience: &str,
    iss: &str,
    mcp: std::net::SocketAddr,
    policy: &str,
    rules: &[&str],
) -> String {
    let rules: String = rules
        .iter()
        .map(|r| format!("\n          - {}", serde_json::Value::from(*r)))
        .collect();
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
        {policy}:
          rules:{rules}
"#
    )
}

/// The routes of [`mcp_setup`]: `/mcp` admits people's clients and agents, `/agents` only
/// agents acting for a person (and `/agents-http` the same as a route rule), `/people` only
/// people without an agent.
pub const AGENTS_ONLY: &[&str] = &["agent.onBehalfOfUser"];
pub const PEOPLE_ONLY: &[&str] = &["agent.id == null && user.oid != null"];

pub struct McpSetup {
    pub sts: TestSts,
    pub gw: Gw,
    /// The route's URL: the resource, and all an MCP client is told.
    pub mcp_url: String,
    pub tenant: uuid::Uuid,
    pub rec: Recorder,
    /// The demo agent acting for alice, with a token for the route's application.
    pub agent_token: String,
}

/// The demo tenant's STS, an MCP upstream with `whoami`, and the gateway's route `/mcp` for
/// the demo MCP application, shipping its audit events to the STS; the route's resource
/// registered and registration open.
pub async fn mcp_setup() -> McpSetup {
    let sts = sts_with(with_gateway_app).await;
    let store = sts.running.state.store.clone();
    let tenant: uuid::Uuid = sts.tenant_id.parse().unwrap();
    let agent_token = agent_obo(&sts, &format!("api://{MCP_APP}/access_as_user")).await;
    let iss = claim(&agent_token, "iss").as_str().unwrap().to_string();
    let (mcp, rec) = mock_mcp("demo", &["whoami"]).await;
    let dir = tempfile::tempdir().unwrap();
    let aud = format!("api://{MCP_APP}");
    let config = format!(
        "agentid:\n  audit:\n    stdout: false\n{ship}binds:\n- port: 3000\n  listeners:\n  - routes:{}{}{}{}",
        mcp_route("mcp", &aud, &iss, mcp, MCP_RULES, PEOPLE_AND_AGENTS),
        mcp_route("agents", &aud, &iss, mcp, MCP_RULES, AGENTS_ONLY),
        mcp_route("agents-http", &aud, &iss, mcp, "authorization", AGENTS_ONLY),
        mcp_route("people", &aud, &iss, mcp, MCP_RULES, PEOPLE_ONLY),
        ship = ship_block(&sts, &dir.path().join("spool")),
    );
    let path = dir.path().join("gateway.yaml");
    std::fs::write(&path, config).unwrap();
    let running = agentid_gateway::start(agentid_gateway::Options {
        source: agentid_gateway::Source::File(path),
        extra_roots: vec![sts.ca_file()],
        ephemeral_ports: true,
        serving_threads: 2,
    })
    .await
    .expect("gateway starts");
    let gw = Gw {
        running,
        http: reqwest::Client::new(),
        dir,
    };
    // The loopback address, not the listener's 0.0.0.0: rmcp lets a loopback resource name a
    // loopback authorization server, an unspecified address nothing (its metadata host policy).
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", gw.running.addr(3000).port());
    let mcp_url = url("/mcp");
    for path in ["/mcp", "/agents", "/agents-http", "/people"] {
        store
            .set_protected_resource(&tenant, &url(path), &MCP_APP.parse().unwrap())
            .await
            .unwrap();
    }
    store
        .set_registration_policy(
            &tenant,
            RegistrationMode::Open,
            None,
            chrono::Utc::now().timestamp(),
        )
        .await
        .unwrap();
    McpSetup {
        sts,
        gw,
        mcp_url,
        tenant,
        rec,
        agent_token,
    }
}

/// A person at a browser without JavaScript: opens `authorize_url`, signs in as `user`,
/// accepts the consent page when one is shown. Returns the redirect back to the client (its
/// URL, with the code) and the consent page's HTML (empty when none was shown).
pub async fn browser_sign_in(
    sts: &TestSts,
    authorize_url: &str,
    user: &str,
    password: &str,
) -> (String, String) {
    let web = Browser::new(sts.base(), sts.running.ca_pem.as_deref());
    let page = web.get_url(authorize_url).await;
    assert!(
        page.url.ends_with("/devicelogin/signin"),
        "{}: {}",
        page.url,
        page.html
    );
    let back = web
        .post_for_redirect(
            "/devicelogin/signin",
            &[
                ("csrf", &page.csrf()),
                ("username", user),
                ("password", password),
            ],
        )
        .await;
    if back.starts_with(REDIRECT) {
        return (back, String::new());
    }
    let consent = if back.starts_with('/') {
        web.get(&back).await
    } else {
        web.get_url(&back).await
    };
    assert!(
        consent.url.ends_with("/devicelogin/consent"),
        "{back} → {}: {}",
        consent.url,
        consent.html
    );
    let back = web
        .post_for_redirect(
            "/devicelogin/consent",
            &[("csrf", &consent.csrf()), ("action", "accept")],
        )
        .await;
    assert!(back.starts_with(REDIRECT), "{back}");
    (back, consent.html)
}
