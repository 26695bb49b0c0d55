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

/// The largest feed document read (6 lists of [`MAX_LIST`] short entries, base64url: about
/// 2.3 MiB when every list is full).
pub const MAX_FEED_BYTES: usize = 4 * 1024 * 1024;

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
    // Added after the first four lists: a feed from an STS that predates them has none.
    #[serde(default)]
    deleted_agents: Vec<DeletedAgent>,
    #[serde(default)]
    revoked_grants: Vec<RevokedGrant>,
    #[serde(default)]
    truncated: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeletedAgent {
    app_id: String,
    deleted_at: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RevokedGrant {
    app_id: String,
    #[serde(default)]
    oid: Option<String>,
    revoked_at: i64,
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
    /// The agent identity or its blueprint was deleted after the token was issued.
    AgentDeleted,
    /// The consent the delegated token was issued under was deleted after it was issued.
    ConsentRevoked,
    /// The user's sessions were revoked at or after the token was issued.
    UserSessionsRevoked,
    /// The token's `uti` (or its refresh family) was revoked.
    TokenRevoked,
}

impl Revoked {
    pub fn reason(self) -> &'static str {
        match self {
            Revoked::AgentDisabled => "revoked:agentDisabled",
            Revoked::AgentDeleted => "revoked:agentDeleted",
            Revoked::ConsentRevoked => "revoked:consentRevoked",
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
    /// appId of a deleted agent identity or blueprint → deleted at (Unix seconds).
    pub deleted_agents: HashMap<String, i64>,
    /// (client appId, user object id or `None` for every user) → consent deleted at.
    pub revoked_grants: HashMap<(String, Option<String>), i64>,
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
    /// - the client, `oid` or the parent blueprint was deleted at or after `iat`;
    /// - `oid` is a user whose sessions were revoked at or after `iat` (a token without `iat`
    ///   counts as issued before);
    /// - the token is delegated (it has `scp`) and the client's consent for `oid`, or for
    ///   every user, was deleted at or after `iat`;
    /// - `uti` is revoked.
    pub fn check(&self, claims: &Map<String, Value>) -> Option<Revoked> {
        let id = |name: &str| str_claim(claims, name).map(str::to_ascii_lowercase);
        let client = id("azp").or_else(|| id("appid"));
        let oid = id("oid");
        let iat = || {
            claims
                .get("iat")
                .and_then(crate::jwt::numeric_date)
                .unwrap_or(i64::MIN)
        };
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
        if !self.deleted_agents.is_empty() {
            let deleted = [&client, &oid, &id("xms_par_app_azp")]
                .into_iter()
                .flatten()
                .filter_map(|c| self.deleted_agents.get(c))
                .any(|at| *at >= iat());
            if deleted {
                return Some(Revoked::AgentDeleted);
            }
        }
        if let Some(oid) = &oid
            && let Some(at) = self.revoked_users.get(oid)
            && *at >= iat()
        {
            return Some(Revoked::UserSessionsRevoked);
        }
        if !self.revoked_grants.is_empty()
            && str_claim(claims, "scp").is_some()
            && let Some(client) = client
        {
            let every_user = self.revoked_grants.get(&(client.clone(), None));
            let this_user = oid.and_then(|o| self.revoked_grants.get(&(client, Some(o))));
            if [every_user, this_user]
                .into_iter()
                .flatten()
                .any(|at| *at >= iat())
            {
                return Some(Revoked::ConsentRevoked);
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
        p.deleted_agents.len(),
        p.revoked_grants.len(),
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
    // A listed id twice keeps its latest time: the later revocation covers more tokens.
    let mut deleted = HashMap::with_capacity(p.deleted_agents.len());
    for d in p.deleted_agents {
        let at = deleted.entry(entry(d.app_id, true)?).or_insert(i64::MIN);
        *at = d.deleted_at.max(*at);
    }
    let mut grants = HashMap::with_capacity(p.revoked_grants.len());
    for g in p.revoked_grants {
        let key = (
            entry(g.app_id, true)?,
            g.oid.map(|o| entry(o, true)).transpose()?,
        );
        let at = grants.entry(key).or_insert(i64::MIN);
        *at = g.revoked_at.max(*at);
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
        deleted_agents: deleted,
        revoked_grants: grants,
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
