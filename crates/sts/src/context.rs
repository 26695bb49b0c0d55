//! Per-request context: trace and correlation ids, client address, and the rendering of
//! errors in Entra's shape.

use crate::error::OAuthError;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

/// The address of the connected client, attached to every request by the server loop.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

#[derive(Debug, Clone)]
pub struct RequestContext {
    pub trace_id: Uuid,
    pub correlation_id: Uuid,
    pub now: i64,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

impl RequestContext {
    /// `client-request-id` (header, else query) is the correlation id when it is a GUID.
    pub fn new(headers: &HeaderMap, query: Option<&str>, addr: Option<ClientAddr>) -> Self {
        let from_query = query.and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "client-request-id")
                .map(|(_, v)| v.to_string())
        });
        let correlation_id = headers
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or(from_query)
            .and_then(|v| Uuid::parse_str(v.trim()).ok())
            .unwrap_or_else(Uuid::new_v4);
        Self {
            trace_id: Uuid::new_v4(),
            correlation_id,
            now: chrono::Utc::now().timestamp(),
            source_ip: addr.map(|a| a.0.ip().to_string()),
            user_agent: headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(256).collect()),
        }
    }

    pub fn timestamp(&self) -> String {
        chrono::DateTime::<chrono::Utc>::from_timestamp(self.now, 0)
            .unwrap_or_default()
            .format("%Y-%m-%d %H:%M:%SZ")
            .to_string()
    }

    /// The JSON body every OAuth/OIDC endpoint uses for a refusal.
    pub fn error_body(&self, base: &str, e: &OAuthError) -> serde_json::Value {
        let ts = self.timestamp();
        let mut body = serde_json::json!({
            "error": e.error,
            "error_description": format!(
                "AADSTS{}: {} Trace ID: {} Correlation ID: {} Timestamp: {}",
                e.code, e.description, self.trace_id, self.correlation_id, ts
            ),
            "error_codes": [e.code],
            "timestamp": ts,
            "trace_id": self.trace_id.to_string(),
            "correlation_id": self.correlation_id.to_string(),
            "error_uri": format!("{base}/error?code={}", e.code),
        });
        if let Some(s) = e.suberror {
            body["suberror"] = s.into();
        }
        body
    }

    pub fn error_response(&self, base: &str, e: &OAuthError) -> Response {
        let mut resp = (e.status(), axum::Json(self.error_body(base, e))).into_response();
        self.decorate(&mut resp, true);
        if let Some(secs) = e.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }

    /// Headers on every response: request id, echoed correlation id, and no-store if asked.
    pub fn decorate(&self, resp: &mut Response, no_store: bool) {
        let h = resp.headers_mut();
        h.insert(
            "x-ms-request-id",
            HeaderValue::from_str(&self.trace_id.to_string()).expect("uuid header"),
        );
        h.insert(
            "client-request-id",
            HeaderValue::from_str(&self.correlation_id.to_string()).expect("uuid header"),
        );
        if no_store {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        }
    }
}
