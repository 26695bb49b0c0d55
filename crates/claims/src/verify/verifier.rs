//! The one token verifier: a [`Verifier`] holds the parameters a part chooses (algorithms,
//! issuers, audiences, skew, accepted `typ`, required claims) and checks a parsed token against
//! keys from any [`KeyLookup`] in a fixed order:
//!
//! 1. header: no `crit`, an `alg` on the allow-list, an accepted `typ` (`jku`, `x5u`, `x5c` and
//!    `jwk` header members are never read: keys come only from the configured source);
//! 2. keys: by `kid` from the key source (or every key when the token names none and the policy
//!    allows that);
//! 3. the algorithm fits the key type (RSA for `RS*`/`PS*`, P-256 for `ES256`, P-384 for
//!    `ES384`, and the JWK's own `alg`/`use`) — checked *before* the crypto library is called;
//! 4. the signature;
//! 5. claims: required claims present, lifetime with skew, issuer, audience, token use.
//!
//! Every refusal is a [`VerifyError`]; each part maps the variants onto its own wire errors.
//! Nothing here panics on any input.

use super::key::{Alg, KeySet, VerificationKey};
use crate::jwt::{UnverifiedJwt, numeric_date};
use serde_json::{Map, Value};
use std::future::Future;
use std::sync::Arc;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the token is not a JWT: {0}")]
    Malformed(String),
    #[error("the header has no alg")]
    MissingAlg,
    #[error("critical header extensions are not supported")]
    Crit,
    #[error("algorithm '{0}' is not allowed")]
    AlgNotAllowed(String),
    #[error("a token of type '{0}' is not accepted here")]
    WrongType(String),
    #[error("the header has no kid")]
    KidMissing,
    #[error("key '{0}' is not in the issuer's key set")]
    KidUnknown(String),
    #[error("the signing keys could not be loaded from {source_url}: {reason}")]
    KeysUnavailable { source_url: String, reason: String },
    #[error("key '{kid}' cannot verify {alg}")]
    KeyMismatch { kid: String, alg: String },
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired { exp: i64 },
    #[error("the token is not valid yet")]
    NotYetValid { nbf: i64 },
    #[error("the token was issued in the future")]
    IssuedInFuture { iat: i64 },
    #[error("required claim '{0}' is missing")]
    MissingClaim(String),
    #[error("claim '{0}' is not a numeric date")]
    BadDate(String),
    #[error("issuer '{0}' is not accepted here")]
    IssuerMismatch(String),
    #[error("audience '{}' is not accepted here", .0.join(","))]
    AudienceMismatch(Vec<String>),
}

/// What a key source answers for a `kid`.
#[derive(Debug, Clone, Default)]
pub struct KeyMatch {
    /// Keys named by the `kid` (at most one), or every key when the token names none.
    pub keys: Vec<Arc<VerificationKey>>,
    /// Issuers the key source vouches for (discovery documents), for [`Issuers::Discovered`].
    pub issuers: Vec<String>,
}

/// Where a verifier gets keys: a [`super::KeyCache`], a [`KeySet`], or a part's own store (the
/// STS's signing keys). An unknown `kid` is an empty [`KeyMatch`]; an unavailable source is
/// [`VerifyError::KeysUnavailable`].
pub trait KeyLookup: Send + Sync {
    fn lookup(
        &self,
        kid: Option<&str>,
    ) -> impl Future<Output = Result<KeyMatch, VerifyError>> + Send;
}

impl KeyLookup for KeySet {
    async fn lookup(&self, kid: Option<&str>) -> Result<KeyMatch, VerifyError> {
        Ok(KeyMatch {
            keys: self.candidates(kid),
            issuers: self.issuers.clone(),
        })
    }
}

impl<T: KeyLookup> KeyLookup for Arc<T> {
    fn lookup(
        &self,
        kid: Option<&str>,
    ) -> impl Future<Output = Result<KeyMatch, VerifyError>> + Send {
        (**self).lookup(kid)
    }
}

/// Which issuers are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issuers {
    /// The caller has matched the issuer itself (it chose the key source by it).
    Any,
    /// Exactly one of these.
    OneOf(Vec<String>),
    /// One the key source vouches for (its discovery documents), or one of these.
    Discovered { also: Vec<String> },
}

/// Which audiences are accepted (any `aud` value matching one is enough).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audiences {
    /// The caller checks the audience itself (e.g. identifier URIs from the directory).
    Any,
    OneOf(Vec<String>),
}

/// Header `typ` values a verifier accepts; an absent `typ` is always accepted. Compared without
/// case and without an `application/` prefix (RFC 7515 §4.1.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Typ {
    /// `JWT` and `at+jwt` (RFC 9068).
    AccessToken,
    /// `JWT` and `client-authentication+jwt` (client assertions, RFC 7523).
    Assertion,
    /// `agentid-revocations+jwt` only (the revocation feed, docs/sts.md §17; the feed's
    /// reader also refuses an absent `typ`).
    RevocationFeed,
}

impl Typ {
    fn accepts(self, typ: &str) -> bool {
        let t = typ.to_ascii_lowercase();
        let t = t.strip_prefix("application/").unwrap_or(&t);
        match self {
            Typ::AccessToken => t == "jwt" || t == "at+jwt",
            Typ::Assertion => t == "jwt" || t == "client-authentication+jwt",
            Typ::RevocationFeed => t == crate::revocation::FEED_TYP,
        }
    }
}

/// What the token must be used for, judged from its claims (Entra tokens all say `typ: JWT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    Any,
    /// An access token for an API: it names the client that obtained it (`azp`/`appid`), so it
    /// is no ID token, and its audience is not the token-exchange resource (T1 and T2′ are
    /// credentials, never API tokens).
    Access,
}

/// The parameters of a verifier. Each part builds one from its configuration.
#[derive(Debug, Clone)]
pub struct Verifier {
    pub algorithms: Vec<Alg>,
    pub issuers: Issuers,
    pub audiences: Audiences,
    /// Seconds of clock skew tolerated on `exp`, `nbf` and (when checked) `iat`.
    pub skew: i64,
    /// Claims that must be present (e.g. `exp`).
    pub required_claims: Vec<String>,
    /// A token without `kid` is refused ([`VerifyError::KidMissing`]); otherwise every key of
    /// the source is tried.
    pub require_kid: bool,
    pub typ: Typ,
    pub token_use: TokenUse,
    /// `iat` in the future (beyond the skew) is refused.
    pub check_iat: bool,
}

/// The result of a successful check: which algorithm and key verified it.
#[derive(Debug, Clone)]
pub struct Verification {
    pub alg: Alg,
    pub kid: Option<String>,
    /// The issuers the key source vouched for (to re-check claims later, e.g. on a cache hit).
    pub issuers: Vec<String>,
}

/// `exp`, `nbf`, `iat`: the claims compared with the clock.
const TIME_CLAIMS: [&str; 3] = ["exp", "nbf", "iat"];

impl Verifier {
    /// A verifier of `algorithms` with no issuer or audience restriction (set them), `exp`
    /// required, 60 s skew, access-token `typ`, any token use.
    pub fn new(algorithms: &[Alg]) -> Verifier {
        Verifier {
            algorithms: algorithms.to_vec(),
            issuers: Issuers::Any,
            audiences: Audiences::Any,
            skew: 60,
            required_claims: vec!["exp".into()],
            require_kid: false,
            typ: Typ::AccessToken,
            token_use: TokenUse::Any,
            check_iat: false,
        }
    }

    pub fn issuers(mut self, issuers: Issuers) -> Self {
        self.issuers = issuers;
        self
    }
    pub fn audiences(mut self, audiences: Audiences) -> Self {
        self.audiences = audiences;
        self
    }
    pub fn skew(mut self, seconds: i64) -> Self {
        self.skew = seconds;
        self
    }
    pub fn required_claims(mut self, claims: &[&str]) -> Self {
        self.required_claims = claims.iter().map(|c| c.to_string()).collect();
        self
    }
    pub fn require_kid(mut self, yes: bool) -> Self {
        self.require_kid = yes;
        self
    }
    pub fn typ(mut self, typ: Typ) -> Self {
        self.typ = typ;
        self
    }
    pub fn token_use(mut self, token_use: TokenUse) -> Self {
        self.token_use = token_use;
        self
    }
    pub fn check_iat(mut self, yes: bool) -> Self {
        self.check_iat = yes;
        self
    }

    /// Step 1: the header alone. Callers that choose a key source by the (unverified) issuer
    /// call this first, so that no lookup happens for a token refused anyway.
    pub fn check_header(&self, jwt: &UnverifiedJwt) -> Result<Alg, VerifyError> {
        if jwt.header.contains_key("crit") {
            return Err(VerifyError::Crit);
        }
        let name = match jwt.header.get("alg") {
            None => return Err(VerifyError::MissingAlg),
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(VerifyError::Malformed("alg is not a string".into())),
        };
        let alg = Alg::parse(name)
            .filter(|a| self.algorithms.contains(a))
            .ok_or_else(|| VerifyError::AlgNotAllowed(shown(name)))?;
        match jwt.header.get("typ") {
            None => {}
            Some(Value::String(t)) if self.typ.accepts(t) => {}
            Some(Value::String(t)) => return Err(VerifyError::WrongType(shown(t))),
            Some(_) => return Err(VerifyError::Malformed("typ is not a string".into())),
        }
        Ok(alg)
    }

    /// Steps 1–5 with keys from `keys`, the clock at `now` (Unix seconds).
    pub async fn verify<K: KeyLookup + ?Sized>(
        &self,
        jwt: &UnverifiedJwt,
        keys: &K,
        now: i64,
    ) -> Result<Verification, VerifyError> {
        let alg = self.check_header(jwt)?;
        let kid = match jwt.header.get("kid") {
            None => None,
            Some(Value::String(k)) if !k.is_empty() => Some(k.as_str()),
            Some(Value::String(_)) => None,
            Some(_) => return Err(VerifyError::Malformed("kid is not a string".into())),
        };
        if kid.is_none() && self.require_kid {
            return Err(VerifyError::KidMissing);
        }
        // A kid no key set holds (absurdly long, say) is unknown without asking the source.
        let found = match kid {
            Some(k) if k.chars().count() > super::key::MAX_KID_CHARS => KeyMatch::default(),
            _ => keys.lookup(kid).await?,
        };
        if found.keys.is_empty() {
            return Err(match kid {
                Some(k) => VerifyError::KidUnknown(shown(k)),
                None => VerifyError::KeyMismatch {
                    kid: "(none)".into(),
                    alg: alg.to_string(),
                },
            });
        }
        let key = self.verify_signature(jwt, alg, kid, &found.keys)?;
        self.check_claims(&jwt.claims, now, &found.issuers)?;
        Ok(Verification {
            alg,
            kid: key.kid.clone(),
            issuers: found.issuers,
        })
    }

    /// Steps 3–4 over `candidates`: the first key that fits the algorithm and verifies.
    pub fn verify_signature(
        &self,
        jwt: &UnverifiedJwt,
        alg: Alg,
        kid: Option<&str>,
        candidates: &[Arc<VerificationKey>],
    ) -> Result<Arc<VerificationKey>, VerifyError> {
        let mut fitting = candidates.iter().filter(|k| k.accepts(alg)).peekable();
        if fitting.peek().is_none() {
            return Err(VerifyError::KeyMismatch {
                kid: shown(kid.unwrap_or("(none)")),
                alg: alg.to_string(),
            });
        }
        let (message, signature) = jwt.signing_input();
        fitting
            .find(|k| k.verify(alg, message, signature))
            .cloned()
            .ok_or(VerifyError::BadSignature)
    }

    /// Step 5: claims, against the clock at `now` and the issuers the key source vouches for.
    /// Also what a cache of verified tokens re-checks on every hit.
    pub fn check_claims(
        &self,
        claims: &Map<String, Value>,
        now: i64,
        discovered_issuers: &[String],
    ) -> Result<(), VerifyError> {
        for name in &self.required_claims {
            if !claims.contains_key(name) {
                return Err(VerifyError::MissingClaim(name.clone()));
            }
        }
        let mut times = [None; 3];
        for (slot, name) in times.iter_mut().zip(TIME_CLAIMS) {
            if let Some(v) = claims.get(name) {
                *slot = Some(numeric_date(v).ok_or_else(|| VerifyError::BadDate(name.into()))?);
            }
        }
        let [exp, nbf, iat] = times;
        // Expired once now reaches exp + skew; not yet valid while nbf is beyond now + skew.
        if let Some(exp) = exp
            && now >= exp.saturating_add(self.skew)
        {
            return Err(VerifyError::Expired { exp });
        }
        if let Some(nbf) = nbf
            && nbf > now.saturating_add(self.skew)
        {
            return Err(VerifyError::NotYetValid { nbf });
        }
        if self.check_iat
            && let Some(iat) = iat
            && iat > now.saturating_add(self.skew)
        {
            return Err(VerifyError::IssuedInFuture { iat });
        }
        let iss = claims.get("iss").and_then(Value::as_str);
        let issuer_ok = match &self.issuers {
            Issuers::Any => true,
            Issuers::OneOf(list) => iss.is_some_and(|i| list.iter().any(|l| l == i)),
            Issuers::Discovered { also } => {
                iss.is_some_and(|i| discovered_issuers.iter().chain(also.iter()).any(|l| l == i))
            }
        };
        if !issuer_ok {
            return Err(VerifyError::IssuerMismatch(shown(iss.unwrap_or(""))));
        }
        if let Audiences::OneOf(accepted) = &self.audiences {
            let auds = audiences(claims);
            if !auds.iter().any(|a| accepted.iter().any(|c| c == a)) {
                return Err(VerifyError::AudienceMismatch(
                    auds.iter().take(10).map(|a| shown(a)).collect(),
                ));
            }
        }
        if self.token_use == TokenUse::Access {
            let client = ["azp", "appid"].iter().any(|c| {
                claims
                    .get(*c)
                    .and_then(Value::as_str)
                    .is_some_and(|v| !v.is_empty())
            });
            if !client {
                return Err(VerifyError::WrongType("ID token".into()));
            }
            if audiences(claims).contains(&crate::wellknown::TOKEN_EXCHANGE_APP_ID) {
                return Err(VerifyError::WrongType("token-exchange credential".into()));
            }
        }
        Ok(())
    }
}

/// `aud` as a list, whether it was sent as a string or an array.
fn audiences(claims: &Map<String, Value>) -> Vec<&str> {
    match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    }
}

/// A value from the token as it may appear in an error: at most 200 characters, no controls.
fn shown(v: &str) -> String {
    v.chars().filter(|c| !c.is_control()).take(200).collect()
}
