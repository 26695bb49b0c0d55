//! Inbound JWT validation and JWKS caches (gateway.md §6).
//! STUB on main: replaced by the gw-policy branch.
use crate::identity::Identity;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub clock_skew: Duration,
    pub jwks_refresh_interval: Duration,
    pub jwks_min_refresh_interval: Duration,
    pub jwks_fetch_timeout: Duration,
    pub verified_token_cache_size: u64,
}

#[derive(Debug, Clone)]
pub enum JwksSource {
    Url(String),
    File(PathBuf),
    Inline(String),
}

#[derive(Debug, Clone)]
pub struct ProviderSpec {
    pub issuer: String,
    pub audiences: Vec<String>,
    pub jwks: JwksSource,
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
    pub header: String,
    pub prefix: Option<String>,
}

pub struct JwksRegistry {
    settings: JwtSettings,
}
impl JwksRegistry {
    pub fn new(settings: JwtSettings, _http: reqwest::Client) -> Arc<Self> {
        Arc::new(JwksRegistry { settings })
    }
    pub fn settings(&self) -> &JwtSettings {
        &self.settings
    }
    pub fn start(self: &Arc<Self>) {}
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JwtConfigError(pub String);

pub struct JwtAuth {
    pub spec: JwtAuthSpec,
}
impl JwtAuth {
    pub fn compile(spec: JwtAuthSpec, _registry: &Arc<JwksRegistry>) -> Result<JwtAuth, JwtConfigError> {
        Ok(JwtAuth { spec })
    }
    pub fn header_name(&self) -> &str {
        &self.spec.header
    }
    pub async fn authenticate(&self, _headers: &http::HeaderMap) -> AuthOutcome {
        AuthOutcome::Anonymous
    }
}

pub enum AuthOutcome {
    Authenticated(Arc<Verified>),
    Anonymous,
    Rejected(AuthFailure),
}

pub struct SecretToken(String);
impl SecretToken {
    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl std::fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug)]
pub struct Verified {
    pub claims: Map<String, Value>,
    pub identity: Identity,
    pub token: SecretToken,
    pub exp: i64,
    pub token_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    TokenMissing,
    JwksUnavailable,
}
impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TokenMissing => "token_missing",
            Reason::JwksUnavailable => "jwks_unavailable",
        }
    }
}

#[derive(Debug)]
pub struct AuthFailure {
    pub reason: Reason,
    pub message: String,
    pub status: u16,
}
