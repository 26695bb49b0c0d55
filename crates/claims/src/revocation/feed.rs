//! One revocation feed document (docs/sts.md §17.1): a compact JWS of type
//! [`FEED_TYP`], signed with the tenant's token-signing key, checked in this order:
//!
//! 1. size and structure; the header's `typ` must be [`FEED_TYP`] (an access token, which
//!    has `typ: JWT` or none, is never a feed);
//! 2. the shared verifier: algorithm allow-list, key by `kid` from the issuer's key cache,
//!    signature, `iss` equal to the expected issuer (or one the key cache's discovery
//!    documents vouch for), `exp` and `iat` with skew;
//! 3. the payload's shape and bounds ([`MAX_LIST`] entries per list), and `truncated` unset;
//! 4. (by the caller, [`super::poller`]) the version is not lower than the one held.

use crate::jwt::UnverifiedJwt;
use crate::verify::{Alg, Issuers, KeyLookup, Typ, Verifier, VerifyError};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

/// The header `typ` of a feed document.
pub const FEED_TYP: &str = "agentid-revocations+jwt";

/// The largest feed document read (4 lists of [`MAX_LIST`] short entries, base64url).
pub const MAX_FEED_BYTES: usize = 2 * 1024 * 1024;

/// Entries per list the STS publishes at most (the directory's `MAX_FEED_ENTRIES`).
pub const MAX_LIST: usize = 5000;

/// The longest entry accepted (object ids and `uti`s are far shorter).
const MAX_ENTRY_CHARS: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    #[error("the feed is not a JWS: {0}")]
    Malformed(String),
    #[error("the feed's typ is {0:?}, not {FEED_TYP}")]
    WrongType(Option<String>),
    #[error("the feed does not verify: {0}")]
    Verify(#[from] VerifyError),
    #[error("the feed's payload is invalid: {0}")]
    Payload(String),
    #[error("the feed was truncated by the STS (more than {MAX_LIST} entries in a list)")]
    Truncated,
    #[error("the feed's version {got} is older than the version {have} already held")]
    Rollback { have: i64, got: i64 },
    #[error("the feed could not be fetched: {0}")]
    Fetch(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    iss: String,
    version: i64,
    iat: i64,
    disabled_agents: Vec<String>,
    disabled_blueprints: Vec<String>,
    revoked_users: Vec<RevokedUser>,
    revoked_tokens: Vec<String>,
    #[serde(default)]
    truncated: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RevokedUser {
    oid: String,
    revoked_at: i64,
}

/// Why a token is refused (the audit decision reason is [`Revoked::reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// The agent identity or its blueprint is disabled.
    AgentDisabled,
    /// The user's sessions were revoked at or after the token was issued.
    UserSessionsRevoked,
    /// The token's `uti` (or its refresh family) was revoked.
    TokenRevoked,
}

impl Revoked {
    pub fn reason(self) -> &'static str {
        match self {
            Revoked::AgentDisabled => "revoked:agentDisabled",
            Revoked::UserSessionsRevoked => "revoked:userSessionsRevoked",
            Revoked::TokenRevoked => "revoked:tokenRevoked",
        }
    }
}

/// A verified feed: what one issuer has revoked at one version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationState {
    pub issuer: String,
    pub version: i64,
    pub issued_at: i64,
    pub disabled_agents: HashSet<String>,
    pub disabled_blueprints: HashSet<String>,
    /// User object id → sessions revoked at (Unix seconds).
    pub revoked_users: HashMap<String, i64>,
    pub revoked_tokens: HashSet<String>,
}

fn str_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

impl RevocationState {
    /// Whether a validated token's claims are revoked. Ids are compared in lower case (the
    /// STS writes GUIDs in lower case; a token may not).
    ///
    /// - the client (`azp`/`appid`) or `oid` is a disabled agent identity, or the client or
    ///   the parent blueprint (`xms_par_app_azp`) is a disabled blueprint;
    /// - `oid` is a user whose sessions were revoked at or after `iat` (a token without `iat`
    ///   counts as issued before);
    /// - `uti` is revoked.
    pub fn check(&self, claims: &Map<String, Value>) -> Option<Revoked> {
        let id = |name: &str| str_claim(claims, name).map(str::to_ascii_lowercase);
        let client = id("azp").or_else(|| id("appid"));
        let oid = id("oid");
        let agent_hit = [&client, &oid]
            .into_iter()
            .flatten()
            .any(|c| self.disabled_agents.contains(c));
        let blueprint_hit = [&client, &id("xms_par_app_azp")]
            .into_iter()
            .flatten()
            .any(|c| self.disabled_blueprints.contains(c));
        if agent_hit || blueprint_hit {
            return Some(Revoked::AgentDisabled);
        }
        if let Some(oid) = &oid
            && let Some(at) = self.revoked_users.get(oid)
        {
            let iat = claims
                .get("iat")
                .and_then(crate::jwt::numeric_date)
                .unwrap_or(i64::MIN);
            if *at >= iat {
                return Some(Revoked::UserSessionsRevoked);
            }
        }
        if let Some(uti) = str_claim(claims, "uti")
            && self.revoked_tokens.contains(uti)
        {
            return Some(Revoked::TokenRevoked);
        }
        None
    }

    /// Whether anything about `agent` (an appId) or `user` (an object id) is revoked: the
    /// sidecar's question before it hands out a token for them.
    pub fn agent_disabled(&self, agent: &str, blueprint: Option<&str>) -> bool {
        self.disabled_agents.contains(&agent.to_ascii_lowercase())
            || blueprint.is_some_and(|b| self.disabled_blueprints.contains(&b.to_ascii_lowercase()))
    }
}

/// Steps 1–3: a verified [`RevocationState`] from the document `raw` of `issuer`, with keys
/// from `keys` and the clock at `now`.
pub async fn verify<K: KeyLookup + ?Sized>(
    raw: &str,
    issuer: &str,
    keys: &K,
    now: i64,
    skew: i64,
) -> Result<RevocationState, FeedError> {
    let jwt = UnverifiedJwt::parse_document(raw, MAX_FEED_BYTES)
        .map_err(|e| FeedError::Malformed(e.to_string()))?;
    match jwt.header.get("typ").and_then(Value::as_str) {
        Some(t) if t == FEED_TYP => {}
        other => {
            return Err(FeedError::WrongType(
                other.map(|t| t.chars().take(64).collect()),
            ));
        }
    }
    let verifier = Verifier::new(&[Alg::RS256, Alg::ES256])
        .issuers(Issuers::Discovered {
            also: vec![issuer.to_string()],
        })
        .required_claims(&["iss", "iat", "exp", "version"])
        .require_kid(true)
        .typ(Typ::RevocationFeed)
        .check_iat(true)
        .skew(skew);
    verifier.verify(&jwt, keys, now).await?;
    let p: Payload = serde_json::from_value(Value::Object(jwt.claims))
        .map_err(|e| FeedError::Payload(e.to_string()))?;
    if p.truncated {
        return Err(FeedError::Truncated);
    }
    if p.version < 0 {
        return Err(FeedError::Payload("negative version".into()));
    }
    let lists = [
        p.disabled_agents.len(),
        p.disabled_blueprints.len(),
        p.revoked_users.len(),
        p.revoked_tokens.len(),
    ];
    if lists.iter().any(|n| *n > MAX_LIST) {
        return Err(FeedError::Payload(format!(
            "a list holds more than {MAX_LIST} entries"
        )));
    }
    let set = |v: Vec<String>| -> Result<HashSet<String>, FeedError> {
        v.into_iter().map(|s| entry(s, true)).collect()
    };
    let mut users = HashMap::with_capacity(p.revoked_users.len());
    for u in p.revoked_users {
        users.insert(entry(u.oid, true)?, u.revoked_at);
    }
    Ok(RevocationState {
        issuer: p.iss,
        version: p.version,
        issued_at: p.iat,
        disabled_agents: set(p.disabled_agents)?,
        disabled_blueprints: set(p.disabled_blueprints)?,
        revoked_users: users,
        revoked_tokens: p
            .revoked_tokens
            .into_iter()
            .map(|s| entry(s, false))
            .collect::<Result<_, _>>()?,
    })
}

/// One list entry: non-empty, bounded, printable; ids in lower case.
fn entry(s: String, lower: bool) -> Result<String, FeedError> {
    if s.is_empty() || s.chars().count() > MAX_ENTRY_CHARS || s.chars().any(char::is_control) {
        return Err(FeedError::Payload(
            "an entry is empty, too long or not printable".into(),
        ));
    }
    Ok(if lower { s.to_ascii_lowercase() } else { s })
}
