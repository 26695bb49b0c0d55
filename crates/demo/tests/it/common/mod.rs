//! The `up` tenant started in a real STS, and the tokens of its chain, shared by the tests.
#![allow(dead_code)]

use agentid_demo::{McpSettings, RunningServer, TokenCheck};
use agentid_testkit::chain::BlueprintCredential;
use agentid_testkit::sts::Options;
use agentid_testkit::{Chain, Db, KubeIssuer, TestSts};

pub use agentid_testkit::demo::up::{
    AGENT, AUTONOMOUS, BLUEPRINT as BP, MCP_APP, MCP_SECRET, PASSWORD, TENANT_FILE as UP, USER,
    USER_OID, WORKLOAD_ISSUER,
};
pub use agentid_testkit::demo::{CLIENT_ASSERTION_TYPE as AT, COGNITIVE, GRAPH_CLI};

pub struct Fixture {
    pub sts: TestSts,
    pub workload: KubeIssuer,
}

pub async fn fixture() -> Fixture {
    // The local workload issuer of `up`: a service-account-shaped issuer whose keys the tenant
    // stores (never fetched), under the issuer name the blueprint's federated credential names.
    let mut workload = KubeIssuer::start().await;
    workload.issuer = WORKLOAD_ISSUER.to_string();
    let dir = TestSts::prepare_dir();
    std::fs::write(dir.path().join("workload-jwks.json"), workload.jwks_json()).unwrap();
    let sts = TestSts::start_in(dir, Db::Sqlite, UP, Options::default()).await;
    assert_eq!(sts.tenant_id, agentid_testkit::demo::up::TENANT_ID);
    Fixture { sts, workload }
}

impl Fixture {
    pub fn ca_pem(&self) -> Option<String> {
        self.sts.running.ca_pem.clone()
    }

    pub async fn token_ok(&self, form: &[(&str, &str)]) -> String {
        self.sts.token_ok(form).await
    }

    /// The `up` chain for `agent`: the blueprint proves itself with a fresh workload token.
    pub fn chain(&self, agent: &str) -> Chain {
        let sa = self.workload.mint(
            "agentid-demo",
            "demo-agent",
            "api://AzureADTokenExchange",
            3600,
        );
        Chain {
            blueprint: BP.into(),
            credential: BlueprintCredential::Assertion(sa),
            agent: agent.into(),
            user_client: GRAPH_CLI.into(),
            username: USER.into(),
            password: PASSWORD.into(),
        }
    }

    /// T1 for `agent`, the blueprint authenticating with a fresh workload token.
    pub async fn t1(&self, agent: &str) -> String {
        self.chain(agent).t1(&self.sts).await
    }

    /// The demo user's token for the blueprint's API (Tc), by password as scripts do.
    pub async fn tc(&self) -> String {
        self.chain(AGENT).tc(&self.sts).await
    }

    /// T2: the demo agent on behalf of the demo user, for `scope`.
    pub async fn agent_obo(&self, scope: &str) -> String {
        self.chain(AGENT).agent_obo(&self.sts, scope).await
    }

    pub async fn check(&self, audience: &str) -> TokenCheck {
        let d = agentid_demo::discover(&self.sts.authority(), self.ca_pem().as_deref())
            .await
            .expect("discovery");
        assert_eq!(
            d.issuer,
            format!("{}/{}/", self.sts.base(), self.sts.tenant_id)
        );
        TokenCheck {
            jwks_url: d.jwks_url,
            issuer: d.issuer,
            audience: audience.to_string(),
            ca_pem: self.ca_pem(),
        }
    }

    pub async fn start_mcp(&self) -> RunningServer {
        agentid_demo::start_mcp(McpSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            check: self.check(&format!("api://{MCP_APP}")).await,
            token_endpoint: self.sts.token_url(),
            graph_base: self.sts.base().to_string(),
            client_id: MCP_APP.into(),
            client_secret: MCP_SECRET.into(),
            ca_pem: self.ca_pem(),
        })
        .await
        .expect("MCP server starts")
    }
}
