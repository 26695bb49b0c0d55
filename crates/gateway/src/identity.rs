//! Agent and user identity derived from validated claims (gateway.md §7.3–7.4).
//! STUB on main: replaced by the gw-policy branch.
use serde_json::{Map, Value};

pub fn facets(_v: &Value) -> Vec<i64> {
    Vec::new()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

#[derive(Debug, Clone)]
pub struct Identity {
    pub is_agent: bool,
    pub id: Option<String>,
    pub blueprint: Option<String>,
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

impl Identity {
    pub fn derive(_claims: &Map<String, Value>) -> Identity {
        Identity::none()
    }
    pub fn none() -> Identity {
        Identity {
            is_agent: false,
            id: None,
            blueprint: None,
            token_type: None,
            autonomous: false,
            is_agent_user: false,
            on_behalf_of_user: false,
            mode: AgentMode::None,
            actor_facets: vec![],
            subject_facets: vec![],
            user_oid: None,
            user_upn: None,
            user_name: None,
            user_tenant: None,
        }
    }
}
