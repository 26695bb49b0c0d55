//! Validation of `Authorization: Bearer <jwt>` (sidecar.md §7.1–§7.2): signature with the
//! authority's keys (RS256, PS256, ES256 — never `none` or HMAC), lifetime with 300 s skew,
//! issuer, audience, and the optional required scopes. Claims are kept exactly as issued.

use super::keys::{KeysError, SigningKeys};
use crate::clock::SharedClock;
use crate::config::{Config, RequiredScopes};
use agentid_claims::UnverifiedJwt;
use jsonwebtoken::Algorithm;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;

const SKEW: i64 = 300;
/// A validated token is trusted again without re-checking its signature for this long (its
/// lifetime is checked on every use), so a key removed from the JWKS stops working within it.
const REVALIDATE_AFTER: i64 = 300;
const RECENT_MAX: usize = 1024;

struct Recent {
    token: Arc<InboundToken>,
    exp: i64,
    nbf: Option<i64>,
    verified_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    #[error("no bearer token")]
    Missing,
    /// The reason is one of the fixed phrases of sidecar.md §7.3.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    KeysUnavailable(String),
    /// IDW10203 with the configured `AzureAd__Scopes`.
    #[error("IDW10203: The 'scope' or 'scp' claim does not contain scopes '{0}' or was not found.")]
    InsufficientScope(String),
}

/// A validated inbound token (Tc).
#[derive(Clone)]
pub struct InboundToken {
    pub jwt: UnverifiedJwt,
    /// `tc:` + hex SHA-256 of the raw token: its cache identity.
    pub cache_id: String,
}

impl std::fmt::Debug for InboundToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundToken")
            .field("id", &self.jwt.log_id())
            .finish_non_exhaustive()
    }
}

impl InboundToken {
    pub fn raw(&self) -> &str {
        self.jwt.raw()
    }
}

pub struct Validator {
    keys: SigningKeys,
    recent: std::sync::Mutex<std::collections::HashMap<String, Recent>>,
    audiences: Vec<String>,
    required: Option<RequiredScopes>,
    clock: SharedClock,
}

/// The token of an `Authorization` header, if its scheme is Bearer (any case).
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let (scheme, token) = h.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("Bearer") && !token.is_empty()).then_some(token)
}

fn algorithm_fits(alg: Algorithm, kty: &str, crv: Option<&str>) -> bool {
    match alg {
        Algorithm::RS256 | Algorithm::PS256 => kty == "RSA",
        Algorithm::ES256 => kty == "EC" && crv == Some("P-256"),
        _ => false,
    }
}

impl Validator {
    pub fn new(config: &Config, http: reqwest::Client, clock: SharedClock) -> Self {
        Self {
            keys: SigningKeys::new(
                http,
                &config.instance,
                &config.tenant_id,
                &config.valid_issuers,
                clock.clone(),
            ),
            recent: std::sync::Mutex::new(std::collections::HashMap::new()),
            audiences: config.audiences.clone(),
            required: config.required_scopes.clone(),
            clock,
        }
    }

    pub fn keys(&self) -> &SigningKeys {
        &self.keys
    }

    /// Validates the token of an `Authorization` header value.
    pub async fn validate(&self, header: Option<&str>) -> Result<Arc<InboundToken>, InboundError> {
        let raw = bearer(header).ok_or(InboundError::Missing)?;
        let now = self.clock.now();
        if let Some(hit) = self.recently_validated(raw, now) {
            return hit;
        }
        let malformed = || InboundError::Invalid("The token is malformed".into());
        let jwt = UnverifiedJwt::parse(raw).map_err(|_| malformed())?;
        let alg = jwt
            .alg()
            .and_then(agentid_claims::jwt::parse_alg)
            .filter(|a| matches!(a, Algorithm::RS256 | Algorithm::PS256 | Algorithm::ES256));
        let bad_signature = || InboundError::Invalid("The signature is invalid".into());
        let Some(alg) = alg else {
            return Err(bad_signature());
        };
        let snapshot = self.keys.get(jwt.kid()).await.map_err(|e| match e {
            KeysError::Unavailable(uri) => InboundError::KeysUnavailable(format!(
                "Unable to retrieve signing keys from {uri}."
            )),
        })?;
        let kid = jwt.kid();
        let verified = snapshot
            .keys
            .iter()
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
            .filter(|k| algorithm_fits(alg, &k.kty, k.crv.as_deref()))
            .any(|k| jwt.verify(&k.key, &[alg]).is_ok());
        if !verified {
            return Err(bad_signature());
        }
        let exp = jwt.time_claim("exp").ok_or_else(malformed)?;
        if exp + SKEW <= now {
            return Err(InboundError::Invalid("The token is expired".into()));
        }
        if jwt.time_claim("nbf").is_some_and(|nbf| nbf - SKEW > now) {
            return Err(InboundError::Invalid("The token is not yet valid".into()));
        }
        let auds = jwt.audiences();
        if !auds.iter().any(|a| self.audiences.iter().any(|x| x == a)) {
            return Err(InboundError::Invalid(format!(
                "The audience '{}' is invalid",
                auds.join(",")
            )));
        }
        let iss = jwt.str_claim("iss").unwrap_or_default();
        if !snapshot.issuers.iter().any(|i| i == iss) {
            return Err(InboundError::Invalid(format!(
                "The issuer '{iss}' is invalid"
            )));
        }
        let cache_id = format!(
            "tc:{}",
            agentid_claims::jwt::hex(&Sha256::digest(jwt.raw().as_bytes()))
        );
        let nbf = jwt.time_claim("nbf");
        let token = Arc::new(InboundToken { jwt, cache_id });
        self.remember(raw, &token, exp, nbf, now);
        Ok(token)
    }

    /// A token validated less than 5 min ago: only its lifetime is checked again.
    fn recently_validated(
        &self,
        raw: &str,
        now: i64,
    ) -> Option<Result<Arc<InboundToken>, InboundError>> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let r = recent
            .get(raw)
            .filter(|r| now < r.verified_at + REVALIDATE_AFTER && now >= r.verified_at)?;
        Some(if r.exp + SKEW <= now {
            Err(InboundError::Invalid("The token is expired".into()))
        } else if r.nbf.is_some_and(|nbf| nbf - SKEW > now) {
            Err(InboundError::Invalid("The token is not yet valid".into()))
        } else {
            Ok(r.token.clone())
        })
    }

    fn remember(&self, raw: &str, token: &Arc<InboundToken>, exp: i64, nbf: Option<i64>, now: i64) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= RECENT_MAX {
            recent.retain(|_, r| now < r.verified_at + REVALIDATE_AFTER && r.exp + SKEW > now);
            if recent.len() >= RECENT_MAX {
                recent.clear();
            }
        }
        recent.insert(
            raw.to_string(),
            Recent {
                token: token.clone(),
                exp,
                nbf,
                verified_at: now,
            },
        );
    }

    /// `AzureAd__Scopes`: the token's `scp` must hold at least one of them (§7.2).
    pub fn check_scopes(&self, token: &InboundToken) -> Result<(), InboundError> {
        let Some(req) = &self.required else {
            return Ok(());
        };
        let scp = token
            .jwt
            .claims
            .get("scp")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if scp.split(' ').any(|s| req.any_of.iter().any(|r| r == s)) {
            Ok(())
        } else {
            Err(InboundError::InsufficientScope(req.raw.clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("PoP abc")), None);
        assert_eq!(bearer(Some("Bearer")), None);
        assert_eq!(bearer(None), None);
    }
}
