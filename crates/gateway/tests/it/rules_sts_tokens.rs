//! R1–R3 with real tokens: the testkit STS (real HTTPS, demo tenant) issues an agent's
//! on-behalf-of token, its autonomous T2 and its agent user's token; the gateway validates them
//! against the STS's JWKS, derives `agent.*`/`user.*` and applies the seed and hardened rules.

use agentid_gateway::identity::AgentMode;
use agentid_gateway::jwt::{
    AuthOutcome, JwksRegistry, JwksSource, JwtAuth, JwtAuthSpec, JwtSettings, Mode, ProviderSpec,
    Verified,
};
use agentid_gateway::rules::{
    Activation, EvalContext, Level, McpInfo, McpItem, RequestInfo, RuleKind, RuleSet, RuleSpec,
    SourceInfo, evaluate,
};
use agentid_testkit::{Db, TestSts};
use std::sync::Arc;

use agentid_testkit::demo::DEMO_TENANT as DEMO;
const BP: &str = "85075aa5-1d73-42de-812a-95348218e4b2";
const BP_SECRET: &str = "demo-blueprint-secret-change-me";
const AGENT: &str = "f3897825-fd03-45f5-90eb-fdbf26135650";
const MCP: &str = "ec791040-80f8-4129-bf34-96a0e0672c96";
const GRAPH_CLI: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
const ALICE: &str = "0501a526-79e4-46ff-bd07-6605a752287b";
const CC: &str = "client_credentials";
const AT: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const GRAPH: &str = "https://graph.microsoft.com";

async fn token(sts: &TestSts, form: &[(&str, &str)]) -> String {
    let (st, body) = sts.token(form).await;
    assert_eq!(st, 200, "{body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

struct Tokens {
    obo: String,
    autonomous: String,
    agent_user: String,
    blueprint_app: String,
}

async fn tokens(sts: &TestSts) -> Tokens {
    let mcp_default = format!("api://{MCP}/.default");
    let t1 = token(
        sts,
        &[
            ("grant_type", CC),
            ("client_id", BP),
            ("client_secret", BP_SECRET),
            ("scope", "api://AzureADTokenExchange/.default"),
            ("fmi_path", AGENT),
        ],
    )
    .await;
    let autonomous = token(
        sts,
        &[
            ("grant_type", CC),
            ("client_id", AGENT),
            ("scope", &mcp_default),
            ("client_assertion_type", AT),
            ("client_assertion", &t1),
        ],
    )
    .await;
    let user = token(
        sts,
        &[
            ("grant_type", "password"),
            ("client_id", GRAPH_CLI),
            ("username", "alice@contoso.test"),
            ("password", "correct-horse-battery"),
            (
                "scope",
                &format!("api://{BP}/access_as_user openid profile"),
            ),
        ],
    )
    .await;
    let obo = token(
        sts,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("client_id", AGENT),
            ("requested_token_use", "on_behalf_of"),
            ("assertion", &user),
            ("scope", &format!("api://{MCP}/access_as_user")),
            ("client_assertion_type", AT),
            ("client_assertion", &t1),
        ],
    )
    .await;
    let t2_exchange = token(
        sts,
        &[
            ("grant_type", CC),
            ("client_id", AGENT),
            ("scope", "api://AzureADTokenExchange/.default"),
            ("client_assertion_type", AT),
            ("client_assertion", &t1),
        ],
    )
    .await;
    let agent_user = token(
        sts,
        &[
            ("grant_type", "user_fic"),
            ("client_id", AGENT),
            ("scope", &format!("{GRAPH}/.default")),
            ("client_assertion_type", AT),
            ("client_assertion", &t1),
            ("user_federated_identity_credential", &t2_exchange),
            ("user_id", &sts.id("agentUsers", "blog-agent")),
        ],
    )
    .await;
    let blueprint_app = token(
        sts,
        &[
            ("grant_type", CC),
            ("client_id", BP),
            ("client_secret", BP_SECRET),
            ("scope", &mcp_default),
        ],
    )
    .await;
    Tokens {
        obo,
        autonomous,
        agent_user,
        blueprint_app,
    }
}

fn bearer(token: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    h
}

async fn verified(auth: &JwtAuth, token: &str) -> Arc<Verified> {
    match auth.authenticate(&bearer(token)).await {
        AuthOutcome::Authenticated(v) => v,
        other => panic!("token refused: {other:?}"),
    }
}

fn rules(kind: RuleKind, exprs: &[&str]) -> RuleSet {
    RuleSet::compile(
        exprs
            .iter()
            .map(|e| RuleSpec {
                kind,
                expr: e.to_string(),
            })
            .collect(),
    )
    .expect("rules compile")
}

struct Request {
    info: RequestInfo,
    source: SourceInfo,
}

fn request(token: &str) -> Request {
    Request {
        info: RequestInfo::from_http(
            &http::Method::POST,
            &"/mcp".parse().unwrap(),
            http::Version::HTTP_11,
            &bearer(token),
            "http",
            chrono::Utc::now(),
        ),
        source: SourceInfo {
            address: "127.0.0.1".into(),
            port: 50000,
        },
    }
}

fn ctx<'a>(r: &'a Request, v: &'a Verified) -> EvalContext<'a> {
    EvalContext {
        request: &r.info,
        source: &r.source,
        jwt: Some(&v.claims),
        identity: &v.identity,
        mcp: None,
        response_code: None,
        llm: None,
        backend: None,
    }
}

#[tokio::test]
async fn real_sts_tokens_derive_identities_and_meet_the_seed_rules() {
    let sts = TestSts::start(Db::Sqlite, DEMO).await;
    let t = tokens(&sts).await;
    let registry = JwksRegistry::new(JwtSettings::default(), sts.http.clone());
    let jwks = JwksSource::Url(format!("{}/discovery/v2.0/keys", sts.authority()));
    let auth = JwtAuth::compile(
        JwtAuthSpec {
            mode: Mode::Strict,
            providers: vec![
                ProviderSpec {
                    issuer: format!("{}/", sts.authority()),
                    audiences: vec![format!("api://{MCP}"), GRAPH.to_string()],
                    jwks: jwks.clone(),
                    required_claims: vec![],
                },
                ProviderSpec {
                    issuer: format!("{}/v2.0", sts.authority()),
                    audiences: vec![MCP.to_string()],
                    jwks,
                    required_claims: vec![],
                },
            ],
            header: "authorization".into(),
            prefix: None,
        },
        &registry,
    )
    .expect("compiles");

    // §7.3 on real tokens.
    let obo = verified(&auth, &t.obo).await;
    assert_eq!(obo.identity.mode, AgentMode::OnBehalfOfUser);
    assert_eq!(obo.identity.id.as_deref(), Some(AGENT));
    assert_eq!(obo.identity.blueprint.as_deref(), Some(BP));
    assert_eq!(obo.identity.user_oid.as_deref(), Some(ALICE));
    assert_eq!(obo.identity.user_upn.as_deref(), Some("alice@contoso.test"));
    assert_eq!(
        obo.identity.user_tenant.as_deref(),
        Some(sts.tenant_id.as_str())
    );
    let auto = verified(&auth, &t.autonomous).await;
    assert_eq!(auto.identity.mode, AgentMode::Autonomous);
    assert_eq!(auto.identity.id.as_deref(), Some(AGENT));
    assert_eq!(auto.identity.token_type.as_deref(), Some("app"));
    assert_eq!(auto.identity.user_oid, None);
    let au = verified(&auth, &t.agent_user).await;
    assert_eq!(au.identity.mode, AgentMode::AgentUser);
    assert!(au.identity.subject_facets.contains(&13));
    assert_eq!(
        au.identity.user_oid.as_deref(),
        Some(sts.id("agentUsers", "blog-agent").as_str())
    );
    let bp = verified(&auth, &t.blueprint_app).await;
    assert_eq!(bp.identity.mode, AgentMode::None);
    assert!(!bp.identity.is_agent);

    // R1/R2: the seed rule (with this tenant's agent id) and its hardened form.
    let seed = format!("jwt.appid == '{AGENT}' && '11' in jwt.xms_act_fct.split(' ')");
    let hardened = format!("agent.id == '{AGENT}' && agent.onBehalfOfUser");
    let seed = rules(RuleKind::Allow, &[&seed]);
    let hardened = rules(RuleKind::Allow, &[&hardened]);
    let decide = |v: &Verified, token: &str, set: &RuleSet| {
        let r = request(token);
        evaluate(&[(Level::Route, set)], &ctx(&r, v)).allow
    };
    assert!(decide(&obo, &t.obo, &seed));
    assert!(
        decide(&auto, &t.autonomous, &seed),
        "seed admits autonomous"
    );
    assert!(!decide(&bp, &t.blueprint_app, &seed), "other appid");
    assert!(decide(&obo, &t.obo, &hardened));
    assert!(!decide(&auto, &t.autonomous, &hardened));
    assert!(!decide(&au, &t.agent_user, &hardened));

    // R1 per item: a tools/list filtered by the seed rule, evaluated once per item.
    let mcp_rules = rules(
        RuleKind::Allow,
        &[&format!(
            "jwt.appid == '{AGENT}' && '11' in jwt.xms_act_fct.split(' ') && mcp.tool.name != 'admin'"
        )],
    );
    let listed = |v: &Verified, token: &str| {
        let r = request(token);
        let c = ctx(&r, v);
        let act = Activation::new(&c);
        ["echo", "admin", "search"]
            .into_iter()
            .filter(|name| {
                let item = McpInfo {
                    method: "tools/list".into(),
                    tool: Some(McpItem {
                        name: name.to_string(),
                        target: "blog".into(),
                        arguments: None,
                    }),
                    ..Default::default()
                };
                act.decide(&[(Level::Route, &mcp_rules)], Some(&item)).allow
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(listed(&obo, &t.obo), vec!["echo", "search"]);
    assert!(listed(&bp, &t.blueprint_app).is_empty());
    sts.stop().await;
}
