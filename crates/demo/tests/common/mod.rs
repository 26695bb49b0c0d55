//! The `up` tenant started in a real STS, and the tokens of its chain, shared by the tests.
#![allow(dead_code)]

use agentid_demo::{McpSettings, RunningServer, TokenCheck};
use agentid_testkit::sts::Options;
use agentid_testkit::{Db, KubeIssuer, TestSts};

pub const UP: &str = include_str!("../../../../examples/up-tenant.yaml");
pub const BP: &str = "7583752b-1579-41a2-a065-93ba9f14dff5";
pub const AGENT: &str = "c228e427-7816-4caa-a04f-7353b3a519f7";
pub const AUTONOMOUS: &str = "290517f2-66f5-45bc-9cf4-2028e972985e";
pub const MCP_APP: &str = "1bc7902d-ee63-4134-84d4-e2b04e0c42a0";
pub const MCP_SECRET: &str = "demo-mcp-secret-change-me";
pub const USER: &str = "demo@agentid.local";
pub const USER_OID: &str = "f43b2553-e5af-4a55-990c-68f4e4865d2b";
pub const PASSWORD: &str = "agentid-demo-password";
pub const GRAPH_CLI: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
pub const WORKLOAD_ISSUER: &str = "https://workload.agentid.local";
pub const AT: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
pub const COGNITIVE: &str = "https://cognitiveservices.azure.com";

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
    assert_eq!(sts.tenant_id, "0a1f25a9-15b6-4302-87d7-ef0c38bdedc5");
    Fixture { sts, workload }
}

impl Fixture {
    pub fn ca_pem(&self) -> Option<String> {
        self.sts.running.ca_pem.clone()
    }

    pub async fn token_ok(&self, form: &[(&str, &str)]) -> String {
        let (st, b) = self.sts.token(form).await;
        assert_eq!(st, 200, "{b}");
        b["access_token"].as_str().unwrap().to_string()
    }

    /// T1 for `agent`, the blueprint authenticating with a fresh workload token.
    pub async fn t1(&self, agent: &str) -> String {
        let sa = self.workload.mint(
            "agentid-demo",
            "demo-agent",
            "api://AzureADTokenExchange",
            3600,
        );
        self.token_ok(&[
            ("grant_type", "client_credentials"),
            ("client_id", BP),
            ("client_assertion_type", AT),
            ("client_assertion", &sa),
            ("scope", "api://AzureADTokenExchange/.default"),
            ("fmi_path", agent),
        ])
        .await
    }

    /// The demo user's token for the blueprint's API (Tc), by password as scripts do.
    pub async fn tc(&self) -> String {
        self.token_ok(&[
            ("grant_type", "password"),
            ("client_id", GRAPH_CLI),
            ("username", USER),
            ("password", PASSWORD),
            ("scope", &format!("api://{BP}/access_as_user")),
        ])
        .await
    }

    /// T2: the demo agent on behalf of the demo user, for `scope`.
    pub async fn agent_obo(&self, scope: &str) -> String {
        let t1 = self.t1(AGENT).await;
        let tc = self.tc().await;
        self.token_ok(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("client_id", AGENT),
            ("client_assertion_type", AT),
            ("client_assertion", &t1),
            ("assertion", &tc),
            ("requested_token_use", "on_behalf_of"),
            ("scope", scope),
        ])
        .await
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
