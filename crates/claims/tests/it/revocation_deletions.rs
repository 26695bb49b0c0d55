//! The feed's deletion lists (docs/sts.md §17.1): a deleted agent or blueprint refuses the
//! tokens issued to it (or naming it as the parent) up to its deletion, and a deleted consent
//! refuses the client's delegated tokens for that user — or every user — up to the deletion;
//! tokens issued afterwards, app-only tokens and other clients pass. A property test holds the
//! consent check to a plain model over arbitrary feeds and tokens.

use super::revocation::{AGENT, BLUEPRINT, USER, claims, now, payload, read, signed};
use agentid_claims::revocation::{RevocationState, Revoked};
use proptest::prelude::*;
use serde_json::{Value, json};

const CLIENT: &str = "6731de76-14a6-49ae-97bc-6eba6914391e";
const OTHER: &str = "11111111-2222-3333-4444-555555555555";

async fn state(changes: Value) -> RevocationState {
    // Nothing disabled, no user or token revoked: only the lists under test.
    let base = json!({"disabledAgents": [], "revokedUsers": [], "revokedTokens": []});
    let mut all = base.as_object().unwrap().clone();
    all.extend(changes.as_object().unwrap().clone());
    read(&signed(&payload(5, Value::Object(all))))
        .await
        .unwrap()
}

#[tokio::test]
async fn deleted_agents_refuse_tokens_issued_before_the_deletion() {
    let t = now();
    let s = state(json!({"deletedAgents": [
        {"appId": AGENT.to_uppercase(), "deletedAt": t - 100},
        {"appId": BLUEPRINT, "deletedAt": t - 100},
        // Listed twice: the later deletion counts.
        {"appId": BLUEPRINT, "deletedAt": t - 500},
    ]}))
    .await;
    let cases = [
        (
            json!({"azp": AGENT, "iat": t - 200}),
            Some(Revoked::AgentDeleted),
        ),
        (
            json!({"appid": AGENT, "iat": t - 100}),
            Some(Revoked::AgentDeleted),
        ),
        (
            json!({"azp": OTHER, "oid": AGENT, "iat": t - 200}),
            Some(Revoked::AgentDeleted),
        ),
        (
            json!({"azp": OTHER, "xms_par_app_azp": BLUEPRINT, "iat": t - 200}),
            Some(Revoked::AgentDeleted),
        ),
        (
            json!({"azp": BLUEPRINT, "iat": t - 300}),
            Some(Revoked::AgentDeleted),
        ),
        // Without iat a token counts as issued before.
        (json!({"azp": AGENT}), Some(Revoked::AgentDeleted)),
        // Issued after the deletion (a principal made again for the same appId).
        (json!({"azp": AGENT, "iat": t - 50}), None),
        (
            json!({"azp": OTHER, "xms_par_app_azp": BLUEPRINT, "iat": t - 50}),
            None,
        ),
        (json!({"azp": OTHER, "iat": t - 200}), None),
    ];
    for (c, expected) in cases {
        assert_eq!(s.check(&claims(c.clone())), expected, "{c}");
    }
    assert_eq!(Revoked::AgentDeleted.reason(), "revoked:agentDeleted");
}

#[tokio::test]
async fn deleted_consents_refuse_the_delegated_tokens_issued_under_them() {
    let t = now();
    let s = state(json!({"revokedGrants": [
        {"appId": CLIENT, "oid": USER.to_uppercase(), "revokedAt": t - 100},
        {"appId": OTHER.to_uppercase(), "revokedAt": t - 100},
    ]}))
    .await;
    let someone = "99999999-2222-3333-4444-555555555555";
    let cases = [
        // The user's consent to CLIENT.
        (
            json!({"azp": CLIENT, "oid": USER, "scp": "x", "iat": t - 200}),
            Some(Revoked::ConsentRevoked),
        ),
        (
            json!({"appid": CLIENT.to_uppercase(), "oid": USER, "scp": "x", "iat": t - 100}),
            Some(Revoked::ConsentRevoked),
        ),
        (
            json!({"azp": CLIENT, "oid": USER, "scp": "x"}),
            Some(Revoked::ConsentRevoked),
        ),
        (
            json!({"azp": CLIENT, "oid": USER, "scp": "x", "iat": t - 50}),
            None,
        ),
        (
            json!({"azp": CLIENT, "oid": someone, "scp": "x", "iat": t - 200}),
            None,
        ),
        // An app-only token of the client is not under a consent.
        (
            json!({"azp": CLIENT, "oid": USER, "roles": ["r"], "iat": t - 200}),
            None,
        ),
        // OTHER's consent for every user.
        (
            json!({"azp": OTHER, "oid": someone, "scp": "x", "iat": t - 200}),
            Some(Revoked::ConsentRevoked),
        ),
        (
            json!({"azp": OTHER, "scp": "x", "iat": t - 200}),
            Some(Revoked::ConsentRevoked),
        ),
        (
            json!({"azp": OTHER, "oid": someone, "scp": "x", "iat": t - 10}),
            None,
        ),
        (
            json!({"azp": someone, "oid": USER, "scp": "x", "iat": t - 200}),
            None,
        ),
        (json!({"oid": USER, "scp": "x", "iat": t - 200}), None),
    ];
    for (c, expected) in cases {
        assert_eq!(s.check(&claims(c.clone())), expected, "{c}");
    }
    assert_eq!(Revoked::ConsentRevoked.reason(), "revoked:consentRevoked");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// Small id pools so feeds and tokens collide often.
const CLIENTS: [&str; 3] = [CLIENT, OTHER, AGENT];
const USERS: [&str; 3] = [USER, BLUEPRINT, "99999999-2222-3333-4444-555555555555"];

#[derive(Debug, Clone)]
struct Grant {
    client: usize,
    user: Option<usize>,
    upper: bool,
    ago: i64,
}

fn grant() -> impl Strategy<Value = Grant> {
    (
        0..3usize,
        prop::option::of(0..3usize),
        any::<bool>(),
        0..400i64,
    )
        .prop_map(|(client, user, upper, ago)| Grant {
            client,
            user,
            upper,
            ago,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Over arbitrary revoked consents and tokens, the reader refuses exactly the delegated
    /// tokens of a listed client whose user (or every user) had its consent deleted at or after
    /// the token's `iat`.
    #[test]
    fn the_consent_check_matches_the_model(
        grants in prop::collection::vec(grant(), 0..6),
        client in prop::option::of(0..3usize),
        appid in any::<bool>(),
        user in prop::option::of(0..3usize),
        delegated in any::<bool>(),
        iat in prop::option::of(0..500i64),
    ) {
        let t = now();
        let case = |s: &str, upper: bool| if upper { s.to_uppercase() } else { s.to_string() };
        let listed: Vec<Value> = grants
            .iter()
            .map(|g| match g.user {
                Some(u) => json!({"appId": case(CLIENTS[g.client], g.upper), "oid": case(USERS[u], !g.upper), "revokedAt": t - g.ago}),
                None => json!({"appId": case(CLIENTS[g.client], g.upper), "revokedAt": t - g.ago}),
            })
            .collect();
        let s = runtime().block_on(state(json!({"revokedGrants": listed})));
        let mut token = serde_json::Map::new();
        if let Some(c) = client {
            token.insert((if appid { "appid" } else { "azp" }).into(), json!(CLIENTS[c]));
        }
        if let Some(u) = user {
            token.insert("oid".into(), json!(USERS[u]));
        }
        if delegated {
            token.insert("scp".into(), json!("access_as_user"));
        } else {
            token.insert("roles".into(), json!(["r"]));
        }
        if let Some(ago) = iat {
            token.insert("iat".into(), json!(t - ago));
        }
        let issued = iat.map(|a| t - a).unwrap_or(i64::MIN);
        let expected = delegated
            && client.is_some()
            && grants.iter().any(|g| {
                Some(g.client) == client
                    && (g.user.is_none() || g.user == user)
                    && t - g.ago >= issued
            });
        let got = s.check(&token);
        prop_assert_eq!(got, expected.then_some(Revoked::ConsentRevoked), "{:?}", token);
    }
}
