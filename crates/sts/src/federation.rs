//! Signing keys of external issuers (workload identity federation, sts.md §6.3.3): a stored
//! JWKS from a trusted-issuer record, or OIDC discovery with strict fetch limits and a cache.

use agentid_claims::jwk::JwkSet;
use moka::future::Cache;
use std::sync::Arc;
use std::time::{Duration, Instant};

const MAX_BODY: usize = 256 * 1024;
const REFETCH_AFTER_MISS: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error, Clone)]
pub enum FederationError {
    #[error("only https issuers can be fetched (issuer '{0}')")]
    NotHttps(String),
    #[error("fetching {url} failed: {reason}")]
    Fetch { url: String, reason: String },
    #[error("the discovery document of '{issuer}' names issuer '{found}'")]
    IssuerMismatch { issuer: String, found: String },
}

#[derive(Clone)]
struct Cached {
    jwks: Arc<JwkSet>,
    fetched: Instant,
}

#[derive(Clone)]
pub struct Federation {
    https: reqwest::Client,
    cache: Cache<String, Cached>,
}

impl Federation {
    pub fn new(ttl: Duration) -> Self {
        let https = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .expect("HTTP client");
        Self {
            https,
            cache: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
        }
    }

    async fn get_json(
        &self,
        url: &str,
        allow_http: bool,
    ) -> Result<serde_json::Value, FederationError> {
        let parsed = url::Url::parse(url).map_err(|e| FederationError::Fetch {
            url: url.into(),
            reason: e.to_string(),
        })?;
        if parsed.scheme() != "https" && !(allow_http && parsed.scheme() == "http") {
            return Err(FederationError::NotHttps(url.into()));
        }
        let fail = |reason: String| FederationError::Fetch {
            url: url.into(),
            reason,
        };
        let mut resp = self
            .https
            .get(url)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("HTTP {}", resp.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BODY {
                return Err(fail("response larger than 256 KiB".into()));
            }
        }
        serde_json::from_slice(&body).map_err(|e| fail(format!("not JSON: {e}")))
    }

    async fn fetch(&self, issuer: &str, allow_http: bool) -> Result<JwkSet, FederationError> {
        let disc_url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let doc = self.get_json(&disc_url, allow_http).await?;
        let found = doc.get("issuer").and_then(|v| v.as_str()).unwrap_or("");
        if found != issuer {
            return Err(FederationError::IssuerMismatch {
                issuer: issuer.into(),
                found: found.into(),
            });
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .ok_or_else(|| FederationError::Fetch {
                url: disc_url.clone(),
                reason: "no jwks_uri".into(),
            })?;
        let jwks = self.get_json(jwks_uri, allow_http).await?;
        serde_json::from_value(jwks).map_err(|e| FederationError::Fetch {
            url: jwks_uri.into(),
            reason: format!("not a JWKS: {e}"),
        })
    }

    /// The issuer's keys; when `kid` is not among cached keys, refetches (at most every 30 s).
    pub async fn keys(
        &self,
        issuer: &str,
        kid: Option<&str>,
        allow_http: bool,
    ) -> Result<Arc<JwkSet>, FederationError> {
        if let Some(c) = self.cache.get(issuer).await {
            let has_kid =
                kid.is_none_or(|k| c.jwks.keys.iter().any(|j| j.kid.as_deref() == Some(k)));
            if has_kid || c.fetched.elapsed() < REFETCH_AFTER_MISS {
                return Ok(c.jwks);
            }
        }
        let jwks = Arc::new(self.fetch(issuer, allow_http).await?);
        self.cache
            .insert(
                issuer.to_string(),
                Cached {
                    jwks: jwks.clone(),
                    fetched: Instant::now(),
                },
            )
            .await;
        Ok(jwks)
    }
}
