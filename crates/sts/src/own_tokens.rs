//! Tokens this STS issued, presented back to it: T1 client assertions, OBO and `user_fic`
//! assertions, Graph bearers. Verified with the shared verifier; keys come from the key ring
//! through [`OwnKeys`], the small key-lookup interface the verifier accepts.

use crate::keys::KeyRing;
use crate::state::StsState;
use agentid_claims::UnverifiedJwt;
use agentid_claims::verify::{
    Alg, Audiences, Issuers, KeyLookup, KeyMatch, TokenUse, Verifier, VerifyError,
};
use axum::http::{HeaderMap, header};
use serde_json::{Map, Value};
use uuid::Uuid;

/// The algorithms this STS signs with.
pub const OWN_ALGORITHMS: [Alg; 2] = [Alg::RS256, Alg::ES256];

/// The published keys of one tenant at one instant: `KeyRing::verifier(tenant, kid, now)`,
/// each key's verification key (built when the key ring loaded it).
pub struct OwnKeys<'a> {
    pub ring: &'a KeyRing,
    pub tenant: Uuid,
    pub now: i64,
}

impl KeyLookup for OwnKeys<'_> {
    async fn lookup(&self, kid: Option<&str>) -> Result<KeyMatch, VerifyError> {
        let keys = self
            .ring
            .verifier(&self.tenant, kid, self.now)
            .await
            .map_err(|e| VerifyError::KeysUnavailable {
                source_url: format!("the signing keys of tenant {}", self.tenant),
                reason: e.to_string(),
            })?;
        Ok(KeyMatch {
            keys: keys.iter().filter_map(|k| k.verification.clone()).collect(),
            issuers: Vec::new(),
        })
    }
}

/// A verifier of this STS's tokens for `issuers`, with the configured skew and `exp` required.
pub fn verifier(sts: &StsState, issuers: Vec<String>) -> Verifier {
    Verifier::new(&OWN_ALGORITHMS)
        .issuers(Issuers::OneOf(issuers))
        .skew(sts.settings.clock_skew)
        .required_claims(&["exp"])
}

/// Verifies `jwt` as a token of `tenant` issued by one of `issuers`.
pub async fn verify(
    sts: &StsState,
    tenant: &Uuid,
    jwt: &UnverifiedJwt,
    verifier: &Verifier,
    now: i64,
) -> Result<(), VerifyError> {
    let keys = OwnKeys {
        ring: &sts.keys,
        tenant: *tenant,
        now,
    };
    verifier.verify(jwt, &keys, now).await.map(|_| ())
}

/// Whether a refusal is about time (expired, not yet valid, no `exp`), which Entra reports
/// with its own codes.
pub fn is_lifetime(e: &VerifyError) -> bool {
    matches!(
        e,
        VerifyError::Expired { .. }
            | VerifyError::NotYetValid { .. }
            | VerifyError::IssuedInFuture { .. }
            | VerifyError::BadDate(_)
    ) || matches!(e, VerifyError::MissingClaim(c) if c == "exp")
}

/// Audiences of a Graph token.
pub const GRAPH_AUDIENCES: [&str; 3] = [
    "https://graph.microsoft.com",
    "https://graph.microsoft.com/",
    agentid_claims::wellknown::GRAPH_APP_ID,
];

/// The verified claims of a Graph bearer (`Authorization: Bearer`): an access token of the
/// tenant its `tid` names, signed with that tenant's key, for Graph, within its lifetime.
pub async fn graph_bearer(
    sts: &StsState,
    headers: &HeaderMap,
    now: i64,
) -> Result<Map<String, Value>, VerifyError> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| VerifyError::Malformed("no bearer token".into()))?;
    let token = auth
        .strip_prefix("Bearer ")
        .or_else(|| auth.strip_prefix("bearer "))
        .ok_or_else(|| VerifyError::Malformed("not a bearer token".into()))?;
    let jwt = UnverifiedJwt::parse(token).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    let tid = jwt
        .str_claim("tid")
        .and_then(agentid_claims::guid::parse)
        .ok_or_else(|| VerifyError::MissingClaim("tid".into()))?;
    let v = verifier(sts, vec![sts.issuer_v1(&tid), sts.issuer_v2(&tid)])
        .audiences(Audiences::OneOf(
            GRAPH_AUDIENCES.iter().map(|a| a.to_string()).collect(),
        ))
        .token_use(TokenUse::Access);
    verify(sts, &tid, &jwt, &v, now).await?;
    Ok(jwt.claims)
}
