//! The bearer check both demo services put in front of everything: an access token from the
//! configured authority (signature against its published JWKS, exact issuer, our audience,
//! lifetime), refused with a 401 that says in identity terms what is wrong with it.

use agentid_claims::UnverifiedJwt;
use agentid_claims::jwt::short_hash;
use agentid_claims::verify::{
    Alg, Audiences, FetchPolicy, Fetcher, Issuers, KeyCache, RefreshPolicy, Typ, Verifier,
    VerifyError,
};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use http::StatusCode;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Which tokens a service accepts.
#[derive(Debug, Clone)]
pub struct TokenCheck {
    /// Where the authority publishes its signing keys (e.g. `{authority}/discovery/keys`).
    pub jwks_url: String,
    /// Exact `iss` value (agentid's v1 issuer is `{base}/{tid}/`, with the trailing slash).
    pub issuer: String,
    /// Must be one of the token's `aud` values.
    pub audience: String,
    /// PEM CA certificate(s) trusted for the JWKS fetch, in addition to the built-in roots.
    pub ca_pem: Option<String>,
}

/// Clock skew tolerated on `exp` and `nbf`, as Microsoft.IdentityModel does by default (5 min
/// there; one minute is plenty on one machine and keeps expired tokens visibly expired).
const SKEW_SECS: i64 = 60;
/// A token naming a `kid` we do not know triggers at most one JWKS refetch per this interval,
/// so a stream of forged tokens cannot make us hammer the authority.
const REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Keys are refreshed at least this often even when every token's `kid` is known, so retired
/// keys stop being accepted.
const KEYS_TTL: Duration = Duration::from_secs(3600);
/// While the authority's keys could not be fetched at all, a request tries again at most this
/// often.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no access token was presented: send 'Authorization: Bearer <token>' with a token for {0}"
    )]
    Missing(String),
    #[error("the Authorization header is not a bearer token: send 'Authorization: Bearer <token>'")]
    NotBearer,
    #[error("the bearer is not a JWT access token ({0})")]
    Malformed(String),
    #[error("the token is signed with '{0}'; only RS256 and ES256 tokens are accepted")]
    Algorithm(String),
    #[error("the token's header asks for what this service does not support ({0})")]
    Header(String),
    #[error(
        "the token's signing key ({0}) is not published by the trusted authority: it was not issued by it"
    )]
    UnknownKey(String),
    #[error(
        "the token's signature is invalid: it was altered or not issued by the trusted authority"
    )]
    BadSignature,
    #[error("the token was issued by {got}, but this service trusts only tokens issued by {want}")]
    Issuer { got: String, want: String },
    #[error(
        "the token is meant for {got}, not for this service: request a token for the audience {want}"
    )]
    Audience { got: String, want: String },
    #[error("the token expired at {0}: get a new one")]
    Expired(String),
    #[error("the token is not valid before {0}")]
    NotYetValid(String),
    #[error("the token has no expiry (exp claim)")]
    NoExpiry,
    #[error("the trusted authority's signing keys could not be fetched from {url}: {why}")]
    Keys { url: String, why: String },
}

impl AuthError {
    /// Key-fetch failures are ours, not the caller's: they are a 503, everything else a 401.
    fn status(&self) -> StatusCode {
        match self {
            AuthError::Keys { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        let status = self.status();
        if status != StatusCode::UNAUTHORIZED {
            let body = json!({"error": {"code": "temporarily_unavailable", "message": message}});
            return (status, axum::Json(body)).into_response();
        }
        // error_description must be a quoted-string: keep it to printable ASCII without quotes.
        let description: String = message
            .chars()
            .map(|c| {
                if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                    c
                } else {
                    '\''
                }
            })
            .collect();
        let challenge =
            format!("Bearer error=\"invalid_token\", error_description=\"{description}\"");
        let body = json!({"error": {"code": "invalid_token", "message": message}});
        let mut resp = (status, axum::Json(body)).into_response();
        if let Ok(v) = http::HeaderValue::from_str(&challenge) {
            resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, v);
        } else {
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        resp
    }
}

/// A token that passed the check, put into the request's extensions for the handlers. Its
/// `Debug` shows only the token's id, never the token.
#[derive(Clone, Debug)]
pub struct Caller(pub Arc<UnverifiedJwt>);

impl Caller {
    pub fn claims(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.0.claims
    }
}

/// Verifies bearer tokens against one authority; keeps that authority's keys cached.
pub struct Validator {
    check: TokenCheck,
    keys: KeyCache,
    verifier: Verifier,
}

impl Validator {
    pub fn new(check: TokenCheck, http: reqwest::Client) -> Self {
        let keys = KeyCache::url(
            &check.jwks_url,
            RefreshPolicy {
                max_age: KEYS_TTL,
                unknown_kid_floor: REFETCH_INTERVAL,
                retry_floor: RETRY_INTERVAL,
                background: false,
                require_kid: false,
            },
            FetchPolicy {
                timeout: Duration::from_secs(10),
                max_bytes: 1 << 20,
                allow_http: true, // the URL was checked when the service started
                allow_private: true,
                ca_bundle: None,
            },
            Fetcher::configured(http),
        );
        let verifier = Verifier::new(&[Alg::RS256, Alg::ES256])
            .issuers(Issuers::OneOf(vec![check.issuer.clone()]))
            .audiences(Audiences::OneOf(vec![check.audience.clone()]))
            .skew(SKEW_SECS)
            .required_claims(&["exp"])
            .typ(Typ::AccessToken);
        Self {
            check,
            keys,
            verifier,
        }
    }

    pub fn audience(&self) -> &str {
        &self.check.audience
    }

    /// Checks `raw` and returns the parsed token.
    pub async fn validate(&self, raw: &str) -> Result<UnverifiedJwt, AuthError> {
        self.validate_at(raw, Utc::now().timestamp()).await
    }

    pub async fn validate_at(&self, raw: &str, now: i64) -> Result<UnverifiedJwt, AuthError> {
        let jwt = UnverifiedJwt::parse(raw).map_err(|e| AuthError::Malformed(e.to_string()))?;
        match self.verifier.verify(&jwt, &self.keys, now).await {
            Ok(_) => Ok(jwt),
            Err(e) => Err(self.refusal(e)),
        }
    }

    fn refusal(&self, e: VerifyError) -> AuthError {
        match e {
            VerifyError::Malformed(why) | VerifyError::BadDate(why) => AuthError::Malformed(why),
            VerifyError::MissingAlg => AuthError::Algorithm(String::new()),
            VerifyError::AlgNotAllowed(alg) => AuthError::Algorithm(alg),
            VerifyError::Crit => AuthError::Header("crit".into()),
            VerifyError::WrongType(t) => AuthError::Header(format!("typ {t}")),
            VerifyError::KidMissing => AuthError::UnknownKey("no kid".into()),
            VerifyError::KidUnknown(kid) => AuthError::UnknownKey(format!("kid {kid}")),
            VerifyError::KeysUnavailable { source_url, reason } => AuthError::Keys {
                url: source_url,
                why: reason,
            },
            VerifyError::KeyMismatch { .. } | VerifyError::BadSignature => AuthError::BadSignature,
            VerifyError::Expired { exp } => AuthError::Expired(when(exp)),
            VerifyError::NotYetValid { nbf } => AuthError::NotYetValid(when(nbf)),
            VerifyError::IssuedInFuture { iat } => AuthError::NotYetValid(when(iat)),
            VerifyError::MissingClaim(c) if c == "exp" => AuthError::NoExpiry,
            VerifyError::MissingClaim(c) => AuthError::Malformed(format!("no {c} claim")),
            VerifyError::IssuerMismatch(got) => AuthError::Issuer {
                got: if got.is_empty() { "(none)".into() } else { got },
                want: self.check.issuer.clone(),
            },
            VerifyError::AudienceMismatch(auds) => AuthError::Audience {
                got: if auds.is_empty() {
                    "no audience".into()
                } else {
                    auds.join(", ")
                },
                want: self.check.audience.clone(),
            },
        }
    }
}

fn when(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339())
        .unwrap_or_else(|| t.to_string())
}

/// reqwest's top-level error hides the cause (certificate, refused connection): show the chain.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    agentid_claims::verify::fetch::error_chain(e)
}

/// The bearer token of a request: `Ok(None)` when there is no Authorization header.
fn bearer(headers: &http::HeaderMap) -> Result<Option<&str>, AuthError> {
    let Some(v) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| AuthError::NotBearer)?;
    let (scheme, token) = v.split_once(' ').ok_or(AuthError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::NotBearer);
    }
    Ok(Some(token.trim()))
}

/// axum middleware: admits requests with a valid bearer, adding [`Caller`] to their extensions.
pub async fn require_bearer(
    State(v): State<Arc<Validator>>,
    mut req: Request,
    next: Next,
) -> Response {
    let token = match bearer(req.headers()) {
        Ok(Some(t)) => t.to_string(),
        Ok(None) => {
            tracing::info!(path = %req.uri().path(), "refused a request without a bearer token");
            return AuthError::Missing(v.audience().to_string()).into_response();
        }
        Err(e) => return e.into_response(),
    };
    match v.validate(&token).await {
        Ok(jwt) => {
            tracing::debug!(token = %jwt.log_id(), path = %req.uri().path(), "bearer accepted");
            req.extensions_mut().insert(Caller(Arc::new(jwt)));
            next.run(req).await
        }
        Err(e) => {
            // Never the token itself: its id if it parses, else a short hash.
            let id = UnverifiedJwt::parse(&token)
                .map(|j| j.log_id())
                .unwrap_or_else(|_| short_hash(&token));
            tracing::info!(token = %id, reason = %e, "refused a bearer token");
            e.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_forms() {
        let mut h = http::HeaderMap::new();
        assert!(matches!(bearer(&h), Ok(None)));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert!(matches!(bearer(&h), Err(AuthError::NotBearer)));
        h.insert("authorization", "bearer  abc.def.ghi ".parse().unwrap());
        assert_eq!(bearer(&h).unwrap(), Some("abc.def.ghi"));
        h.insert("authorization", "Bearer".parse().unwrap());
        assert!(matches!(bearer(&h), Err(AuthError::NotBearer)));
    }

    #[test]
    fn refusal_is_a_401_with_a_challenge() {
        let r = AuthError::Audience {
            got: "api://other".into(),
            want: "api://me".into(),
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let c = r.headers()[http::header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap();
        assert!(c.starts_with("Bearer error=\"invalid_token\""), "{c}");
        assert!(c.contains("api://other"), "{c}");
    }
}
