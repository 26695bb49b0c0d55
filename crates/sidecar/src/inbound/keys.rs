//! Signing keys of the authority: the `jwks_uri` of `{Instance}{TenantId}/v2.0/.well-known/
//! openid-configuration`, kept 24 h, fetched again when a `kid` is unknown (at most every 5 min).
//! The accepted issuers come from the same metadata (v2 and v1 documents).

use crate::clock::SharedClock;
use agentid_claims::jwk::JwkSet;
use jsonwebtoken::DecodingKey;
use std::sync::{Arc, RwLock};

const KEYS_TTL: i64 = 24 * 3600;
const UNKNOWN_KID_INTERVAL: i64 = 300;
const FAILED_FETCH_INTERVAL: i64 = 5;
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum KeysError {
    /// No key could be obtained and none is cached.
    #[error("Unable to retrieve signing keys from {0}.")]
    Unavailable(String),
}

pub struct Key {
    pub kid: Option<String>,
    pub kty: String,
    pub crv: Option<String>,
    pub key: DecodingKey,
}

#[derive(Default)]
struct KeyState {
    keys: Arc<Vec<Key>>,
    issuers: Arc<Vec<String>>,
    jwks_uri: Option<String>,
    fetched_at: Option<i64>,
    last_attempt: Option<i64>,
}

pub struct SigningKeys {
    http: reqwest::Client,
    v2_metadata: String,
    v1_metadata: String,
    tenant_id: String,
    static_issuers: Vec<String>,
    clock: SharedClock,
    state: RwLock<KeyState>,
    fetch: tokio::sync::Mutex<()>,
}

pub struct KeySnapshot {
    pub keys: Arc<Vec<Key>>,
    pub issuers: Arc<Vec<String>>,
}

impl SigningKeys {
    pub fn new(
        http: reqwest::Client,
        instance: &str,
        tenant_id: &str,
        valid_issuers: &[String],
        clock: SharedClock,
    ) -> Self {
        let mut static_issuers = vec![format!("https://sts.windows.net/{tenant_id}/")];
        static_issuers.extend(valid_issuers.iter().cloned());
        Self {
            http,
            v2_metadata: format!("{instance}{tenant_id}/v2.0/.well-known/openid-configuration"),
            v1_metadata: format!("{instance}{tenant_id}/.well-known/openid-configuration"),
            tenant_id: tenant_id.to_string(),
            static_issuers,
            clock,
            state: RwLock::new(KeyState::default()),
            fetch: tokio::sync::Mutex::new(()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeyState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn snapshot(&self) -> Option<KeySnapshot> {
        let s = self.read();
        s.fetched_at.map(|_| KeySnapshot {
            keys: s.keys.clone(),
            issuers: s.issuers.clone(),
        })
    }

    /// Keys and issuers to validate a token whose header names `kid`.
    pub async fn get(&self, kid: Option<&str>) -> Result<KeySnapshot, KeysError> {
        let now = self.clock.now();
        let need_fetch = {
            let s = self.read();
            let fresh = s.fetched_at.is_some_and(|t| now < t + KEYS_TTL);
            let has_kid = match kid {
                None => true,
                Some(k) => s.keys.iter().any(|key| key.kid.as_deref() == Some(k)),
            };
            let since = s.last_attempt.map(|t| now - t);
            if fresh && has_kid {
                false
            } else if fresh {
                since.is_none_or(|d| d >= UNKNOWN_KID_INTERVAL)
            } else {
                since.is_none_or(|d| d >= FAILED_FETCH_INTERVAL)
            }
        };
        if need_fetch {
            self.refresh(now).await;
        }
        self.snapshot().ok_or_else(|| {
            KeysError::Unavailable(
                self.read()
                    .jwks_uri
                    .clone()
                    .unwrap_or_else(|| self.v2_metadata.clone()),
            )
        })
    }

    /// Starts fetching in the background so the first request does not wait (errors are
    /// logged, and the next request tries again).
    pub async fn prefetch(&self) {
        let now = self.clock.now();
        self.refresh(now).await;
    }

    /// Fetches metadata and keys once (concurrent callers wait for the one fetch).
    async fn refresh(&self, decided_at: i64) {
        let _guard = self.fetch.lock().await;
        if self.read().last_attempt.is_some_and(|t| t >= decided_at) {
            return;
        }
        let result = self.fetch_all().await;
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        s.last_attempt = Some(self.clock.now());
        match result {
            Ok((keys, issuers, jwks_uri)) => {
                s.keys = Arc::new(keys);
                s.issuers = Arc::new(issuers);
                s.jwks_uri = Some(jwks_uri);
                s.fetched_at = Some(decided_at);
            }
            Err((jwks_uri, reason)) => {
                if jwks_uri.is_some() {
                    s.jwks_uri = jwks_uri;
                }
                tracing::warn!(event = "signing_keys_unavailable", reason = %reason, "cannot refresh the authority's signing keys");
            }
        }
    }

    async fn get_json(&self, url: &str) -> Result<serde_json::Value, String> {
        let r = self
            .http
            .get(url)
            .timeout(FETCH_TIMEOUT)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("{url}: HTTP {}", r.status().as_u16()));
        }
        r.json().await.map_err(|e| format!("{url}: {e}"))
    }

    #[allow(clippy::type_complexity)]
    async fn fetch_all(&self) -> Result<(Vec<Key>, Vec<String>, String), (Option<String>, String)> {
        let v2 = self
            .get_json(&self.v2_metadata)
            .await
            .map_err(|e| (None, e))?;
        let jwks_uri = v2["jwks_uri"]
            .as_str()
            .ok_or((None, "metadata has no jwks_uri".to_string()))?
            .to_string();
        let jwks: JwkSet = serde_json::from_value(
            self.get_json(&jwks_uri)
                .await
                .map_err(|e| (Some(jwks_uri.clone()), e))?,
        )
        .map_err(|e| (Some(jwks_uri.clone()), e.to_string()))?;
        let keys: Vec<Key> = jwks
            .keys
            .iter()
            .filter_map(|j| {
                Some(Key {
                    kid: j.kid.clone(),
                    kty: j.kty.clone(),
                    crv: j.crv.clone(),
                    key: j.decoding_key()?,
                })
            })
            .collect();
        if keys.is_empty() {
            return Err((Some(jwks_uri), "the JWKS holds no usable key".into()));
        }
        let placeholder = |i: &str| i.replace("{tenantid}", &self.tenant_id);
        let mut issuers = Vec::new();
        if let Some(i) = v2["issuer"].as_str() {
            issuers.push(placeholder(i));
        }
        // The v1 document gives the issuer of v1 tokens; it is optional.
        if let Ok(v1) = self.get_json(&self.v1_metadata).await
            && let Some(i) = v1["issuer"].as_str()
        {
            issuers.push(placeholder(i));
        }
        issuers.extend(self.static_issuers.iter().cloned());
        Ok((keys, issuers, jwks_uri))
    }
}
