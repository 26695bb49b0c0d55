//! Agent parameters (docs/sidecar.md §6): the documented validation (400s, in order), then the
//! authorization gate: the allow-list when one is configured, else the route's flag.

use crate::http::query::AgentParams;
use crate::http::route::RouteKind;
use crate::token::UserRef;

/// Validated agent parameters (GUIDs normalised to lower case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Agent {
    pub identity: Option<String>,
    pub user: Option<UserRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// 400 with the documented message.
    #[error("{0}")]
    Invalid(&'static str),
    /// 403 with the message of §6.2.
    #[error("{0}")]
    Forbidden(String),
}

fn guid(s: &str) -> Option<String> {
    agentid_claims::guid::parse(s.trim()).map(|g| g.to_string())
}

/// §6.1, checked in the documented order.
pub fn validate(p: &AgentParams) -> Result<Agent, AgentError> {
    if p.username.is_some() && p.identity.is_none() {
        return Err(AgentError::Invalid(
            "AgentUsername requires AgentIdentity to be specified",
        ));
    }
    if p.user_id.is_some() && p.identity.is_none() {
        return Err(AgentError::Invalid(
            "AgentUserId requires AgentIdentity to be specified",
        ));
    }
    if p.username.is_some() && p.user_id.is_some() {
        return Err(AgentError::Invalid(
            "AgentUsername and AgentUserId are mutually exclusive",
        ));
    }
    let user = match (&p.username, &p.user_id) {
        (Some(u), _) => Some(UserRef::Username(u.trim().to_string())),
        (_, Some(id)) => Some(UserRef::ObjectId(
            guid(id).ok_or(AgentError::Invalid("AgentUserId must be a valid GUID"))?,
        )),
        _ => None,
    };
    let identity = match &p.identity {
        Some(i) => Some(guid(i).ok_or(AgentError::Invalid("AgentIdentity must be a valid GUID"))?),
        None => None,
    };
    Ok(Agent { identity, user })
}

fn flag_name(route: RouteKind) -> &'static str {
    match route {
        RouteKind::AuthorizationHeader => "GetAuthorizationHeader",
        RouteKind::AuthorizationHeaderUnauthenticated => "GetAuthorizationHeaderUnauthenticated",
        RouteKind::DownstreamApi => "CallDownstreamApi",
        _ => "CallDownstreamApiUnauthenticated",
    }
}

/// §6.2: may this sidecar act as `agent` on `route`?
pub fn authorize(
    agent: &Agent,
    route: RouteKind,
    allow_list: Option<&[String]>,
    route_flag: bool,
) -> Result<(), AgentError> {
    let Some(id) = &agent.identity else {
        return Ok(());
    };
    match allow_list {
        Some(list) if list.iter().any(|a| a == id) => Ok(()),
        Some(_) => Err(AgentError::Forbidden(format!(
            "Agent identity '{id}' is not in Sidecar:AllowedAgentIdentities."
        ))),
        None if route_flag => Ok(()),
        None => Err(AgentError::Forbidden(format!(
            "Agent identity parameters are not accepted on this route. Set Sidecar__AllowedAgentIdentities__0 (recommended) or Sidecar__AllowOverrides__{}=true.",
            flag_name(route)
        ))),
    }
}

/// §6.2: an `FmiPath` that came from a query override must be an allow-listed agent.
pub fn authorize_fmi_path(fmi_path: &str, allow_list: Option<&[String]>) -> Result<(), AgentError> {
    match allow_list {
        Some(list) if !list.iter().any(|a| a.eq_ignore_ascii_case(fmi_path.trim())) => {
            Err(AgentError::Forbidden(format!(
                "FmiPath '{fmi_path}' is not in Sidecar:AllowedAgentIdentities."
            )))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "F3897825-FD03-45F5-90EB-FDBF26135650";

    fn p(identity: Option<&str>, username: Option<&str>, user_id: Option<&str>) -> AgentParams {
        AgentParams {
            identity: identity.map(str::to_string),
            username: username.map(str::to_string),
            user_id: user_id.map(str::to_string),
        }
    }

    #[test]
    fn documented_messages_in_order() {
        let msg = |x: AgentParams| validate(&x).unwrap_err().to_string();
        assert_eq!(
            msg(p(None, Some("u"), Some("x"))),
            "AgentUsername requires AgentIdentity to be specified"
        );
        assert_eq!(
            msg(p(None, None, Some(A))),
            "AgentUserId requires AgentIdentity to be specified"
        );
        assert_eq!(
            msg(p(Some("bad"), Some("u"), Some("x"))),
            "AgentUsername and AgentUserId are mutually exclusive"
        );
        assert_eq!(
            msg(p(Some("bad"), None, Some("u@x"))),
            "AgentUserId must be a valid GUID"
        );
        assert_eq!(
            msg(p(Some("bad"), None, None)),
            "AgentIdentity must be a valid GUID"
        );
        let ok = validate(&p(Some(A), None, Some(A))).unwrap();
        assert_eq!(ok.identity.as_deref(), Some(&A.to_lowercase()[..]));
        assert_eq!(ok.user, Some(UserRef::ObjectId(A.to_lowercase())));
    }

    #[test]
    fn allow_list_replaces_the_flag() {
        let agent = validate(&p(Some(A), None, None)).unwrap();
        let list = vec![A.to_lowercase()];
        assert!(
            authorize(
                &agent,
                RouteKind::AuthorizationHeaderUnauthenticated,
                Some(&list),
                false
            )
            .is_ok()
        );
        assert!(authorize(&agent, RouteKind::AuthorizationHeader, Some(&[]), true).is_err());
        assert!(authorize(&agent, RouteKind::AuthorizationHeader, None, true).is_ok());
        let e =
            authorize(&agent, RouteKind::DownstreamApiUnauthenticated, None, false).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("Sidecar__AllowOverrides__CallDownstreamApiUnauthenticated=true.")
        );
        assert!(authorize_fmi_path("other", Some(&list)).is_err());
        assert!(authorize_fmi_path(A, Some(&list)).is_ok());
        assert!(authorize_fmi_path("other", None).is_ok());
    }
}
