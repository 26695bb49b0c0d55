//! `backendAuth.onBehalfOf` (docs/gateway.md §8.3, agentid extension): the caller's validated token
//! is exchanged — through the token sidecar or directly at the STS — for a token with the
//! backend's own audience, cached per inbound token and target.

use crate::config::model::{OboCredential, OboMode, OnBehalfOf, TlsPolicy};
use crate::exchange::Exchange;
use crate::metrics::Metrics;
use crate::upstream::{Clients, error_chain};
use http::StatusCode;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why no token was obtained; shared by every request waiting on the same exchange.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExchangeFailure {
    /// No user token to exchange (none validated, or an app-only one).
    #[error("{0}")]
    RequiresUser(&'static str),
    /// The sidecar or the token endpoint could not be used (an outage, not a refusal).
    #[error("{0}")]
    Unavailable(String),
    /// The sidecar or the token endpoint refused the exchange.
    #[error("{0}")]
    Denied(String),
}

impl ExchangeFailure {
    pub fn status(&self) -> StatusCode {
        match self {
            ExchangeFailure::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ExchangeFailure::RequiresUser(_) | ExchangeFailure::Denied(_) => StatusCode::FORBIDDEN,
        }
    }

    /// The JSON error's `code`, the metrics' `result` label.
    pub fn code(&self) -> &'static str {
        match self {
            ExchangeFailure::RequiresUser(_) => "token_exchange_requires_user",
            ExchangeFailure::Unavailable(_) => "token_exchange_unavailable",
            ExchangeFailure::Denied(_) => "token_exchange_denied",
        }
    }
}

/// What an exchange runs on: the gateway's upstream clients and metrics, and its time limit.
pub struct ExchangeEnv<'a> {
    pub clients: &'a Clients,
    pub metrics: &'a Metrics,
    pub timeout: Duration,
}

/// One exchange: the caller's exchange so far, and the labels of its metrics.
pub struct ExchangeFor<'a> {
    pub ex: &'a Exchange,
    pub route: &'a str,
    pub target: &'a str,
}

#[derive(Clone)]
struct Cached {
    header: Arc<str>,
    expires: Instant,
}

pub struct OboCache {
    cache: moka::future::Cache<String, Cached>,
}

impl Default for OboCache {
    fn default() -> Self {
        Self::new()
    }
}

impl OboCache {
    pub fn new() -> OboCache {
        OboCache {
            cache: moka::future::Cache::builder().max_capacity(10_000).build(),
        }
    }

    /// Returns the full header value to send upstream.
    pub async fn exchange(
        &self,
        env: &ExchangeEnv<'_>,
        call: ExchangeFor<'_>,
        obo: &OnBehalfOf,
    ) -> Result<String, ExchangeFailure> {
        let ExchangeFor { ex, route, target } = call;
        let Some(verified) = &ex.verified else {
            return Err(ExchangeFailure::RequiresUser(
                "on-behalf-of needs a validated user token",
            ));
        };
        if ex.identity().token_type.as_deref() == Some("app") {
            return Err(ExchangeFailure::RequiresUser(
                "an app-only (autonomous) token cannot be exchanged on behalf of a user; the gateway never substitutes its own identity",
            ));
        }
        let (mode_name, endpoint, client, scopes) = match &obo.mode {
            OboMode::Sidecar { url, api, scopes } => {
                ("sidecar", url.as_str(), api.as_str(), scopes.clone())
            }
            OboMode::Sts {
                token_endpoint,
                client_id,
                scopes,
                ..
            } => (
                "sts",
                token_endpoint.as_str(),
                client_id.as_str(),
                scopes.clone(),
            ),
        };
        let mut sorted = scopes.clone();
        sorted.sort();
        let key = format!(
            "{}|{mode_name}|{endpoint}|{client}|{}",
            hex(&Sha256::digest(verified.token.expose().as_bytes())),
            sorted.join(" ")
        );
        let labels = |result: &str, cache: &str| {
            vec![
                ("route".to_string(), route.to_string()),
                ("target".to_string(), target.to_string()),
                ("mode".to_string(), mode_name.to_string()),
                ("result".to_string(), result.to_string()),
                ("cache".to_string(), cache.to_string()),
            ]
        };
        if let Some(hit) = self.cache.get(&key).await {
            if hit.expires > Instant::now() {
                env.metrics
                    .token_exchanges
                    .get_or_create(&labels("ok", "hit"))
                    .inc();
                return Ok(hit.header.to_string());
            }
            self.cache.invalidate(&key).await;
        }
        let inbound_left = verified.exp - chrono::Utc::now().timestamp();
        let timeout = env.timeout;
        let result = self
            .cache
            .try_get_with(key.clone(), async {
                let (header, expires_in) = match &obo.mode {
                    OboMode::Sidecar { url, api, scopes } => {
                        via_sidecar(env.clients, ex, url, api, scopes, timeout).await?
                    }
                    OboMode::Sts {
                        token_endpoint,
                        client_id,
                        credential,
                        scopes,
                        root,
                    } => {
                        let (token, expires_in) = via_sts(
                            env.clients,
                            ex,
                            token_endpoint,
                            client_id,
                            credential,
                            scopes,
                            root.clone(),
                            timeout,
                        )
                        .await?;
                        (
                            format!("{}{token}", obo.prefix.as_deref().unwrap_or("Bearer ")),
                            expires_in,
                        )
                    }
                };
                let header = match (&obo.mode, &obo.prefix) {
                    (OboMode::Sidecar { .. }, Some(prefix)) => {
                        let bare = header.strip_prefix("Bearer ").unwrap_or(&header);
                        format!("{prefix}{bare}")
                    }
                    _ => header,
                };
                let ttl = (expires_in - 120).min(inbound_left).max(0) as u64;
                Ok::<_, ExchangeFailure>(Cached {
                    header: Arc::from(header.as_str()),
                    expires: Instant::now() + Duration::from_secs(ttl),
                })
            })
            .await;
        match result {
            Ok(c) => {
                env.metrics
                    .token_exchanges
                    .get_or_create(&labels("ok", "miss"))
                    .inc();
                Ok(c.header.to_string())
            }
            Err(e) => {
                env.metrics
                    .token_exchanges
                    .get_or_create(&labels(e.code(), "miss"))
                    .inc();
                Err((*e).clone())
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unavailable(message: String) -> ExchangeFailure {
    ExchangeFailure::Unavailable(message)
}

fn denied(body: &serde_json::Value) -> ExchangeFailure {
    let error = body
        .get("error")
        .and_then(|e| e.as_str())
        .or_else(|| body.get("title").and_then(|e| e.as_str()))
        .unwrap_or("error");
    let description = body
        .get("error_description")
        .or_else(|| body.get("detail"))
        .and_then(|e| e.as_str())
        .unwrap_or("")
        .lines()
        .next()
        .unwrap_or("");
    ExchangeFailure::Denied(format!("token exchange refused: {error}: {description}"))
}

/// The JSON answer of the sidecar or the token endpoint: 4xx is a refusal (403 for the caller),
/// anything else that is not a success is an outage (503).
async fn read_answer(
    resp: Result<reqwest::Response, reqwest::Error>,
    who: &str,
) -> Result<serde_json::Value, ExchangeFailure> {
    let resp = resp.map_err(|e| unavailable(format!("{who} unreachable: {}", error_chain(&e))))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    if status.is_client_error() {
        return Err(denied(&body));
    }
    if !status.is_success() {
        return Err(unavailable(format!("{who} answered {status}")));
    }
    Ok(body)
}

async fn via_sidecar(
    clients: &Clients,
    ex: &Exchange,
    url: &str,
    api: &str,
    scopes: &[String],
    timeout: Duration,
) -> Result<(String, i64), ExchangeFailure> {
    let client = clients.get(None).map_err(unavailable)?;
    let verified = ex
        .verified
        .as_ref()
        .ok_or_else(|| unavailable("no token".into()))?;
    let mut query: Vec<(&str, String)> = scopes
        .iter()
        .map(|s| ("optionsOverride.Scopes", s.clone()))
        .collect();
    if uuid::Uuid::parse_str(&ex.correlation_id).is_ok() {
        query.push((
            "optionsOverride.AcquireTokenOptions.CorrelationId",
            ex.correlation_id.clone(),
        ));
    }
    let resp = client
        .get(format!("{url}/AuthorizationHeader/{api}"))
        .query(&query)
        .header(
            "authorization",
            format!("Bearer {}", verified.token.expose()),
        )
        .header("host", "localhost")
        .header("traceparent", ex.trace.traceparent())
        .timeout(timeout)
        .send()
        .await;
    let body = read_answer(resp, "sidecar").await?;
    let header = body
        .get("authorizationHeader")
        .and_then(|v| v.as_str())
        .ok_or_else(|| unavailable("sidecar response has no authorizationHeader".into()))?;
    // The sidecar does not say when its token expires: read it from the token itself.
    let token = header.strip_prefix("Bearer ").unwrap_or(header);
    let expires_in = agentid_claims::UnverifiedJwt::parse(token)
        .ok()
        .and_then(|t| t.time_claim("exp"))
        .map(|exp| exp - chrono::Utc::now().timestamp())
        .unwrap_or(300);
    Ok((header.to_string(), expires_in))
}

#[allow(clippy::too_many_arguments)]
async fn via_sts(
    clients: &Clients,
    ex: &Exchange,
    endpoint: &str,
    client_id: &str,
    credential: &OboCredential,
    scopes: &[String],
    root: Option<std::path::PathBuf>,
    timeout: Duration,
) -> Result<(String, i64), ExchangeFailure> {
    let policy = root.map(|r| TlsPolicy {
        root: Some(r),
        hostname: None,
        cert: None,
        key: None,
        insecure: false,
        insecure_host: false,
    });
    let client = clients.get(policy.as_ref()).map_err(unavailable)?;
    let verified = ex
        .verified
        .as_ref()
        .ok_or_else(|| unavailable("no token".into()))?;
    let mut form: Vec<(&str, String)> = vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
        ),
        ("client_id", client_id.to_string()),
        ("assertion", verified.token.expose().to_string()),
        ("scope", scopes.join(" ")),
        ("requested_token_use", "on_behalf_of".into()),
    ];
    match credential {
        OboCredential::Secret(s) => form.push(("client_secret", s.0.to_string())),
        OboCredential::AssertionFile(path) => {
            let assertion = tokio::fs::read_to_string(path).await.map_err(|e| {
                unavailable(format!(
                    "cannot read client assertion file {}: {e}",
                    path.display()
                ))
            })?;
            form.push((
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
            ));
            form.push(("client_assertion", assertion.trim().to_string()));
        }
    }
    let resp = client
        .post(endpoint)
        .form(&form)
        .header("traceparent", ex.trace.traceparent())
        .timeout(timeout)
        .send()
        .await;
    let body = read_answer(resp, "token endpoint").await?;
    let token = body
        .get("access_token")
        .and_then(|v| v.as_str())
        .ok_or_else(|| unavailable("token response has no access_token".into()))?;
    let expires_in = body
        .get("expires_in")
        .and_then(|v| v.as_i64())
        .unwrap_or(300);
    Ok((token.to_string(), expires_in))
}
