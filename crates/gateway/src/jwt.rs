//! Inbound JWT validation (`jwtAuth`): the gateway's parameters over the shared verifier and
//! key cache of `agentid_claims::verify`.
//!
//! API used by the rest of the gateway:
//! - [`JwksRegistry::new`] once per process with the `agentid.jwt` [`JwtSettings`] and a
//!   `reqwest::Client` (already configured with extra CA roots). It owns one key cache per JWKS
//!   URL, shared by every route and provider and surviving reloads while some compiled config
//!   uses it, plus the verified-token cache. [`JwksRegistry::metrics`] exposes
//!   `jwks_refreshes_total` / `jwks_keys` values as plain numbers for the prometheus wiring.
//! - [`JwtAuth::compile`] per `jwtAuth` policy: checks the spec (file and inline key sets are
//!   read and must hold a usable key; URLs must be https except loopback; only
//!   `exp nbf aud iss sub` are recognized `requiredClaims`). Compiling registers URL caches,
//!   whose first fetch starts in the background (never blocking) when a tokio runtime is
//!   running; without one (e.g. `--validate-only`) nothing is fetched.
//! - [`JwtAuth::authenticate`] per request → [`AuthOutcome`]. The caller removes the
//!   credential header from what goes upstream in every case.
//! - [`JwtAuth::reload_files`] re-reads `jwks.file` sources (the caller watches the files).
//!
//! Tokens never appear in logs: a failure is logged with a short hash of the token only.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agentid_claims::Identity;
use agentid_claims::jwt::{UnverifiedJwt, short_hash};
use agentid_claims::verify::{
    Alg, Audiences, FetchPolicy, Fetcher, Issuers, KeyCache, KeySource, RefreshPolicy, SourceError,
    Typ, Verifier, VerifyError, WeakKeyCache,
};
pub use agentid_claims::verify::{RefreshCount, Trigger};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Largest JWKS document accepted from a URL.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Claims `requiredClaims` may name.
const KNOWN_REQUIRED_CLAIMS: [&str; 5] = ["exp", "nbf", "aud", "iss", "sub"];

/// The algorithms `jwtAuth` accepts.
const ALGORITHMS: [Alg; 2] = [Alg::RS256, Alg::ES256];

#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    #[error("jwtAuth has no provider")]
    NoProviders,
    #[error("jwks.url '{url}' is not usable: {reason}")]
    JwksUrl { url: String, reason: String },
    #[error("jwks.file '{path}' cannot be read: {error}")]
    JwksFile { path: PathBuf, error: String },
    #[error("JWKS from {source_name} is invalid: {reason}")]
    Jwks { source_name: String, reason: String },
    #[error(
        "requiredClaims entry '{0}' is not recognized (only exp, nbf, aud, iss, sub are checked)"
    )]
    UnknownRequiredClaim(String),
    #[error("jwtAuth location: '{0}' is not a valid header name")]
    Header(String),
}

/// `agentid.jwt`.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub clock_skew: Duration,
    pub jwks_refresh_interval: Duration,
    pub jwks_min_refresh_interval: Duration,
    pub jwks_fetch_timeout: Duration,
    /// 0 disables the verified-token cache.
    pub verified_token_cache_size: u64,
}

impl Default for JwtSettings {
    fn default() -> Self {
        JwtSettings {
            clock_skew: Duration::from_secs(60),
            jwks_refresh_interval: Duration::from_secs(3600),
            jwks_min_refresh_interval: Duration::from_secs(30),
            jwks_fetch_timeout: Duration::from_secs(5),
            verified_token_cache_size: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    Url(String),
    File(PathBuf),
    /// The JWKS JSON document itself.
    Inline(String),
}

#[derive(Debug, Clone)]
pub struct ProviderSpec {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks: JwksSource,
    /// Default `["exp"]`.
    pub required_claims: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Strict,
    Optional,
    Permissive,
}

#[derive(Debug, Clone)]
pub struct JwtAuthSpec {
    pub mode: Mode,
    pub providers: Vec<ProviderSpec>,
    /// Header carrying the token; default `authorization`.
    pub header: String,
    /// Scheme prefix, compared case-insensitively. `None` = the default `"Bearer "`;
    /// `Some("")` = the header value is the bare token.
    pub prefix: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Outcomes

/// §6.4 reason codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    TokenMissing,
    TokenMalformed,
    AlgNotAllowed,
    KidMissing,
    KidUnknown,
    SignatureInvalid,
    TokenExpired,
    TokenNotYetValid,
    IssuerMismatch,
    AudienceMismatch,
    ClaimMissing,
    JwksUnavailable,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TokenMissing => "token_missing",
            Reason::TokenMalformed => "token_malformed",
            Reason::AlgNotAllowed => "alg_not_allowed",
            Reason::KidMissing => "kid_missing",
            Reason::KidUnknown => "kid_unknown",
            Reason::SignatureInvalid => "signature_invalid",
            Reason::TokenExpired => "token_expired",
            Reason::TokenNotYetValid => "token_not_yet_valid",
            Reason::IssuerMismatch => "issuer_mismatch",
            Reason::AudienceMismatch => "audience_mismatch",
            Reason::ClaimMissing => "claim_missing",
            Reason::JwksUnavailable => "jwks_unavailable",
        }
    }

    /// 503 when keys could never be loaded (not the caller's fault), else 401.
    pub fn status(self) -> u16 {
        match self {
            Reason::JwksUnavailable => 503,
            _ => 401,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    pub reason: Reason,
    /// Human-readable detail; never contains the token.
    pub message: String,
    pub status: u16,
    /// `uti`/`jti` or a short hash of the token, for logs and audit; `None` when missing.
    pub token_log_id: Option<String>,
}

impl AuthFailure {
    pub(crate) fn new(reason: Reason, message: impl Into<String>) -> AuthFailure {
        AuthFailure {
            reason,
            message: message.into(),
            status: reason.status(),
            token_log_id: None,
        }
    }

    /// The `WWW-Authenticate` value of §6.4.
    pub fn www_authenticate(&self) -> String {
        match self.reason {
            Reason::TokenMissing => r#"Bearer realm="agentid""#.to_string(),
            r => format!(
                r#"Bearer realm="agentid", error="invalid_token", error_description="{}""#,
                r.as_str()
            ),
        }
    }
}

/// The raw validated token: only for `passthrough` and on-behalf-of. Debug never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretToken(Arc<str>);

impl SecretToken {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretToken(<redacted {}>)", short_hash(&self.0))
    }
}

#[derive(Debug)]
pub struct Verified {
    pub claims: Map<String, Value>,
    pub identity: Identity,
    pub token: SecretToken,
    /// `exp`, whole seconds.
    pub exp: i64,
    /// `uti`, else `jti`.
    pub token_id: Option<String>,
    /// The provider's issuer that validated the token.
    pub issuer: String,
}

impl Verified {
    /// How the token is named in logs and audit: `uti`/`jti`, else a short hash.
    pub fn log_id(&self) -> String {
        self.token_id
            .clone()
            .unwrap_or_else(|| short_hash(self.token.expose()))
    }
}

#[derive(Debug, Clone)]
pub enum AuthOutcome {
    Authenticated(Arc<Verified>),
    /// `optional`/`permissive` without a token, or `permissive` with a failing one (the
    /// failure is kept for audit and metrics).
    Anonymous(Option<AuthFailure>),
    Rejected(AuthFailure),
}

impl AuthFailure {
    /// The refusal the shared verifier's error stands for.
    fn from_verify(e: VerifyError) -> AuthFailure {
        let reason = match &e {
            VerifyError::Malformed(_)
            | VerifyError::MissingAlg
            | VerifyError::Crit
            | VerifyError::WrongType(_)
            | VerifyError::BadDate(_) => Reason::TokenMalformed,
            VerifyError::AlgNotAllowed(_) => Reason::AlgNotAllowed,
            VerifyError::KidMissing => Reason::KidMissing,
            VerifyError::KidUnknown(_) => Reason::KidUnknown,
            VerifyError::KeysUnavailable { .. } => Reason::JwksUnavailable,
            VerifyError::KeyMismatch { .. } | VerifyError::BadSignature => Reason::SignatureInvalid,
            VerifyError::Expired { .. } => Reason::TokenExpired,
            VerifyError::NotYetValid { .. } | VerifyError::IssuedInFuture { .. } => {
                Reason::TokenNotYetValid
            }
            VerifyError::MissingClaim(_) => Reason::ClaimMissing,
            VerifyError::IssuerMismatch(_) => Reason::IssuerMismatch,
            VerifyError::AudienceMismatch(_) => Reason::AudienceMismatch,
        };
        let message = match e {
            VerifyError::AlgNotAllowed(a) => {
                format!("algorithm '{a}' is not allowed (RS256, ES256)")
            }
            VerifyError::KeysUnavailable { .. } => {
                "the issuer's signing keys could not be loaded".to_string()
            }
            other => other.to_string(),
        };
        AuthFailure::new(reason, message)
    }
}

/// `jwks_refreshes_total` / `jwks_keys` of one JWKS URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksMetrics {
    pub url: String,
    /// Usable keys in the current set (0 when never loaded).
    pub keys: usize,
    pub refreshes: Vec<RefreshCount>,
}

// ---------------------------------------------------------------------------------------------
// Registry and verified-token cache

struct CachedToken {
    verified: Arc<Verified>,
    kid: String,
    source_id: Arc<str>,
}

/// Process-wide key caches (one per JWKS URL) and the verified-token cache.
pub struct JwksRegistry {
    settings: JwtSettings,
    fetcher: Arc<Fetcher>,
    urls: Mutex<HashMap<String, WeakKeyCache>>,
    verified: Option<moka::future::Cache<[u8; 32], Arc<CachedToken>>>,
}

struct ExpireAtExp {
    skew: Duration,
}

impl moka::Expiry<[u8; 32], Arc<CachedToken>> for ExpireAtExp {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<CachedToken>,
        _created_at: Instant,
    ) -> Option<Duration> {
        let until = value.verified.exp.saturating_sub(now_secs());
        Some(Duration::from_secs(until.max(0) as u64) + self.skew)
    }
}

impl JwksRegistry {
    pub fn new(settings: JwtSettings, http: reqwest::Client) -> Arc<JwksRegistry> {
        let verified = (settings.verified_token_cache_size > 0).then(|| {
            moka::future::Cache::builder()
                .max_capacity(settings.verified_token_cache_size)
                .expire_after(ExpireAtExp {
                    skew: settings.clock_skew,
                })
                .build()
        });
        Arc::new(JwksRegistry {
            settings,
            fetcher: Fetcher::configured(http),
            urls: Mutex::new(HashMap::new()),
            verified,
        })
    }

    pub fn settings(&self) -> &JwtSettings {
        &self.settings
    }

    /// The fetcher the key caches use (the revocation feed's pollers share it).
    pub fn fetcher(&self) -> Arc<Fetcher> {
        self.fetcher.clone()
    }

    fn refresh_policy(&self) -> RefreshPolicy {
        RefreshPolicy {
            max_age: self.settings.jwks_refresh_interval,
            unknown_kid_floor: self.settings.jwks_min_refresh_interval,
            retry_floor: self.settings.jwks_min_refresh_interval,
            background: true,
            require_kid: true,
        }
    }

    fn fetch_policy(&self) -> FetchPolicy {
        FetchPolicy {
            timeout: self.settings.jwks_fetch_timeout,
            max_bytes: MAX_JWKS_BYTES,
            allow_http: true, // checked at compile: loopback only
            allow_private: true,
            ca_bundle: None,
        }
    }

    fn url_cache(&self, url: &str) -> Result<KeyCache, SourceError> {
        let mut urls = self.urls.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = urls.get(url).and_then(WeakKeyCache::upgrade) {
            return Ok(existing);
        }
        let cache = KeyCache::new(
            KeySource::Url(url.to_string()),
            self.refresh_policy(),
            self.fetch_policy(),
            self.fetcher.clone(),
        )?;
        urls.retain(|_, w| w.is_alive());
        urls.insert(url.to_string(), cache.downgrade());
        Ok(cache)
    }

    /// `jwks_refreshes_total` / `jwks_keys` of every JWKS URL in use.
    pub fn metrics(&self) -> Vec<JwksMetrics> {
        let urls = self.urls.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<JwksMetrics> = urls
            .iter()
            .filter_map(|(url, w)| {
                let c = w.upgrade()?;
                Some(JwksMetrics {
                    url: url.clone(),
                    keys: c.key_count(),
                    refreshes: c.refresh_counts(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.url.cmp(&b.url));
        out
    }

    /// `jwks_refreshes_total{jwks=url, trigger}` summed over results.
    pub fn refresh_count(&self, url: &str, trigger: Trigger) -> u64 {
        self.metrics()
            .into_iter()
            .filter(|m| m.url == url)
            .flat_map(|m| m.refreshes)
            .filter(|r| r.trigger == trigger.as_str())
            .map(|r| r.count)
            .sum()
    }
}

// ---------------------------------------------------------------------------------------------
// Compiled policy

struct Provider {
    issuer: String,
    verifier: Verifier,
    keys: KeyCache,
    /// Identifies the key source in the verified-token cache.
    source_id: Arc<str>,
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn static_error(source: &JwksSource, e: SourceError) -> JwtConfigError {
    match (source, e) {
        (JwksSource::File(path), SourceError::File { error, .. }) => JwtConfigError::JwksFile {
            path: path.clone(),
            error,
        },
        (JwksSource::File(path), other) => JwtConfigError::Jwks {
            source_name: path.display().to_string(),
            reason: other.to_string(),
        },
        (_, other) => JwtConfigError::Jwks {
            source_name: "inline jwks".to_string(),
            reason: other.to_string(),
        },
    }
}

/// A compiled `jwtAuth` policy.
pub struct JwtAuth {
    mode: Mode,
    header: http::HeaderName,
    prefix: String,
    providers: Vec<Provider>,
    registry: Arc<JwksRegistry>,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("mode", &self.mode)
            .field("header", &self.header)
            .field(
                "issuers",
                &self.providers.iter().map(|p| &p.issuer).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl JwtAuth {
    /// Each provider's issuer and key cache: the revocation feed of an issuer is verified
    /// with the keys that verify its tokens (docs/gateway.md §19).
    pub fn provider_keys(&self) -> impl Iterator<Item = (&str, &KeyCache)> {
        self.providers.iter().map(|p| (p.issuer.as_str(), &p.keys))
    }

    pub fn compile(
        spec: JwtAuthSpec,
        registry: &Arc<JwksRegistry>,
    ) -> Result<JwtAuth, JwtConfigError> {
        if spec.providers.is_empty() {
            return Err(JwtConfigError::NoProviders);
        }
        let header_name = if spec.header.is_empty() {
            "authorization"
        } else {
            spec.header.as_str()
        };
        let header = http::HeaderName::from_bytes(header_name.to_ascii_lowercase().as_bytes())
            .map_err(|_| JwtConfigError::Header(spec.header.clone()))?;
        let mut providers = Vec::with_capacity(spec.providers.len());
        for p in spec.providers {
            let required = if p.required_claims.is_empty() {
                vec!["exp".to_string()]
            } else {
                p.required_claims
            };
            if let Some(bad) = required
                .iter()
                .find(|c| !KNOWN_REQUIRED_CLAIMS.contains(&c.as_str()))
            {
                return Err(JwtConfigError::UnknownRequiredClaim(bad.clone()));
            }
            let (keys, source_id): (KeyCache, Arc<str>) = match &p.jwks {
                JwksSource::Url(u) => {
                    let parsed = url::Url::parse(u).map_err(|e| JwtConfigError::JwksUrl {
                        url: u.clone(),
                        reason: e.to_string(),
                    })?;
                    match parsed.scheme() {
                        "https" => {}
                        "http" if is_loopback_host(&parsed) => {}
                        _ => {
                            return Err(JwtConfigError::JwksUrl {
                                url: u.clone(),
                                reason: "https is required (http only for loopback hosts)"
                                    .to_string(),
                            });
                        }
                    }
                    let cache = registry.url_cache(u).map_err(|e| JwtConfigError::JwksUrl {
                        url: u.clone(),
                        reason: e.to_string(),
                    })?;
                    (cache, format!("url:{u}").into())
                }
                JwksSource::File(path) => (
                    KeyCache::new(
                        KeySource::File(path.clone()),
                        registry.refresh_policy(),
                        registry.fetch_policy(),
                        registry.fetcher.clone(),
                    )
                    .map_err(|e| static_error(&p.jwks, e))?,
                    format!("file:{}", path.display()).into(),
                ),
                JwksSource::Inline(doc) => (
                    KeyCache::new(
                        KeySource::Inline(doc.clone()),
                        registry.refresh_policy(),
                        registry.fetch_policy(),
                        registry.fetcher.clone(),
                    )
                    .map_err(|e| static_error(&p.jwks, e))?,
                    format!(
                        "inline:{}",
                        agentid_claims::jwt::hex(&Sha256::digest(doc.as_bytes()))
                    )
                    .into(),
                ),
            };
            let required: Vec<&str> = required.iter().map(String::as_str).collect();
            let verifier = Verifier::new(&ALGORITHMS)
                .issuers(Issuers::OneOf(vec![p.issuer.clone()]))
                .audiences(if p.audiences.is_empty() {
                    Audiences::Any
                } else {
                    Audiences::OneOf(p.audiences.clone())
                })
                .skew(registry.settings.clock_skew.as_secs() as i64)
                .required_claims(&required)
                .require_kid(true)
                .typ(Typ::AccessToken);
            providers.push(Provider {
                issuer: p.issuer,
                verifier,
                keys,
                source_id,
            });
        }
        Ok(JwtAuth {
            mode: spec.mode,
            header,
            prefix: spec.prefix.unwrap_or_else(|| "Bearer ".to_string()),
            providers,
            registry: registry.clone(),
        })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The header that carries the credential (to strip from upstream requests).
    pub fn header(&self) -> &http::HeaderName {
        &self.header
    }

    /// The scheme prefix (`"Bearer "` by default), for re-inserting at `passthrough`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Re-reads `jwks.file` sources. On error the previous keys stay.
    pub fn reload_files(&self) -> Result<(), JwtConfigError> {
        for p in &self.providers {
            if let KeySource::File(path) = p.keys.source() {
                p.keys
                    .reload()
                    .map_err(|e| static_error(&JwksSource::File(path.clone()), e))?;
            }
        }
        Ok(())
    }

    /// One request.
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> AuthOutcome {
        let Some(token) = self.extract(headers) else {
            return match self.mode {
                Mode::Strict => {
                    AuthOutcome::Rejected(AuthFailure::new(Reason::TokenMissing, "no bearer token"))
                }
                Mode::Optional | Mode::Permissive => AuthOutcome::Anonymous(None),
            };
        };
        match self.validate(token).await {
            Ok(v) => AuthOutcome::Authenticated(v),
            Err(mut failure) => {
                let log_id = token_log_id(token);
                tracing::debug!(token = %log_id, reason = failure.reason.as_str(), "bearer token refused");
                failure.token_log_id = Some(log_id);
                match self.mode {
                    Mode::Permissive => AuthOutcome::Anonymous(Some(failure)),
                    Mode::Strict | Mode::Optional => AuthOutcome::Rejected(failure),
                }
            }
        }
    }

    fn extract<'h>(&self, headers: &'h http::HeaderMap) -> Option<&'h str> {
        let value = headers.get(&self.header)?.to_str().ok()?.trim();
        let p = self.prefix.as_str();
        let token = if p.is_empty() {
            value
        } else {
            let head = value.get(..p.len())?;
            if !head.eq_ignore_ascii_case(p) {
                return None;
            }
            value.get(p.len()..)?.trim_start()
        };
        (!token.is_empty()).then_some(token)
    }

    async fn validate(&self, token: &str) -> Result<Arc<Verified>, AuthFailure> {
        let now = now_secs();
        let cache_key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(cache) = &self.registry.verified
            && let Some(hit) = cache.get(&cache_key).await
        {
            // The cache is shared by every route: this route's provider must accept the token.
            if let Some(p) = self
                .providers
                .iter()
                .find(|p| p.issuer == hit.verified.issuer)
                && p.source_id == hit.source_id
                && p.keys.has_kid(&hit.kid)
            {
                p.verifier
                    .check_claims(&hit.verified.claims, now, &[])
                    .map_err(AuthFailure::from_verify)?;
                return Ok(hit.verified.clone());
            }
            // Different provider setup (or the kid was rotated away): full validation below.
        }

        if token.split('.').count() != 3 {
            return Err(AuthFailure::new(
                Reason::TokenMalformed,
                "a JWT has three dot-separated parts (encrypted tokens are not accepted)",
            ));
        }
        let jwt = UnverifiedJwt::parse(token)
            .map_err(|e| AuthFailure::new(Reason::TokenMalformed, e.to_string()))?;
        // The header first, so that key-confusion tricks never reach a key lookup; every
        // provider allows the same algorithms.
        let first = self
            .providers
            .first()
            .ok_or_else(|| AuthFailure::new(Reason::IssuerMismatch, "no provider is configured"))?;
        first
            .verifier
            .check_header(&jwt)
            .map_err(AuthFailure::from_verify)?;
        let iss = jwt.str_claim("iss").unwrap_or("");
        let Some(provider) = self.providers.iter().find(|p| p.issuer == iss) else {
            return Err(AuthFailure::new(
                Reason::IssuerMismatch,
                format!(
                    "issuer '{}' is not accepted here",
                    iss.chars().take(200).collect::<String>()
                ),
            ));
        };
        let checked = provider
            .verifier
            .verify(&jwt, &provider.keys, now)
            .await
            .map_err(AuthFailure::from_verify)?;

        let exp = jwt.time_claim("exp").unwrap_or(i64::MAX);
        let token_id = jwt
            .str_claim("uti")
            .or_else(|| jwt.str_claim("jti"))
            .map(str::to_string);
        let UnverifiedJwt { claims, .. } = jwt;
        let verified = Arc::new(Verified {
            identity: Identity::derive(&claims),
            claims,
            token: SecretToken(Arc::from(token)),
            exp,
            token_id,
            issuer: provider.issuer.clone(),
        });
        // Tokens without exp are not cached: nothing would bound their stay.
        if let Some(cache) = &self.registry.verified
            && exp != i64::MAX
            && let Some(kid) = checked.kid
        {
            cache
                .insert(
                    cache_key,
                    Arc::new(CachedToken {
                        verified: verified.clone(),
                        kid,
                        source_id: provider.source_id.clone(),
                    }),
                )
                .await;
        }
        Ok(verified)
    }
}

/// `uti`/`jti` read without verification, else a short hash: never the token itself.
fn token_log_id(token: &str) -> String {
    UnverifiedJwt::parse(token)
        .ok()
        .and_then(|j| {
            j.str_claim("uti")
                .or_else(|| j.str_claim("jti"))
                .map(|s| s.chars().take(64).collect())
        })
        .unwrap_or_else(|| short_hash(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn www_authenticate_values() {
        let f = AuthFailure::new(Reason::TokenMissing, "x");
        assert_eq!(f.www_authenticate(), r#"Bearer realm="agentid""#);
        let f = AuthFailure::new(Reason::KidUnknown, "x");
        assert!(
            f.www_authenticate()
                .contains(r#"error_description="kid_unknown""#)
        );
        assert_eq!(AuthFailure::new(Reason::JwksUnavailable, "x").status, 503);
    }

    #[test]
    fn secret_token_debug_is_redacted() {
        let t = SecretToken(Arc::from("eyJsecret.payload.sig"));
        assert!(!format!("{t:?}").contains("secret"));
    }
}
