//! Failures told in identity terms: which token, for which audience, acting for whom, and
//! what the authority's AADSTS code means for the person at the keyboard.

use agentid_claims::UnverifiedJwt;
use serde_json::{Map, Value};

/// Sentences for the AADSTS codes an agent meets; the code itself is always kept in the text.
pub fn aadsts_sentence(code: &str) -> Option<&'static str> {
    Some(match code {
        "AADSTS65001" => {
            "Consent is missing: nobody has granted this client the delegated permission it asked for. An administrator must grant it (for an agent: a grant from the agent identity to the API's scope)."
        }
        "AADSTS650053" | "AADSTS70011" => {
            "The requested scope does not exist on the resource; check the configured scope."
        }
        "AADSTS65002" => "Consent between this first-party client and the API is not configured.",
        "AADSTS50076" | "AADSTS50079" => {
            "The user must complete multi-factor authentication; sign in again interactively."
        }
        "AADSTS50126" => "The user name or password is wrong.",
        "AADSTS50034" => "The user account does not exist in this tenant.",
        "AADSTS50173" | "AADSTS70043" | "AADSTS700082" | "AADSTS70008" => {
            "The refresh token has expired or was revoked; sign in again (`agentid agent login --force-login`)."
        }
        "AADSTS700016" => {
            "The application (client id) is not known in this tenant; check the configured ids."
        }
        "AADSTS7000215" => "The client secret is wrong.",
        "AADSTS7000222" => "The client secret has expired; add a new one to the blueprint.",
        "AADSTS700024" => {
            "The client assertion is outside its validity window (expired token file?)."
        }
        "AADSTS700211" | "AADSTS700212" | "AADSTS700213" | "AADSTS70021" => {
            "The federated token does not match any federated credential of the blueprint (issuer, subject or audience differ)."
        }
        "AADSTS500011" => {
            "The resource (audience) is not known in this tenant; check the API's scope or identifier URI."
        }
        "AADSTS50013" => {
            "The user token presented for on-behalf-of was not issued for this agent's blueprint (wrong audience)."
        }
        "AADSTS82001" => {
            "This agent identity may not act for users on this resource (agent identities are restricted in on-behalf-of)."
        }
        "AADSTS90009" => "The application asked for a token for itself, which is not allowed here.",
        "AADSTS700030" | "AADSTS50027" => "The token presented is malformed or not valid.",
        "AADSTS7000112" => "The application is disabled.",
        "AADSTS50057" => "The user account is disabled.",
        "AADSTS90002" => "The tenant does not exist; check the authority and tenant.",
        _ => return None,
    })
}

/// The first `AADSTSnnnn` code in a text.
pub fn find_aadsts(text: &str) -> Option<String> {
    let i = text.find("AADSTS")?;
    let digits: String = text[i + 6..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (!digits.is_empty()).then(|| format!("AADSTS{digits}"))
}

/// An authority (or sidecar) error as one readable message: the explanation first, then the
/// original description for the record.
pub fn describe_sts_error(error: &str, description: &str) -> String {
    let first_line = description.lines().next().unwrap_or("").trim();
    match find_aadsts(description).and_then(|c| aadsts_sentence(&c).map(|s| (c, s))) {
        Some((code, sentence)) => format!("{sentence} ({code}: {first_line})"),
        None if first_line.is_empty() => error.to_string(),
        None => format!("{error}: {first_line}"),
    }
}

fn s<'a>(c: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    c.get(k).and_then(Value::as_str)
}

/// One line about a token: what it is for, who is the subject, who acts, scopes, expiry.
pub fn token_summary(raw: &str, now: i64) -> String {
    match UnverifiedJwt::parse(raw) {
        Err(_) => "an opaque token (not a JWT)".into(),
        Ok(jwt) => {
            let c = &jwt.claims;
            let aud = jwt.audiences().join(", ");
            let actor = s(c, "appid").or_else(|| s(c, "azp")).unwrap_or("?");
            let who = match s(c, "idtyp") {
                Some("user") => format!(
                    "agent/app {actor} acting for the user {}",
                    s(c, "upn")
                        .or_else(|| s(c, "preferred_username"))
                        .or_else(|| s(c, "oid"))
                        .unwrap_or("?")
                ),
                _ => format!("{actor} acting as itself (no user)"),
            };
            let perms = s(c, "scp")
                .map(|x| format!("scopes {x}"))
                .or_else(|| {
                    c.get("roles").and_then(Value::as_array).map(|r| {
                        format!(
                            "roles {}",
                            r.iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(" ")
                        )
                    })
                })
                .unwrap_or_else(|| "no scopes or roles".into());
            let exp = jwt
                .time_claim("exp")
                .map(|e| {
                    let left = e - now;
                    if left >= 0 {
                        format!("expires in {} min", left / 60)
                    } else {
                        format!("expired {} min ago", (-left) / 60)
                    }
                })
                .unwrap_or_else(|| "no expiry".into());
            format!(
                "a token for {aud}, {who}, {perms}, {exp} (id {})",
                jwt.log_id()
            )
        }
    }
}

/// The full plain-words explanation of a token (crates/claims `explain`).
pub fn token_lines(raw: &str, now: i64) -> Vec<String> {
    match UnverifiedJwt::parse(raw) {
        Ok(jwt) => agentid_claims::explain::explain(&jwt.claims, now),
        Err(e) => vec![format!("Not a JWT ({e}); nothing to explain.")],
    }
}

/// Why an HTTP API refused the agent's call (401/403), in identity terms.
pub fn explain_denial(
    what: &str,
    status: u16,
    www_authenticate: Option<&str>,
    body: &str,
    token: Option<&str>,
    expected_scope: Option<&str>,
    now: i64,
) -> String {
    let mut out = format!("{what} refused the call with HTTP {status}.");
    match token {
        None => out.push_str(" No agent token was sent (auth is `none` or `apiKey`)."),
        Some(t) => {
            out.push_str(&format!(" The agent sent {}.", token_summary(t, now)));
            if let Ok(jwt) = UnverifiedJwt::parse(t) {
                if let Some(scope) = expected_scope {
                    let want = scope.trim_end_matches("/.default");
                    let auds = jwt.audiences();
                    if !auds.contains(&want) {
                        out.push_str(&format!(
                            " Its audience ({}) is not the one configured for this API ({want}).",
                            auds.join(", ")
                        ));
                    }
                }
                if jwt.time_claim("exp").is_some_and(|e| e <= now) {
                    out.push_str(" The token has expired.");
                }
            }
        }
    }
    if let Some(w) = www_authenticate {
        out.push_str(&format!(" The server says: {w}."));
    }
    let body = body.trim();
    if let Some(code) = find_aadsts(body)
        && let Some(sentence) = aadsts_sentence(&code)
    {
        out.push_str(&format!(" {sentence} ({code})"));
    }
    if status == 401 {
        out.push_str(" HTTP 401 means the token was not accepted at all: wrong audience or issuer, expired, or not signed by a key the server trusts.");
    } else if status == 403 {
        out.push_str(" HTTP 403 means the token was valid but not enough: a missing scope or role, consent not granted for this agent, or a policy that refuses agents acting without a user (or the reverse).");
    }
    if !body.is_empty() {
        let mut b: String = body.chars().take(300).collect();
        if body.len() > b.len() {
            b.push('…');
        }
        out.push_str(&format!(" Response: {b}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aadsts_codes_become_sentences() {
        let m = describe_sts_error(
            "invalid_grant",
            "AADSTS65001: The user or administrator has not consented. Trace ID: x",
        );
        assert!(m.starts_with("Consent is missing"), "{m}");
        assert!(m.contains("AADSTS65001"));
        assert_eq!(
            find_aadsts("x AADSTS7000215: bad"),
            Some("AADSTS7000215".into())
        );
        assert_eq!(
            describe_sts_error("invalid_client", "whatever"),
            "invalid_client: whatever"
        );
    }
}
