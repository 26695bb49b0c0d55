//! Plain-words explanation of a token's claims, for `agentid token decode`. Works on tokens
//! from agentid and from Entra: it reads only documented claims and the documented facet values.

use crate::identity::Identity;
use crate::wellknown::TOKEN_EXCHANGE_APP_ID;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

fn s<'a>(c: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    c.get(k).and_then(Value::as_str)
}

/// Lines of explanation, each a complete sentence. `now` is passed in so output is testable.
pub fn explain(claims: &Map<String, Value>, now: i64) -> Vec<String> {
    let mut out = Vec::new();
    let actor = s(claims, "azp")
        .or_else(|| s(claims, "appid"))
        .unwrap_or("an unknown client");
    let actor_name = s(claims, "app_displayname")
        .map(|n| format!(" (\"{n}\")"))
        .unwrap_or_default();
    let id = Identity::derive(claims);
    let aud = match claims.get("aud") {
        Some(Value::String(a)) => a.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        _ => "(none)".into(),
    };
    let user = id.user_upn.as_deref().or(id.user_name.as_deref());
    let oid = s(claims, "oid").unwrap_or("?");
    let is_user = id.token_type.as_deref() == Some("user");

    let kind = if aud == TOKEN_EXCHANGE_APP_ID
        && s(claims, "sub").is_some_and(|x| x.starts_with("/eid1/"))
    {
        out.push(format!(
            "This is a blueprint exchange token (T1): blueprint {actor}{actor_name} may use it once as the client assertion of agent {}.",
            s(claims, "sub").and_then(|x| x.rsplit('/').next()).unwrap_or("?")
        ));
        "T1"
    } else if id.is_agent_user {
        out.push(format!(
            "The subject is an agent's own user account {} (object {oid}); agent {actor}{actor_name} acts as it.",
            user.unwrap_or("?")
        ));
        "agent user"
    } else if id.on_behalf_of_user {
        out.push(format!(
            "Agent {actor}{actor_name} acts on behalf of the user {} (object {oid}).",
            user.unwrap_or("?")
        ));
        "agent on-behalf-of"
    } else if is_user {
        out.push(format!(
            "Application {actor}{actor_name} acts on behalf of the user {} (object {oid}).",
            user.unwrap_or("?")
        ));
        "user"
    } else if id.autonomous {
        out.push(format!(
            "Agent {actor}{actor_name} acts as itself (no user is involved)."
        ));
        "autonomous agent"
    } else {
        out.push(format!(
            "Application {actor}{actor_name} acts as itself (app-only; subject {oid})."
        ));
        "app-only"
    };
    if let Some(bp) = s(claims, "xms_par_app_azp") {
        out.push(format!(
            "The agent belongs to blueprint {bp} (logged for audit; never authorize on it)."
        ));
    }
    if aud == TOKEN_EXCHANGE_APP_ID && kind != "T1" {
        out.push("Its audience is the token-exchange resource: it is a credential (T2′), not an API token.".into());
    } else {
        out.push(format!("It is meant for the API (audience) {aud}."));
    }
    if let Some(scp) = s(claims, "scp") {
        out.push(format!("Delegated scopes: {scp}."));
    }
    if let Some(Value::Array(roles)) = claims.get("roles") {
        let r: Vec<_> = roles.iter().filter_map(Value::as_str).collect();
        out.push(format!("Application roles: {}.", r.join(", ")));
    }
    if let Some(iss) = s(claims, "iss") {
        let ver = s(claims, "ver").unwrap_or("?");
        out.push(format!(
            "Issued by {iss} (token version {ver}) for tenant {}.",
            s(claims, "tid").unwrap_or("?")
        ));
    }
    if let Some(exp) = claims.get("exp").and_then(crate::jwt::numeric_date) {
        let when = DateTime::<Utc>::from_timestamp(exp, 0)
            .map(|d| d.to_rfc3339())
            .unwrap_or_default();
        if exp > now {
            out.push(format!("Expires {when} (in {} s).", exp - now));
        } else {
            out.push(format!("Expired {when} ({} s ago).", now - exp));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn explains_agent_obo() {
        let c = json!({"aud":"https://graph.microsoft.com","appid":"A","app_displayname":"My Agent","idtyp":"user",
            "upn":"adele@contoso.local","oid":"U","scp":"User.Read","xms_act_fct":"11 9 3","xms_sub_fct":"2 3",
            "xms_par_app_azp":"BP","exp":100});
        let lines = explain(c.as_object().unwrap(), 50);
        assert!(
            lines[0].starts_with(
                "Agent A (\"My Agent\") acts on behalf of the user adele@contoso.local"
            ),
            "{lines:?}"
        );
        assert!(lines.iter().any(|l| l.contains("blueprint BP")));
        assert!(lines.iter().any(|l| l.contains("in 50 s")));
    }

    #[test]
    fn explains_autonomous_agent_with_unordered_facets() {
        let c = json!({"aud":"x","azp":"A","idtyp":"app","xms_act_fct":"9 3 11","xms_sub_fct":"11 3 9"});
        assert!(explain(c.as_object().unwrap(), 0)[0].contains("acts as itself (no user"));
    }
}
