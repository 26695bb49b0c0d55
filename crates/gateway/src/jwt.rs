//! Inbound JWT validation and JWKS caches (gateway.md §6).
//!
//! API used by the rest of the gateway:
//! - [`JwksRegistry::new`] once per process with the `agentid.jwt` [`JwtSettings`] and a
//!   `reqwest::Client` (already configured with extra CA roots). It owns one cache per JWKS URL,
//!   shared by every route and provider and surviving reloads while some compiled config uses
//!   it, plus the verified-token cache (§6.2). [`JwksRegistry::metrics`] exposes the §12.1
//!   `jwks_refreshes_total` / `jwks_keys` values as plain numbers for the prometheus wiring.
//! - [`JwtAuth::compile`] per `jwtAuth` policy: checks the spec (§2.4 rule 8: file and inline key
//!   sets are read and must hold a usable key; URLs must be https except loopback; only
//!   `exp nbf aud iss sub` are recognized `requiredClaims`). Compiling registers URL caches,
//!   whose first fetch starts in the background (never blocking) when a tokio runtime is
//!   running; without one (e.g. `--validate-only`) nothing is fetched.
//! - [`JwtAuth::authenticate`] per request → [`AuthOutcome`]. The caller removes the
//!   credential header from what goes upstream in every case (§6.1 step 10).
//! - [`JwtAuth::reload_files`] re-reads `jwks.file` sources (the caller watches the files).
//!
//! Tokens never appear in logs: a failure is logged with a short hash of the token only.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agentid_claims::jwk::Jwk;
use agentid_claims::jwt::{UnverifiedJwt, short_hash};
use arc_swap::ArcSwapOption;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::identity::Identity;

/// Largest JWKS document accepted from a URL.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Claims `requiredClaims` may name.
const KNOWN_REQUIRED_CLAIMS: [&str; 5] = ["exp", "nbf", "aud", "iss", "sub"];

#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    #[error("jwtAuth has no provider")]
    NoProviders,
    #[error("jwks.url '{url}' is not usable: {reason}")]
    JwksUrl { url: String, reason: String },
    #[error("jwks.file '{path}' cannot be read: {error}")]
    JwksFile {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("JWKS from {source_name} is invalid: {reason}")]
    Jwks { source_name: String, reason: String },
    #[error(
        "requiredClaims entry '{0}' is not recognized (only exp, nbf, aud, iss, sub are checked)"
    )]
    UnknownRequiredClaim(String),
    #[error("jwtAuth location: '{0}' is not a valid header name")]
    Header(String),
}

/// `agentid.jwt` (§2.3).
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
    fn new(reason: Reason, message: impl Into<String>) -> AuthFailure {
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

// ---------------------------------------------------------------------------------------------
// Key sets

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
    Rsa { bits: usize },
    EcP256,
}

struct UsableKey {
    kind: KeyType,
    alg: Option<String>,
    use_: Option<String>,
    key: DecodingKey,
}

/// A parsed key set: usable keys by `kid`.
struct KeySet {
    keys: HashMap<String, Arc<UsableKey>>,
}

fn rsa_bits(n_b64: &str) -> Option<usize> {
    let n = URL_SAFE_NO_PAD.decode(n_b64.trim_end_matches('=')).ok()?;
    let first = n.iter().position(|b| *b != 0)?;
    let significant = &n[first..];
    Some((significant.len() - 1) * 8 + (8 - significant[0].leading_zeros() as usize))
}

/// Parses `{"keys":[…]}`, skipping (with a warning) keys without `kid`, for encryption, or of
/// unsupported types. Zero usable keys is an error.
fn parse_key_set(bytes: &[u8], source_name: &str) -> Result<KeySet, String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let Some(list) = doc.get("keys").and_then(Value::as_array) else {
        return Err("no \"keys\" array".to_string());
    };
    let mut keys = HashMap::new();
    for (i, raw) in list.iter().enumerate() {
        let skip =
            |why: &str| tracing::warn!(jwks = %source_name, index = i, "JWKS key skipped: {why}");
        let jwk: Jwk = match serde_json::from_value(raw.clone()) {
            Ok(k) => k,
            Err(_) => {
                skip("not a JWK");
                continue;
            }
        };
        let Some(kid) = jwk.kid.clone().filter(|k| !k.is_empty()) else {
            skip("no kid");
            continue;
        };
        if jwk.use_.as_deref() == Some("enc") {
            skip("use is enc");
            continue;
        }
        let kind = match jwk.kty.as_str() {
            "RSA" => match jwk.n.as_deref().and_then(rsa_bits) {
                Some(bits) => KeyType::Rsa { bits },
                None => {
                    skip("RSA key without a modulus");
                    continue;
                }
            },
            "EC" if jwk.crv.as_deref() == Some("P-256") => KeyType::EcP256,
            _ => {
                skip("unsupported key type");
                continue;
            }
        };
        let Some(key) = jwk.decoding_key() else {
            skip("key material is invalid");
            continue;
        };
        keys.insert(
            kid,
            Arc::new(UsableKey {
                kind,
                alg: jwk.alg.clone(),
                use_: jwk.use_.clone(),
                key,
            }),
        );
    }
    if keys.is_empty() {
        return Err("no usable key (RSA or EC P-256 with a kid)".to_string());
    }
    Ok(KeySet { keys })
}

// ---------------------------------------------------------------------------------------------
// URL caches

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Startup,
    Interval,
    UnknownKid,
}

impl Trigger {
    pub const ALL: [Trigger; 3] = [Trigger::Startup, Trigger::Interval, Trigger::UnknownKid];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Interval => "interval",
            Trigger::UnknownKid => "unknown_kid",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One `jwks_refreshes_total` series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshCount {
    pub trigger: &'static str,
    /// `ok` | `error`.
    pub result: &'static str,
    pub count: u64,
}

/// §12.1 values for one JWKS URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksMetrics {
    pub url: String,
    /// Usable keys in the current set (0 when never loaded).
    pub keys: usize,
    pub refreshes: Vec<RefreshCount>,
}

struct UrlCache {
    url: String,
    settings: JwtSettings,
    http: reqwest::Client,
    keys: ArcSwapOption<KeySet>,
    /// Serializes fetches (single-flight).
    fetch_lock: tokio::sync::Mutex<()>,
    /// Completed fetch attempts; lets a waiter see that someone else fetched meanwhile.
    generation: AtomicU64,
    last_started: Mutex<Option<Instant>>,
    /// [trigger][ok=0 / error=1]
    refreshes: [[AtomicU64; 2]; 3],
}

enum Lookup {
    Found(Arc<UsableKey>),
    Unknown,
    Unavailable,
}

impl UrlCache {
    fn min_interval_passed(&self) -> bool {
        let last = self.last_started.lock().map(|g| *g).unwrap_or(None);
        match last {
            None => true,
            Some(t) => t.elapsed() >= self.settings.jwks_min_refresh_interval,
        }
    }

    fn current(&self, kid: &str) -> Option<Arc<UsableKey>> {
        self.keys.load().as_ref()?.keys.get(kid).cloned()
    }

    /// Fetches unless another fetch completed since `seen_generation` (single-flight).
    async fn refresh(self: Arc<Self>, trigger: Trigger, seen_generation: u64) {
        let _guard = self.fetch_lock.lock().await;
        if self.generation.load(Ordering::Acquire) != seen_generation {
            return;
        }
        if trigger == Trigger::UnknownKid && !self.min_interval_passed() {
            return;
        }
        if let Ok(mut g) = self.last_started.lock() {
            *g = Some(Instant::now());
        }
        let result = self.fetch().await;
        let ok = match result {
            Ok(set) => {
                tracing::info!(jwks = %self.url, trigger = trigger.as_str(), keys = set.keys.len(), "JWKS loaded");
                self.keys.store(Some(Arc::new(set)));
                0
            }
            Err(e) => {
                // The last good set stays in place.
                tracing::warn!(jwks = %self.url, trigger = trigger.as_str(), error = %e, "JWKS fetch failed");
                1
            }
        };
        self.refreshes[trigger.index()][ok].fetch_add(1, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::Release);
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let mut resp = self
            .http
            .get(&self.url)
            .timeout(self.settings.jwks_fetch_timeout)
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        if resp.content_length().unwrap_or(0) > MAX_JWKS_BYTES as u64 {
            return Err("response larger than 1 MiB".to_string());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("reading the body failed: {e}"))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err("response larger than 1 MiB".to_string());
            }
            body.extend_from_slice(&chunk);
        }
        parse_key_set(&body, &self.url)
    }

    /// §6.2: known kid → key; unknown → one refresh if allowed (or joins one in flight), then
    /// look again.
    async fn lookup(self: &Arc<Self>, kid: &str) -> Lookup {
        if let Some(k) = self.current(kid) {
            return Lookup::Found(k);
        }
        let seen = self.generation.load(Ordering::Acquire);
        let in_flight = self.fetch_lock.try_lock().is_err();
        if in_flight || self.min_interval_passed() {
            // Spawned so that a caller giving up (timeout, client gone) never cancels a fetch
            // other requests are waiting on.
            let task = tokio::spawn(self.clone().refresh(Trigger::UnknownKid, seen));
            let _ = tokio::time::timeout(self.settings.jwks_fetch_timeout, task).await;
        }
        match self.keys.load().as_ref() {
            None => Lookup::Unavailable,
            Some(set) => match set.keys.get(kid) {
                Some(k) => Lookup::Found(k.clone()),
                None => Lookup::Unknown,
            },
        }
    }

    fn metrics(&self) -> JwksMetrics {
        let mut refreshes = Vec::new();
        for t in Trigger::ALL {
            for (i, result) in ["ok", "error"].into_iter().enumerate() {
                refreshes.push(RefreshCount {
                    trigger: t.as_str(),
                    result,
                    count: self.refreshes[t.index()][i].load(Ordering::Relaxed),
                });
            }
        }
        JwksMetrics {
            url: self.url.clone(),
            keys: self.keys.load().as_ref().map(|s| s.keys.len()).unwrap_or(0),
            refreshes,
        }
    }
}

/// Background: the startup fetch, then one every `jwksRefreshInterval` while the cache is used.
async fn refresh_loop(cache: Weak<UrlCache>, interval: Duration) {
    let mut trigger = Trigger::Startup;
    loop {
        let Some(c) = cache.upgrade() else { return };
        let seen = c.generation.load(Ordering::Acquire);
        c.refresh(trigger, seen).await;
        trigger = Trigger::Interval;
        tokio::time::sleep(interval).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Registry and verified-token cache

struct CachedToken {
    verified: Arc<Verified>,
    kid: String,
    source_id: Arc<str>,
}

/// Process-wide JWKS caches (one per URL) and the verified-token cache.
pub struct JwksRegistry {
    settings: JwtSettings,
    http: reqwest::Client,
    urls: Mutex<HashMap<String, Weak<UrlCache>>>,
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
        let until = value.verified.exp.saturating_sub(now_secs() as i64);
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
            http,
            urls: Mutex::new(HashMap::new()),
            verified,
        })
    }

    pub fn settings(&self) -> &JwtSettings {
        &self.settings
    }

    fn url_cache(&self, url: &str) -> Arc<UrlCache> {
        let mut urls = match self.urls.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(existing) = urls.get(url).and_then(Weak::upgrade) {
            return existing;
        }
        let cache = Arc::new(UrlCache {
            url: url.to_string(),
            settings: self.settings.clone(),
            http: self.http.clone(),
            keys: ArcSwapOption::empty(),
            fetch_lock: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
            last_started: Mutex::new(None),
            refreshes: Default::default(),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(refresh_loop(
                Arc::downgrade(&cache),
                self.settings.jwks_refresh_interval,
            ));
        }
        urls.retain(|_, w| w.strong_count() > 0);
        urls.insert(url.to_string(), Arc::downgrade(&cache));
        cache
    }

    /// §12.1 values of every JWKS URL in use.
    pub fn metrics(&self) -> Vec<JwksMetrics> {
        let urls = match self.urls.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut out: Vec<JwksMetrics> = urls
            .values()
            .filter_map(Weak::upgrade)
            .map(|c| c.metrics())
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

enum KeySource {
    Url(Arc<UrlCache>),
    Static {
        keys: arc_swap::ArcSwap<KeySet>,
        path: Option<PathBuf>,
    },
}

struct Provider {
    issuer: String,
    audiences: Vec<String>,
    required: Vec<String>,
    keys: KeySource,
    /// Identifies the key source in the verified-token cache.
    source_id: Arc<str>,
}

impl Provider {
    async fn lookup(&self, kid: &str) -> Lookup {
        match &self.keys {
            KeySource::Url(c) => c.lookup(kid).await,
            KeySource::Static { keys, .. } => match keys.load().keys.get(kid) {
                Some(k) => Lookup::Found(k.clone()),
                None => Lookup::Unknown,
            },
        }
    }

    fn has_kid(&self, kid: &str) -> bool {
        match &self.keys {
            KeySource::Url(c) => c.current(kid).is_some(),
            KeySource::Static { keys, .. } => keys.load().keys.contains_key(kid),
        }
    }

    /// §6.1 steps 8–9 (also re-checked on a verified-token cache hit).
    fn check_claims(&self, claims: &Map<String, Value>, skew: f64) -> Result<(), AuthFailure> {
        for name in &self.required {
            if !claims.contains_key(name) {
                return Err(AuthFailure::new(
                    Reason::ClaimMissing,
                    format!("required claim '{name}' is missing"),
                ));
            }
        }
        let now = now_secs();
        if let Some(exp) = claims.get("exp") {
            let exp = numeric(exp).ok_or_else(|| {
                AuthFailure::new(Reason::TokenMalformed, "exp is not a numeric date")
            })?;
            if now >= exp + skew {
                return Err(AuthFailure::new(
                    Reason::TokenExpired,
                    "the token has expired",
                ));
            }
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = numeric(nbf).ok_or_else(|| {
                AuthFailure::new(Reason::TokenMalformed, "nbf is not a numeric date")
            })?;
            if nbf > now + skew {
                return Err(AuthFailure::new(
                    Reason::TokenNotYetValid,
                    "the token is not valid yet (nbf)",
                ));
            }
        }
        if !self.audiences.is_empty() {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => self.audiences.iter().any(|c| c == a),
                Some(Value::Array(list)) => list
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|a| self.audiences.iter().any(|c| c == a)),
                _ => false,
            };
            if !ok {
                return Err(AuthFailure::new(
                    Reason::AudienceMismatch,
                    "the token's audience is not accepted here",
                ));
            }
        }
        Ok(())
    }
}

fn numeric(v: &Value) -> Option<f64> {
    v.as_f64().filter(|f| f.is_finite())
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn read_static(source: &JwksSource) -> Result<KeySet, JwtConfigError> {
    match source {
        JwksSource::File(path) => {
            let bytes = std::fs::read(path).map_err(|error| JwtConfigError::JwksFile {
                path: path.clone(),
                error,
            })?;
            let name = path.display().to_string();
            parse_key_set(&bytes, &name).map_err(|reason| JwtConfigError::Jwks {
                source_name: name,
                reason,
            })
        }
        JwksSource::Inline(doc) => {
            parse_key_set(doc.as_bytes(), "inline").map_err(|reason| JwtConfigError::Jwks {
                source_name: "inline jwks".to_string(),
                reason,
            })
        }
        JwksSource::Url(_) => Err(JwtConfigError::Jwks {
            source_name: "url".to_string(),
            reason: "not a static source".to_string(),
        }),
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
            let (keys, source_id): (KeySource, Arc<str>) = match &p.jwks {
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
                    (
                        KeySource::Url(registry.url_cache(u)),
                        format!("url:{u}").into(),
                    )
                }
                JwksSource::File(path) => (
                    KeySource::Static {
                        keys: arc_swap::ArcSwap::from_pointee(read_static(&p.jwks)?),
                        path: Some(path.clone()),
                    },
                    format!("file:{}", path.display()).into(),
                ),
                JwksSource::Inline(doc) => (
                    KeySource::Static {
                        keys: arc_swap::ArcSwap::from_pointee(read_static(&p.jwks)?),
                        path: None,
                    },
                    format!(
                        "inline:{}",
                        agentid_claims::jwt::hex(&Sha256::digest(doc.as_bytes()))
                    )
                    .into(),
                ),
            };
            providers.push(Provider {
                issuer: p.issuer,
                audiences: p.audiences,
                required,
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
            if let KeySource::Static {
                keys,
                path: Some(path),
            } = &p.keys
            {
                keys.store(Arc::new(read_static(&JwksSource::File(path.clone()))?));
            }
        }
        Ok(())
    }

    /// §6.1 for one request.
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
            value[p.len()..].trim_start()
        };
        (!token.is_empty()).then_some(token)
    }

    async fn validate(&self, token: &str) -> Result<Arc<Verified>, AuthFailure> {
        let skew = self.registry.settings.clock_skew.as_secs_f64();
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
                && p.has_kid(&hit.kid)
            {
                p.check_claims(&hit.verified.claims, skew)?;
                return Ok(hit.verified.clone());
            }
            // Different provider setup (or the kid was rotated away): full validation below.
        }

        // Step 2: structure.
        if token.split('.').count() != 3 {
            return Err(AuthFailure::new(
                Reason::TokenMalformed,
                "a JWT has three dot-separated parts (encrypted tokens are not accepted)",
            ));
        }
        let jwt = UnverifiedJwt::parse(token)
            .map_err(|e| AuthFailure::new(Reason::TokenMalformed, e.to_string()))?;
        let Some(alg) = jwt.alg() else {
            return Err(AuthFailure::new(
                Reason::TokenMalformed,
                "the header has no alg",
            ));
        };
        if jwt.header.contains_key("crit") {
            return Err(AuthFailure::new(
                Reason::TokenMalformed,
                "critical header extensions are not supported",
            ));
        }
        // Step 3: before any key lookup, so key-confusion tricks never reach verification.
        let algorithm = match alg {
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            other => {
                return Err(AuthFailure::new(
                    Reason::AlgNotAllowed,
                    format!("algorithm '{other}' is not allowed (RS256, ES256)"),
                ));
            }
        };
        // Step 4.
        let iss = jwt.str_claim("iss").unwrap_or("");
        let Some(provider) = self.providers.iter().find(|p| p.issuer == iss) else {
            return Err(AuthFailure::new(
                Reason::IssuerMismatch,
                format!("issuer '{iss}' is not accepted here"),
            ));
        };
        // Step 5.
        let Some(kid) = jwt.kid().filter(|k| !k.is_empty()) else {
            return Err(AuthFailure::new(
                Reason::KidMissing,
                "the header has no kid",
            ));
        };
        let key = match provider.lookup(kid).await {
            Lookup::Found(k) => k,
            Lookup::Unknown => {
                return Err(AuthFailure::new(
                    Reason::KidUnknown,
                    format!("key '{kid}' is not in the issuer's key set"),
                ));
            }
            Lookup::Unavailable => {
                return Err(AuthFailure::new(
                    Reason::JwksUnavailable,
                    "the issuer's signing keys could not be loaded",
                ));
            }
        };
        // Step 6.
        let agrees = match (algorithm, key.kind) {
            (Algorithm::RS256, KeyType::Rsa { bits }) => bits >= 2048,
            (Algorithm::ES256, KeyType::EcP256) => true,
            _ => false,
        } && key.alg.as_deref().is_none_or(|a| a == alg)
            && key.use_.as_deref().is_none_or(|u| u == "sig");
        if !agrees {
            return Err(AuthFailure::new(
                Reason::SignatureInvalid,
                format!("key '{kid}' cannot verify {alg}"),
            ));
        }
        // Step 7.
        jwt.verify(&key.key, &[algorithm]).map_err(|_| {
            AuthFailure::new(Reason::SignatureInvalid, "the signature does not verify")
        })?;
        // Steps 8–9.
        provider.check_claims(&jwt.claims, skew)?;

        let exp = jwt.time_claim("exp").unwrap_or(i64::MAX);
        let token_id = jwt
            .str_claim("uti")
            .or_else(|| jwt.str_claim("jti"))
            .map(str::to_string);
        let kid = kid.to_string();
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
    fn rsa_modulus_bits() {
        let n = URL_SAFE_NO_PAD.encode([0x00u8, 0x80, 0, 0]);
        assert_eq!(rsa_bits(&n), Some(24));
        let n = URL_SAFE_NO_PAD.encode([0x01u8; 256]);
        assert_eq!(rsa_bits(&n), Some(2041));
    }

    #[test]
    fn key_sets_skip_unusable_keys() {
        let doc = br#"{"keys":[{"kty":"oct","kid":"a","k":"x"},{"kty":"EC","crv":"P-256","use":"enc","kid":"b","x":"x","y":"y"}]}"#;
        assert!(parse_key_set(doc, "t").is_err());
        assert!(parse_key_set(b"[]", "t").is_err());
        assert!(parse_key_set(b"nope", "t").is_err());
    }

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
