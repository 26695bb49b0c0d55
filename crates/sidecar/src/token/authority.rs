//! One token-endpoint leg over HTTPS: `POST {Instance}{tenant}/oauth2/v2.0/token`, with the
//! retry, backoff and `Retry-After` rules of docs/sidecar.md §9.6, and the response mapping of §9.2.

use crate::clock::SharedClock;
use crate::metrics::Metrics;
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

const MAX_ATTEMPTS: u32 = 3;
const BACKOFF: [Duration; 2] = [Duration::from_millis(250), Duration::from_secs(1)];

/// A token the authority issued.
#[derive(Clone)]
pub struct Issued {
    pub access_token: Arc<str>,
    /// `min(now + expires_in, exp)`; `None` when neither is known (use once, do not cache).
    pub expires_at: Option<i64>,
    /// How the token may appear in logs: its `uti`, else an 8-hex-digit fingerprint.
    pub log_id: Arc<str>,
}

/// The log identity of a token: `uti` (or `jti`) of a JWT, else the first 8 hex digits of
/// its SHA-256.
pub fn log_id(parsed: Option<&agentid_claims::UnverifiedJwt>, token: &str) -> Arc<str> {
    match parsed {
        Some(j) if j.str_claim("uti").is_some() || j.str_claim("jti").is_some() => {
            Arc::from(j.log_id())
        }
        _ => {
            let mut h = agentid_claims::jwt::short_hash(token);
            h.truncate(8);
            Arc::from(h)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    /// 4xx with an OAuth error body.
    #[error("{error}: {}", description.as_deref().unwrap_or(""))]
    OAuth {
        status: u16,
        error: String,
        description: Option<String>,
        codes: Vec<u64>,
    },
    /// 4xx (or 3xx) without an OAuth error body.
    #[error("The token endpoint returned HTTP {0}.")]
    Status(u16),
    /// Connect error, timeout, 5xx or 429 after the retries.
    #[error("{reason}")]
    Transient {
        reason: String,
        retry_after: Option<u64>,
    },
    /// 200 with a body that is not a token response.
    #[error("unusable token response: {0}")]
    BadResponse(String),
}

/// AADSTS codes and `invalid_client` that mean the credential itself was refused (§9.3).
const CREDENTIAL_REJECTIONS: [u64; 8] = [
    7000215, 7000222, 700027, 700024, 70021, 7000272, 700211, 700213,
];

impl AuthorityError {
    /// The authority refused the client credential (or the assertion it carried).
    pub fn is_credential_rejection(&self) -> bool {
        match self {
            AuthorityError::OAuth { error, codes, .. } => {
                error == "invalid_client" || codes.iter().any(|c| CREDENTIAL_REJECTIONS.contains(c))
            }
            _ => false,
        }
    }

    /// The first AADSTS code, for logs.
    pub fn aadsts(&self) -> Option<u64> {
        match self {
            AuthorityError::OAuth { codes, .. } => codes.first().copied(),
            _ => None,
        }
    }

    pub fn result_label(&self) -> &'static str {
        match self {
            AuthorityError::OAuth { .. } | AuthorityError::Status(_) => "oauth_error",
            AuthorityError::Transient { .. } => "transient_error",
            AuthorityError::BadResponse(_) => "oauth_error",
        }
    }
}

pub struct Authority {
    http: reqwest::Client,
    instance: String,
    host: String,
    timeout: Duration,
    clock: SharedClock,
    metrics: Arc<Metrics>,
}

/// Parses `Retry-After`: delta-seconds or an HTTP-date.
pub fn parse_retry_after(v: &str) -> Option<u64> {
    let v = v.trim();
    if let Ok(n) = v.parse::<u64>() {
        return Some(n);
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
            .unwrap_or(0),
    )
}

fn aadsts_codes(body: &serde_json::Value) -> Vec<u64> {
    let mut codes: Vec<u64> = body["error_codes"]
        .as_array()
        .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
        .unwrap_or_default();
    if codes.is_empty()
        && let Some(d) = body["error_description"].as_str()
        && let Some(rest) = d.strip_prefix("AADSTS")
    {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        codes.extend(digits.parse::<u64>().ok());
    }
    codes
}

fn expires_in(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Authority {
    pub fn new(
        http: reqwest::Client,
        instance: &str,
        timeout: Duration,
        clock: SharedClock,
        metrics: Arc<Metrics>,
    ) -> Self {
        let host = url::Url::parse(instance)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| instance.to_string());
        Self {
            http,
            instance: instance.to_string(),
            host,
            timeout,
            clock,
            metrics,
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn token_endpoint(&self, tenant: &str) -> String {
        format!("{}{tenant}/oauth2/v2.0/token", self.instance)
    }

    /// Posts `form` with up to three attempts before `deadline`.
    pub async fn post(
        &self,
        leg: &'static str,
        tenant: &str,
        form: &str,
        correlation_id: Uuid,
        deadline: Instant,
    ) -> Result<Issued, AuthorityError> {
        let url = self.token_endpoint(tenant);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            let remaining = deadline.saturating_duration_since(started);
            let result = if remaining.is_zero() {
                Err(AuthorityError::Transient {
                    reason: "deadline exceeded".into(),
                    retry_after: None,
                })
            } else {
                self.once(&url, form, correlation_id, self.timeout.min(remaining))
                    .await
            };
            let label = match &result {
                Ok(_) => "success",
                Err(e) => e.result_label(),
            };
            self.metrics
                .authority_request(leg, label, started.elapsed().as_secs_f64());
            let Err(AuthorityError::Transient {
                reason,
                retry_after,
            }) = result
            else {
                return result;
            };
            if attempt >= MAX_ATTEMPTS {
                return Err(AuthorityError::Transient {
                    reason,
                    retry_after,
                });
            }
            let delay = match retry_after {
                Some(s) => Duration::from_secs(s),
                None => {
                    let base = BACKOFF[(attempt as usize - 1).min(BACKOFF.len() - 1)];
                    base.mul_f64(rand::thread_rng().gen_range(0.8..1.2))
                }
            };
            if Instant::now() + delay >= deadline {
                return Err(AuthorityError::Transient {
                    reason,
                    retry_after,
                });
            }
            tracing::warn!(
                event = "authority_retry",
                leg,
                attempt,
                reason = %reason,
                delay_ms = delay.as_millis() as u64,
                "token endpoint failed transiently; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn once(
        &self,
        url: &str,
        form: &str,
        correlation_id: Uuid,
        timeout: Duration,
    ) -> Result<Issued, AuthorityError> {
        let resp = self
            .http
            .post(url)
            .timeout(timeout)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .header("client-request-id", correlation_id.to_string())
            .header("return-client-request-id", "true")
            .body(form.to_string())
            .send()
            .await
            .map_err(|e| AuthorityError::Transient {
                reason: if e.is_timeout() {
                    format!("no response within {} s", timeout.as_secs_f64().ceil())
                } else if e.is_connect() {
                    "connection failed".into()
                } else {
                    "request failed".into()
                },
                retry_after: None,
            })?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = resp.bytes().await.map_err(|e| AuthorityError::Transient {
            reason: if e.is_timeout() {
                "response timed out".into()
            } else {
                "response interrupted".into()
            },
            retry_after: None,
        })?;
        if status == 429 || status >= 500 {
            return Err(AuthorityError::Transient {
                reason: format!("HTTP {status}"),
                retry_after,
            });
        }
        let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        if status != 200 {
            return Err(match json {
                Some(j) if j["error"].is_string() => AuthorityError::OAuth {
                    status,
                    error: j["error"].as_str().unwrap_or_default().to_string(),
                    description: j["error_description"].as_str().map(str::to_string),
                    codes: aadsts_codes(&j),
                },
                _ => AuthorityError::Status(status),
            });
        }
        let json = json.ok_or_else(|| AuthorityError::BadResponse("not JSON".into()))?;
        let token = json["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| AuthorityError::BadResponse("no access_token".into()))?;
        let now = self.clock.now();
        let from_expires_in = expires_in(&json["expires_in"]).map(|s| now + s);
        let parsed = agentid_claims::UnverifiedJwt::parse(token).ok();
        let from_exp = parsed.as_ref().and_then(|j| j.time_claim("exp"));
        let expires_at = match (from_expires_in, from_exp) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(Issued {
            access_token: Arc::from(token),
            expires_at,
            log_id: log_id(parsed.as_ref(), token),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(7));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(0));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn credential_rejections() {
        let e = |error: &str, codes: Vec<u64>| AuthorityError::OAuth {
            status: 401,
            error: error.into(),
            description: None,
            codes,
        };
        assert!(e("invalid_client", vec![]).is_credential_rejection());
        assert!(e("invalid_request", vec![700024]).is_credential_rejection());
        assert!(!e("invalid_grant", vec![65001]).is_credential_rejection());
        let j = serde_json::json!({"error_description": "AADSTS700016: Application not found"});
        assert_eq!(aadsts_codes(&j), vec![700016]);
    }
}
