//! Validation of `Authorization: Bearer <jwt>` with the shared verifier: signature with the
//! authority's keys (RS256, PS256, ES256 — never `none` or HMAC), lifetime with 300 s skew,
//! issuer (from the authority's metadata), audience, an access token (no ID token, no
//! token-exchange credential), and the optional required scopes. Claims are kept exactly as
//! issued.

use crate::clock::SharedClock;
use crate::config::{Config, RequiredScopes};
use agentid_claims::UnverifiedJwt;
use agentid_claims::verify::{
    Alg, Audiences, Discovery, FetchPolicy, Fetcher, Issuers, KeyCache, RefreshPolicy, TokenUse,
    Typ, Verifier, VerifyError,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

const SKEW: i64 = 300;
/// A validated token is trusted again without re-checking its signature for this long (its
/// lifetime is checked on every use), so a key removed from the JWKS stops working within it.
const REVALIDATE_AFTER: i64 = 300;
const RECENT_MAX: usize = 1024;
/// Signing keys: kept 24 h, fetched again for an unknown `kid` at most every 5 min, retried
/// every 5 s while none could be fetched.
const KEYS_TTL: Duration = Duration::from_secs(24 * 3600);
const UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(300);
const FAILED_FETCH_INTERVAL: Duration = Duration::from_secs(5);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

struct Recent {
    token: Arc<InboundToken>,
    /// The issuers the keys vouched for when it was verified.
    issuers: Vec<String>,
    verified_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    #[error("no bearer token")]
    Missing,
    /// The reason is one of the fixed phrases of docs/sidecar.md §7.3.
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
    keys: KeyCache,
    verifier: Verifier,
    recent: std::sync::Mutex<std::collections::HashMap<String, Recent>>,
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

/// The fixed phrases of the sidecar contract for each refusal.
fn invalid(e: VerifyError) -> InboundError {
    InboundError::Invalid(match e {
        VerifyError::KeysUnavailable { source_url, .. } => {
            return InboundError::KeysUnavailable(format!(
                "Unable to retrieve signing keys from {source_url}."
            ));
        }
        VerifyError::MissingAlg
        | VerifyError::AlgNotAllowed(_)
        | VerifyError::KidMissing
        | VerifyError::KidUnknown(_)
        | VerifyError::KeyMismatch { .. }
        | VerifyError::BadSignature => "The signature is invalid".into(),
        VerifyError::Expired { .. } => "The token is expired".into(),
        VerifyError::NotYetValid { .. } | VerifyError::IssuedInFuture { .. } => {
            "The token is not yet valid".into()
        }
        VerifyError::IssuerMismatch(iss) => format!("The issuer '{iss}' is invalid"),
        VerifyError::AudienceMismatch(auds) => {
            format!("The audience '{}' is invalid", auds.join(","))
        }
        // Structure, `crit`, an ID token or exchange credential where an access token is due.
        VerifyError::Malformed(_)
        | VerifyError::Crit
        | VerifyError::WrongType(_)
        | VerifyError::MissingClaim(_)
        | VerifyError::BadDate(_) => "The token is malformed".into(),
    })
}

impl Validator {
    pub fn new(config: &Config, http: reqwest::Client, clock: SharedClock) -> Self {
        let (instance, tenant) = (&config.instance, &config.tenant_id);
        let keys = KeyCache::discovery(
            Discovery {
                metadata_url: format!("{instance}{tenant}/v2.0/.well-known/openid-configuration"),
                expected_issuer: None,
                // The v1 document gives the issuer of v1 tokens.
                more_issuers_from: Some(format!(
                    "{instance}{tenant}/.well-known/openid-configuration"
                )),
                tenant: Some(tenant.clone()),
            },
            RefreshPolicy {
                max_age: KEYS_TTL,
                unknown_kid_floor: UNKNOWN_KID_INTERVAL,
                retry_floor: FAILED_FETCH_INTERVAL,
                background: false,
                require_kid: false,
            },
            FetchPolicy {
                timeout: FETCH_TIMEOUT,
                max_bytes: 1 << 20,
                // The authority URL is the operator's (checked when the configuration loads).
                allow_http: true,
                allow_private: true,
                ca_bundle: None,
            },
            Fetcher::configured(http),
        );
        let mut also = vec![format!("https://sts.windows.net/{tenant}/")];
        also.extend(config.valid_issuers.iter().cloned());
        let verifier = Verifier::new(&[Alg::RS256, Alg::PS256, Alg::ES256])
            .issuers(Issuers::Discovered { also })
            .audiences(Audiences::OneOf(config.audiences.clone()))
            .skew(SKEW)
            .required_claims(&["exp"])
            .typ(Typ::AccessToken)
            .token_use(TokenUse::Access);
        Self {
            keys,
            verifier,
            recent: std::sync::Mutex::new(std::collections::HashMap::new()),
            required: config.required_scopes.clone(),
            clock,
        }
    }

    /// The authority's signing keys (the server prefetches them at start).
    pub fn keys(&self) -> &KeyCache {
        &self.keys
    }

    /// Validates the token of an `Authorization` header value.
    pub async fn validate(&self, header: Option<&str>) -> Result<Arc<InboundToken>, InboundError> {
        let raw = bearer(header).ok_or(InboundError::Missing)?;
        let now = self.clock.now();
        if let Some(hit) = self.recently_validated(raw, now) {
            return hit;
        }
        let jwt = UnverifiedJwt::parse(raw)
            .map_err(|_| InboundError::Invalid("The token is malformed".into()))?;
        let verified = self
            .verifier
            .verify(&jwt, &self.keys, now)
            .await
            .map_err(invalid)?;
        let cache_id = format!(
            "tc:{}",
            agentid_claims::jwt::hex(&Sha256::digest(jwt.raw().as_bytes()))
        );
        let token = Arc::new(InboundToken { jwt, cache_id });
        self.remember(raw, &token, verified.issuers, now);
        Ok(token)
    }

    /// A token validated less than 5 min ago: only its claims are checked again.
    fn recently_validated(
        &self,
        raw: &str,
        now: i64,
    ) -> Option<Result<Arc<InboundToken>, InboundError>> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let r = recent
            .get(raw)
            .filter(|r| now < r.verified_at + REVALIDATE_AFTER && now >= r.verified_at)?;
        Some(
            self.verifier
                .check_claims(&r.token.jwt.claims, now, &r.issuers)
                .map(|()| r.token.clone())
                .map_err(invalid),
        )
    }

    fn remember(&self, raw: &str, token: &Arc<InboundToken>, issuers: Vec<String>, now: i64) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= RECENT_MAX {
            let verifier = &self.verifier;
            recent.retain(|_, r| {
                now < r.verified_at + REVALIDATE_AFTER
                    && verifier
                        .check_claims(&r.token.jwt.claims, now, &r.issuers)
                        .is_ok()
            });
            if recent.len() >= RECENT_MAX {
                recent.clear();
            }
        }
        recent.insert(
            raw.to_string(),
            Recent {
                token: token.clone(),
                issuers,
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
