//! The agent token chain from a test STS: T1 for a blueprint, a user's token, and the agent's T2
//! as itself or on behalf of the user. One home for the requests every crate's tests make.

use crate::TestSts;
use crate::demo;

/// How the blueprint proves itself when it asks for T1.
#[derive(Clone, Debug)]
pub enum BlueprintCredential {
    Secret(String),
    /// A client assertion (a workload's service-account token, a certificate assertion).
    Assertion(String),
}

/// One blueprint, one of its agents, and a user who signs in through a public client.
#[derive(Clone, Debug)]
pub struct Chain {
    pub blueprint: String,
    pub credential: BlueprintCredential,
    pub agent: String,
    pub user_client: String,
    pub username: String,
    pub password: String,
}

impl Chain {
    /// The Contoso demo tenant: the blog agent, its blueprint's secret, and alice.
    pub fn demo() -> Chain {
        Chain {
            blueprint: demo::BLUEPRINT.into(),
            credential: BlueprintCredential::Secret(demo::BLUEPRINT_SECRET.into()),
            agent: demo::AGENT.into(),
            user_client: demo::GRAPH_CLI.into(),
            username: demo::ALICE_UPN.into(),
            password: demo::ALICE_PASSWORD.into(),
        }
    }

    pub fn agent(mut self, agent: &str) -> Chain {
        self.agent = agent.into();
        self
    }

    /// T1: the blueprint's exchange token for the agent (`fmi_path`).
    pub async fn t1(&self, sts: &TestSts) -> String {
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", self.blueprint.as_str()),
            ("scope", "api://AzureADTokenExchange/.default"),
            ("fmi_path", self.agent.as_str()),
        ];
        match &self.credential {
            BlueprintCredential::Secret(s) => form.push(("client_secret", s)),
            BlueprintCredential::Assertion(a) => {
                form.push(("client_assertion_type", demo::CLIENT_ASSERTION_TYPE));
                form.push(("client_assertion", a));
            }
        }
        sts.token_ok(&form).await
    }

    /// The user's access token for `scope`, by the password grant (as scripts and CI do).
    pub async fn user_token(&self, sts: &TestSts, scope: &str) -> String {
        sts.token_ok(&[
            ("grant_type", "password"),
            ("client_id", &self.user_client),
            ("username", &self.username),
            ("password", &self.password),
            ("scope", scope),
        ])
        .await
    }

    /// Tc: the user's token for the blueprint's `access_as_user`.
    pub async fn tc(&self, sts: &TestSts) -> String {
        let scope = format!("api://{}/access_as_user", self.blueprint);
        self.user_token(sts, &scope).await
    }

    /// T2 on behalf of the user, for `scope`.
    pub async fn agent_obo(&self, sts: &TestSts, scope: &str) -> String {
        let t1 = self.t1(sts).await;
        let tc = self.tc(sts).await;
        sts.token_ok(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("client_id", &self.agent),
            ("requested_token_use", "on_behalf_of"),
            ("assertion", &tc),
            ("scope", scope),
            ("client_assertion_type", demo::CLIENT_ASSERTION_TYPE),
            ("client_assertion", &t1),
        ])
        .await
    }

    /// T2 as the agent itself (autonomous), for `scope`.
    pub async fn agent_autonomous(&self, sts: &TestSts, scope: &str) -> String {
        let t1 = self.t1(sts).await;
        sts.token_ok(&[
            ("grant_type", "client_credentials"),
            ("client_id", &self.agent),
            ("scope", scope),
            ("client_assertion_type", demo::CLIENT_ASSERTION_TYPE),
            ("client_assertion", &t1),
        ])
        .await
    }
}
