//! The bearer check both demo services put in front of everything: an access token from the
//! configured authority (signature against its published JWKS, exact issuer, our audience,
//! lifetime), refused with a 401 that says in identity terms what is wrong with it.

use agentid_claims::UnverifiedJwt;
use agentid_claims::jwk::JwkSet;
use agentid_claims::jwt::short_hash;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use http::StatusCode;
use jsonwebtoken::Algorithm;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

struct KeyCache {
    keys: Arc<JwkSet>,
    fetched: Option<Instant>,
}

/// Verifies bearer tokens against one authority; keeps that authority's keys cached.
pub struct Validator {
    check: TokenCheck,
    http: reqwest::Client,
    // A tokio mutex held across the fetch: concurrent requests wait for one fetch, not many.
    cache: tokio::sync::Mutex<KeyCache>,
}

impl Validator {
    pub fn new(check: TokenCheck, http: reqwest::Client) -> Self {
        Self {
            check,
            http,
            cache: tokio::sync::Mutex::new(KeyCache {
                keys: Arc::new(JwkSet::default()),
                fetched: None,
            }),
        }
    }

    pub fn audience(&self) -> &str {
        &self.check.audience
    }

    async fn fetch(&self) -> Result<JwkSet, AuthError> {
        let err = |why: String| AuthError::Keys {
            url: self.check.jwks_url.clone(),
            why,
        };
        let resp = self
            .http
            .get(&self.check.jwks_url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| err(error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(err(format!("HTTP {}", resp.status())));
        }
        resp.json::<JwkSet>()
            .await
            .map_err(|e| err(format!("not a JWKS: {e}")))
    }

    /// The key set to verify a token with `kid` against, fetched when missing, stale, or
    /// (rate-limited) when it does not know `kid`.
    async fn keys_for(&self, kid: Option<&str>) -> Result<Arc<JwkSet>, AuthError> {
        let mut cache = self.cache.lock().await;
        let now = Instant::now();
        let age = cache.fetched.map(|t| now.duration_since(t));
        let unknown_kid = kid.is_some_and(|k| cache.keys.candidates(Some(k)).next().is_none());
        let refetch = match age {
            None => true,
            Some(age) => age >= KEYS_TTL || (unknown_kid && age >= REFETCH_INTERVAL),
        };
        if refetch {
            match self.fetch().await {
                Ok(keys) => {
                    tracing::debug!(url = %self.check.jwks_url, keys = keys.keys.len(), "fetched signing keys");
                    cache.keys = Arc::new(keys);
                    cache.fetched = Some(now);
                }
                // With keys in hand, a failed refresh keeps the old ones rather than refusing everyone.
                Err(e) if cache.fetched.is_some() => {
                    tracing::warn!(error = %e, "refreshing signing keys failed; keeping the cached ones");
                    cache.fetched = Some(now);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(cache.keys.clone())
    }

    /// Checks `raw` and returns the parsed token.
    pub async fn validate(&self, raw: &str) -> Result<UnverifiedJwt, AuthError> {
        self.validate_at(raw, Utc::now().timestamp()).await
    }

    pub async fn validate_at(&self, raw: &str, now: i64) -> Result<UnverifiedJwt, AuthError> {
        let jwt = UnverifiedJwt::parse(raw).map_err(|e| AuthError::Malformed(e.to_string()))?;
        let alg_name = jwt.alg().unwrap_or("");
        let alg = match alg_name {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            other => return Err(AuthError::Algorithm(other.to_string())),
        };
        let kid = jwt.kid();
        let keys = self.keys_for(kid).await?;
        let mut tried = false;
        let mut verified = false;
        for key in keys.candidates(kid) {
            let Some(dk) = key.decoding_key() else {
                continue;
            };
            tried = true;
            if jwt.verify(&dk, &[alg]).is_ok() {
                verified = true;
                break;
            }
        }
        if !tried {
            return Err(AuthError::UnknownKey(match kid {
                Some(k) => format!("kid {k}"),
                None => "no kid".into(),
            }));
        }
        if !verified {
            return Err(AuthError::BadSignature);
        }
        let iss = jwt.str_claim("iss").unwrap_or("(none)");
        if iss != self.check.issuer {
            return Err(AuthError::Issuer {
                got: iss.to_string(),
                want: self.check.issuer.clone(),
            });
        }
        let auds = jwt.audiences();
        if !auds.contains(&self.check.audience.as_str()) {
            return Err(AuthError::Audience {
                got: if auds.is_empty() {
                    "no audience".into()
                } else {
                    auds.join(", ")
                },
                want: self.check.audience.clone(),
            });
        }
        let exp = jwt.time_claim("exp").ok_or(AuthError::NoExpiry)?;
        if now > exp + SKEW_SECS {
            return Err(AuthError::Expired(when(exp)));
        }
        if let Some(nbf) = jwt.time_claim("nbf")
            && nbf > now + SKEW_SECS
        {
            return Err(AuthError::NotYetValid(when(nbf)));
        }
        Ok(jwt)
    }
}

fn when(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339())
        .unwrap_or_else(|| t.to_string())
}

/// reqwest's top-level error hides the cause (certificate, refused connection): show the chain.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
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
