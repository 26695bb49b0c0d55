//! Who acted, in one phrase (docs/audit.md §3.3): "user X via client Y", "agent A for user X",
//! "agent A". The one wording the chain's decision hops, the console's timeline and chain page
//! and `agentid sts audit --chain` print.

use super::events::GatewayEvent;
use crate::audit::AuditEvent;

/// The parties of a request or a token, as names to print (a display name, a UPN; the bare id
/// when the directory has no name).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Actors<'a> {
    /// The agent identity that acted, when the token is an agent's.
    pub agent: Option<&'a str>,
    /// The person the token stands for (an agent user is one too).
    pub user: Option<&'a str>,
    /// The application that obtained the token (`azp`/`appid`): a person's MCP client, an app.
    pub client: Option<&'a str>,
    /// The user is the agent's own agent user (T2′), not a person it acts for.
    pub agent_user: bool,
}

/// The phrase for `a`. An agent's token names the agent (and its client is the agent itself, so
/// the client is not repeated); a person's names the client they came through.
pub fn summary(a: &Actors<'_>) -> String {
    fn some(s: Option<&str>) -> Option<&str> {
        s.filter(|s| !s.trim().is_empty())
    }
    match (some(a.agent), some(a.user), some(a.client)) {
        (Some(agent), Some(user), _) if a.agent_user => {
            format!("agent {agent} as its agent user {user}")
        }
        (Some(agent), Some(user), _) => format!("agent {agent} for user {user}"),
        (Some(agent), None, _) => format!("agent {agent}"),
        (None, Some(user), Some(client)) => format!("user {user} via client {client}"),
        (None, Some(user), None) => format!("user {user}"),
        (None, None, Some(client)) => format!("client {client}"),
        (None, None, None) => "no identity".to_string(),
    }
}

/// The phrase for a gateway decision; `name` turns an appId into what to print.
pub fn of_gateway_event(e: &GatewayEvent, name: &dyn Fn(&str) -> String) -> String {
    let agent = e.agent_id.as_deref().map(name);
    let client = e.client_app_id.as_deref().map(name);
    summary(&Actors {
        agent: agent.as_deref(),
        user: e.user_upn.as_deref().or(e.user_id.as_deref()),
        client: client.as_deref(),
        agent_user: is_agent_user(e),
    })
}

/// The phrase for an STS event (a token issued or refused, a directory write): the agent is the
/// client only when the client is an agent identity (a blueprint asking for T1 is a client).
pub fn of_sts_event(e: &AuditEvent, name: &dyn Fn(&str) -> String) -> String {
    let is_agent = e.client_kind.as_deref() == Some("agent");
    let agent = e.client_id.as_deref().filter(|_| is_agent).map(name);
    let client = e.client_id.as_deref().map(name);
    summary(&Actors {
        agent: agent.as_deref(),
        user: e.user_principal_name.as_deref().or(e.user_id.as_deref()),
        client: client.as_deref(),
        agent_user: e.parent_kind.as_deref() == Some("t2_prime"),
    })
}

/// Whether a gateway event's token was an agent's own agent user: the mode is in the event as
/// the gateway wrote it (`identity.agentMode`, docs/gateway.md §11), not in a column.
pub fn is_agent_user(e: &GatewayEvent) -> bool {
    // The stored line is at most the ingest's event bound; parse only the one field.
    #[derive(serde::Deserialize)]
    struct Line {
        identity: Option<Identity>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Identity {
        agent_mode: Option<String>,
    }
    serde_json::from_str::<Line>(&e.event)
        .ok()
        .and_then(|l| l.identity)
        .and_then(|i| i.agent_mode)
        .is_some_and(|m| m == "agentUser")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_party_has_its_phrase() {
        let a = |agent, user, client, agent_user| Actors {
            agent,
            user,
            client,
            agent_user,
        };
        let alice = Some("alice@contoso.test");
        let cases = [
            (
                a(None, alice, Some("Claude Desktop"), false),
                "user alice@contoso.test via client Claude Desktop",
            ),
            (
                a(Some("Mail agent"), alice, Some("Mail agent"), false),
                "agent Mail agent for user alice@contoso.test",
            ),
            (
                a(Some("Mail agent"), Some("mail@contoso.test"), None, true),
                "agent Mail agent as its agent user mail@contoso.test",
            ),
            (
                a(Some("Mail agent"), None, Some("Mail agent"), false),
                "agent Mail agent",
            ),
            (a(None, alice, None, false), "user alice@contoso.test"),
            (
                a(None, None, Some("billing app"), false),
                "client billing app",
            ),
            (a(None, None, None, false), "no identity"),
            // Blank values are absent values, not a name.
            (
                a(Some(" "), alice, Some(""), false),
                "user alice@contoso.test",
            ),
            // agent_user without an agent says nothing of agents.
            (
                a(None, alice, Some("c"), true),
                "user alice@contoso.test via client c",
            ),
        ];
        for (actors, want) in cases {
            assert_eq!(summary(&actors), want, "{actors:?}");
        }
    }

    #[test]
    fn the_agent_user_mode_is_read_from_the_stored_event() {
        let ev = |event: &str| GatewayEvent {
            event: event.to_string(),
            ..Default::default()
        };
        assert!(is_agent_user(&ev(
            r#"{"identity": {"agentMode": "agentUser"}}"#
        )));
        for other in [
            r#"{"identity": {"agentMode": "onBehalfOfUser"}}"#,
            r#"{"identity": {"agentMode": 7}}"#,
            r#"{"identity": null}"#,
            r#"{}"#,
            "not json",
            "",
        ] {
            assert!(!is_agent_user(&ev(other)), "{other}");
        }
    }
}
