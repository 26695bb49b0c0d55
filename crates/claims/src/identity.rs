//! Agent and user identity derived from a validated token's claims: the one derivation every
//! part uses (the gateway's policy variables and audit, the demo services' `whoami`, `agentid
//! token decode`).
//!
//! - [`facets`]: the facet claim parser (also CEL's `facets(value)` in the gateway).
//! - [`Identity::derive`]: which agent, which user, blueprint, mode, facets;
//!   [`Identity::none`] for requests without a validated token.
//! - [`Identity::agent_json`] / [`Identity::user_json`]: the `agent` and `user` objects as
//!   policies and audit events see them (absent values are real nulls, never missing keys).

use crate::facets::{AGENT_ID_USER, AGENT_IDENTITY};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// Parses a facet claim into a sorted, de-duplicated list of ints.
///
/// A string is split on runs of ASCII whitespace and every token of 1–9 ASCII digits is taken;
/// a list takes non-negative integers and strings of that form; anything else yields `[]`.
pub fn facets(v: &Value) -> Vec<i64> {
    let mut out: Vec<i64> = match v {
        Value::String(s) => s.split_ascii_whitespace().filter_map(facet_token).collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|item| match item {
                // A u64 beyond i64 cannot be a CEL int: ignored like any junk.
                Value::Number(n) => n.as_i64().filter(|i| *i >= 0),
                Value::String(s) => facet_token(s),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    out.sort_unstable();
    out.dedup();
    out
}

/// One facet token: `^[0-9]{1,9}$` (nine digits always fit an i64, so no overflow).
fn facet_token(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// How an agent relates to the request (`agent.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AgentMode {
    OnBehalfOfUser,
    Autonomous,
    AgentUser,
    None,
}

impl AgentMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentMode::OnBehalfOfUser => "onBehalfOfUser",
            AgentMode::Autonomous => "autonomous",
            AgentMode::AgentUser => "agentUser",
            AgentMode::None => "none",
        }
    }
}

/// Which agent and which user a token stands for (the gateway's `agent.*` and `user.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The client that obtained the token (`azp`, else `appid`), agent or not.
    pub client: Option<String>,
    pub is_agent: bool,
    /// The actor (`azp`, else `appid`) when it is an agent.
    pub id: Option<String>,
    pub blueprint: Option<String>,
    /// `"user"` or `"app"`; `None` without a validated token.
    pub token_type: Option<String>,
    pub autonomous: bool,
    pub is_agent_user: bool,
    pub on_behalf_of_user: bool,
    pub mode: AgentMode,
    pub actor_facets: Vec<i64>,
    pub subject_facets: Vec<i64>,
    pub user_oid: Option<String>,
    pub user_upn: Option<String>,
    pub user_name: Option<String>,
    pub user_tenant: Option<String>,
}

fn non_empty_str<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

impl Identity {
    /// No validated token: every bool false, every string null, every list empty.
    pub fn none() -> Identity {
        Identity {
            client: None,
            is_agent: false,
            id: None,
            blueprint: None,
            token_type: None,
            autonomous: false,
            is_agent_user: false,
            on_behalf_of_user: false,
            mode: AgentMode::None,
            actor_facets: Vec::new(),
            subject_facets: Vec::new(),
            user_oid: None,
            user_upn: None,
            user_name: None,
            user_tenant: None,
        }
    }

    /// The derivation over the claims of a validated token.
    pub fn derive(claims: &Map<String, Value>) -> Identity {
        let act = claims.get("xms_act_fct").map(facets).unwrap_or_default();
        let sub = claims.get("xms_sub_fct").map(facets).unwrap_or_default();
        // v2 tokens carry `azp`, v1 tokens `appid`.
        let actor = non_empty_str(claims, "azp").or_else(|| non_empty_str(claims, "appid"));
        let token_type = match claims.get("idtyp").and_then(Value::as_str) {
            Some(t @ ("user" | "app")) => t,
            // Without `idtyp` (not requested as an optional claim), a delegated scope
            // means a user token; "/" is what some app tokens carry in `scp`.
            _ => match claims.get("scp").and_then(Value::as_str) {
                Some(s) if !s.is_empty() && s != "/" => "user",
                _ => "app",
            },
        };
        let is_agent = act.contains(&AGENT_IDENTITY);
        let is_user = token_type == "user";
        let autonomous = is_agent && token_type == "app";
        let is_agent_user = is_agent && is_user && sub.contains(&AGENT_ID_USER);
        let on_behalf_of_user = is_agent && is_user && !sub.contains(&AGENT_ID_USER);
        let mode = if on_behalf_of_user {
            AgentMode::OnBehalfOfUser
        } else if autonomous {
            AgentMode::Autonomous
        } else if is_agent_user {
            AgentMode::AgentUser
        } else {
            AgentMode::None
        };
        let user_str = |name: &str| {
            if is_user {
                claims.get(name).and_then(Value::as_str).map(str::to_owned)
            } else {
                None
            }
        };
        let user_upn = if is_user {
            ["upn", "preferred_username", "unique_name", "email"]
                .iter()
                .find_map(|n| non_empty_str(claims, n))
                .map(str::to_owned)
        } else {
            None
        };
        Identity {
            client: actor.map(str::to_owned),
            is_agent,
            id: if is_agent {
                actor.map(str::to_owned)
            } else {
                None
            },
            blueprint: if is_agent {
                claims
                    .get("xms_par_app_azp")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            } else {
                None
            },
            token_type: Some(token_type.to_owned()),
            autonomous,
            is_agent_user,
            on_behalf_of_user,
            mode,
            actor_facets: act,
            subject_facets: sub,
            user_oid: user_str("oid"),
            user_upn,
            user_name: user_str("name"),
            user_tenant: user_str("tid"),
        }
    }

    /// The `agent` object as CEL and audit events see it.
    pub fn agent_json(&self) -> Value {
        json!({
            "isAgent": self.is_agent,
            "id": self.id,
            "blueprint": self.blueprint,
            "tokenType": self.token_type,
            "autonomous": self.autonomous,
            "isAgentUser": self.is_agent_user,
            "onBehalfOfUser": self.on_behalf_of_user,
            "mode": self.mode.as_str(),
            "actorFacets": self.actor_facets,
            "subjectFacets": self.subject_facets,
        })
    }

    /// The `user` object as CEL and audit events see it.
    pub fn user_json(&self) -> Value {
        json!({
            "oid": self.user_oid,
            "upn": self.user_upn,
            "name": self.user_name,
            "tenant": self.user_tenant,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facets_follow_the_spec_examples() {
        assert_eq!(facets(&json!("9 3 11")), vec![3, 9, 11]);
        assert_eq!(facets(&json!(" 11  x 3")), vec![3, 11]);
        assert_eq!(facets(&json!("111")), vec![111]);
        assert_eq!(facets(&json!("11\t11\n13")), vec![11, 13]);
        assert_eq!(facets(&json!("1234567890 -1 +3 3.0 ٣")), Vec::<i64>::new());
        assert_eq!(
            facets(&json!([13, "11", -1, 1.5, "x", null, " 2"])),
            vec![11, 13]
        );
        assert_eq!(facets(&Value::Null), Vec::<i64>::new());
        assert_eq!(facets(&json!(11)), Vec::<i64>::new());
        assert_eq!(facets(&json!({"a": 11})), Vec::<i64>::new());
    }

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn none_is_all_empty() {
        let n = Identity::none();
        assert_eq!(n.mode, AgentMode::None);
        assert_eq!(n.agent_json()["id"], Value::Null);
        assert_eq!(n.agent_json()["tokenType"], Value::Null);
        assert_eq!(n.user_json()["oid"], Value::Null);
        assert_eq!(n.agent_json()["actorFacets"], json!([]));
    }

    fn derive(v: Value) -> Identity {
        Identity::derive(&claims(v))
    }

    #[test]
    fn r3_actor_from_azp_or_appid() {
        // v1: appid; v2: azp; azp wins; empty strings are absent.
        let v1 = derive(json!({"appid": "a1", "xms_act_fct": "11", "idtyp": "app"}));
        assert_eq!(v1.id.as_deref(), Some("a1"));
        let v2 = derive(json!({"azp": "a2", "xms_act_fct": "11", "idtyp": "app"}));
        assert_eq!(v2.id.as_deref(), Some("a2"));
        let both = derive(json!({"azp": "a2", "appid": "a1", "xms_act_fct": "11"}));
        assert_eq!(both.id.as_deref(), Some("a2"));
        let empty_azp = derive(json!({"azp": "", "appid": "a1", "xms_act_fct": "11"}));
        assert_eq!(empty_azp.id.as_deref(), Some("a1"));
        let no_actor = derive(json!({"xms_act_fct": "11"}));
        assert!(no_actor.is_agent && no_actor.id.is_none());
        // Not an agent: no id even with an actor, no blueprint.
        let app = derive(json!({"appid": "a1", "xms_act_fct": "3 9", "xms_par_app_azp": "bp"}));
        assert!(!app.is_agent && app.id.is_none() && app.blueprint.is_none());
        assert_eq!(app.mode, AgentMode::None);
        let agent =
            derive(json!({"appid": "a1", "xms_act_fct": "3 9 11", "xms_par_app_azp": "bp"}));
        assert_eq!(agent.blueprint.as_deref(), Some("bp"));
    }

    #[test]
    fn r3_token_type_inference() {
        let t = |v: Value| derive(v).token_type;
        assert_eq!(t(json!({"idtyp": "user"})).as_deref(), Some("user"));
        assert_eq!(
            t(json!({"idtyp": "app", "scp": "x"})).as_deref(),
            Some("app")
        );
        assert_eq!(
            t(json!({"idtyp": "device", "scp": "x"})).as_deref(),
            Some("user")
        );
        assert_eq!(t(json!({"scp": "User.Read"})).as_deref(), Some("user"));
        assert_eq!(t(json!({"scp": "/"})).as_deref(), Some("app"));
        assert_eq!(t(json!({"scp": ""})).as_deref(), Some("app"));
        assert_eq!(t(json!({"scp": ["x"]})).as_deref(), Some("app"));
        assert_eq!(t(json!({})).as_deref(), Some("app"));
    }

    #[test]
    fn r3_modes_are_exclusive() {
        let obo = derive(
            json!({"appid": "a", "xms_act_fct": "11 9 3", "xms_sub_fct": "2 3",
            "idtyp": "user", "oid": "u", "preferred_username": "p@x", "name": "N", "tid": "t"}),
        );
        assert!(obo.on_behalf_of_user && !obo.autonomous && !obo.is_agent_user);
        assert_eq!(obo.mode, AgentMode::OnBehalfOfUser);
        assert_eq!(obo.user_oid.as_deref(), Some("u"));
        assert_eq!(obo.user_upn.as_deref(), Some("p@x"));
        assert_eq!(obo.user_name.as_deref(), Some("N"));
        assert_eq!(obo.user_tenant.as_deref(), Some("t"));
        let auto = derive(
            json!({"appid": "a", "xms_act_fct": "3 11 9", "idtyp": "app", "oid": "sp", "tid": "t"}),
        );
        assert!(auto.autonomous && !auto.on_behalf_of_user && !auto.is_agent_user);
        assert_eq!(auto.mode, AgentMode::Autonomous);
        // In app tokens oid is a service principal: no user.
        assert_eq!((auto.user_oid, auto.user_tenant), (None, None));
        let au = derive(
            json!({"azp": "a", "xms_act_fct": "1 9 11", "xms_sub_fct": "1 13",
            "scp": "User.Read", "oid": "agent-user", "upn": "", "unique_name": "au@x", "email": "e@x"}),
        );
        assert!(au.is_agent_user && !au.on_behalf_of_user && !au.autonomous);
        assert_eq!(au.mode, AgentMode::AgentUser);
        assert_eq!(au.user_upn.as_deref(), Some("au@x"));
        // Facets in any order and with junk; "111" is not 11; "113" is not 13.
        for act in ["11", "9 3 11", "  11\t3 ", "x 11 y", "11 11"] {
            assert!(derive(json!({"xms_act_fct": act})).is_agent, "{act}");
        }
        for act in ["111", "1 1", "011x", "", "3 9", "-11", "11.0"] {
            assert!(!derive(json!({"xms_act_fct": act})).is_agent, "{act}");
        }
        let not_au = derive(json!({"xms_act_fct": "11", "xms_sub_fct": "113", "idtyp": "user"}));
        assert_eq!(not_au.mode, AgentMode::OnBehalfOfUser);
        // Missing claims: a user token without user claims has nulls, not errors.
        let bare = derive(json!({"idtyp": "user"}));
        assert_eq!(bare.mode, AgentMode::None);
        assert_eq!((bare.user_oid, bare.user_upn), (None, None));
        assert!(bare.actor_facets.is_empty() && bare.subject_facets.is_empty());
        // Non-string facet claims count as absent.
        assert!(!derive(json!({"xms_act_fct": 11})).is_agent);
        assert!(derive(json!({"xms_act_fct": [11, 3]})).is_agent);
    }
}
