//! The token-request bodies of docs/sidecar.md §9.2, URL-encoded in exactly the order shown there.

use agentid_claims::wellknown::JWT_BEARER_ASSERTION_TYPE as JB;

pub const EXCHANGE_SCOPE: &str = "api://AzureADTokenExchange/.default";
pub const GRANT_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The blueprint credential as sent on the wire.
#[derive(Clone)]
pub enum CredentialParams {
    Secret(String),
    Assertion(String),
}

impl std::fmt::Debug for CredentialParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialParams::Secret(_) => f.write_str("Secret(***)"),
            CredentialParams::Assertion(_) => f.write_str("Assertion(***)"),
        }
    }
}

/// The agent-user identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UserRef {
    Username(String),
    ObjectId(String),
}

struct Form(form_urlencoded::Serializer<'static, String>);

impl Form {
    fn new() -> Self {
        Form(form_urlencoded::Serializer::new(String::new()))
    }
    fn p(mut self, k: &str, v: &str) -> Self {
        self.0.append_pair(k, v);
        self
    }
    fn opt(self, k: &str, v: Option<&str>) -> Self {
        match v {
            Some(v) if !v.is_empty() => self.p(k, v),
            _ => self,
        }
    }
    fn cred(self, c: &CredentialParams) -> Self {
        match c {
            CredentialParams::Secret(s) => self.p("client_secret", s),
            CredentialParams::Assertion(a) => {
                self.p("client_assertion_type", JB).p("client_assertion", a)
            }
        }
    }
    fn done(mut self) -> String {
        self.0.finish()
    }
}

/// Blueprint app token (row 5).
pub fn app(
    client_id: &str,
    scopes: &str,
    cred: &CredentialParams,
    fmi_path: Option<&str>,
    claims: Option<&str>,
) -> String {
    Form::new()
        .p("client_id", client_id)
        .p("scope", scopes)
        .p("grant_type", "client_credentials")
        .cred(cred)
        .opt("fmi_path", fmi_path)
        .opt("claims", claims)
        .done()
}

/// T1: the blueprint's exchange token for one agent.
pub fn t1(client_id: &str, agent: &str, cred: &CredentialParams) -> String {
    Form::new()
        .p("client_id", client_id)
        .p("scope", EXCHANGE_SCOPE)
        .p("grant_type", "client_credentials")
        .p("fmi_path", agent)
        .cred(cred)
        .done()
}

/// T2 for the autonomous agent (row 2).
pub fn agent_app(agent: &str, scopes: &str, t1: &str, claims: Option<&str>) -> String {
    Form::new()
        .p("client_id", agent)
        .p("scope", scopes)
        .p("grant_type", "client_credentials")
        .p("client_assertion_type", JB)
        .p("client_assertion", t1)
        .opt("claims", claims)
        .done()
}

/// Agent on-behalf-of the inbound user (row 3).
pub fn agent_obo(agent: &str, scopes: &str, tc: &str, t1: &str, claims: Option<&str>) -> String {
    Form::new()
        .p("client_id", agent)
        .p("scope", scopes)
        .p("grant_type", GRANT_JWT_BEARER)
        .p("requested_token_use", "on_behalf_of")
        .p("assertion", tc)
        .p("client_assertion_type", JB)
        .p("client_assertion", t1)
        .opt("claims", claims)
        .done()
}

/// T2′: the agent's exchange token, credential of the agent-user leg (row 1).
pub fn t2x(agent: &str, t1: &str) -> String {
    Form::new()
        .p("client_id", agent)
        .p("scope", EXCHANGE_SCOPE)
        .p("grant_type", "client_credentials")
        .p("client_assertion_type", JB)
        .p("client_assertion", t1)
        .done()
}

/// The agent's own user account (row 1).
pub fn agent_user(
    agent: &str,
    scopes: &str,
    t1: &str,
    t2x: &str,
    user: &UserRef,
    claims: Option<&str>,
) -> String {
    let f = Form::new()
        .p("client_id", agent)
        .p("scope", scopes)
        .p("grant_type", "user_fic")
        .p("client_assertion_type", JB)
        .p("client_assertion", t1)
        .p("user_federated_identity_credential", t2x);
    let f = match user {
        UserRef::Username(u) => f.p("username", u),
        UserRef::ObjectId(o) => f.p("user_id", o),
    };
    f.opt("claims", claims).done()
}

/// Plain on-behalf-of as the blueprint (row 6).
pub fn obo(
    client_id: &str,
    scopes: &str,
    tc: &str,
    cred: &CredentialParams,
    claims: Option<&str>,
) -> String {
    Form::new()
        .p("client_id", client_id)
        .p("scope", scopes)
        .p("grant_type", GRANT_JWT_BEARER)
        .p("requested_token_use", "on_behalf_of")
        .p("assertion", tc)
        .cred(cred)
        .opt("claims", claims)
        .done()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_encoding() {
        let s = CredentialParams::Secret("s&1".into());
        assert_eq!(
            app("bp", "a b", &s, Some("agent"), None),
            "client_id=bp&scope=a+b&grant_type=client_credentials&client_secret=s%261&fmi_path=agent"
        );
        assert_eq!(
            t1("bp", "ag", &CredentialParams::Assertion("x.y.z".into())),
            "client_id=bp&scope=api%3A%2F%2FAzureADTokenExchange%2F.default&grant_type=client_credentials&fmi_path=ag\
             &client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=x.y.z"
        );
        assert!(
            agent_user(
                "ag",
                "s",
                "t1",
                "t2",
                &UserRef::ObjectId("o".into()),
                Some("{}")
            )
            .ends_with("&user_federated_identity_credential=t2&user_id=o&claims=%7B%7D")
        );
        assert!(!app("bp", "s", &s, Some(""), Some("")).contains("fmi_path"));
    }
}
