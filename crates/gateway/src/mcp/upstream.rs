//! One MCP target over streamable HTTP: JSON-RPC POSTs whose answer is JSON or an SSE stream
//! carrying the response (notifications before it are skipped). Plain-HTTP targets go through
//! the gateway's hyper pool, HTTPS ones through their TLS policy's client
//! (`upstream::Clients::send_whole`, docs/performance.md §6.2).

use super::jsonrpc::Relayed;
use crate::config::model::TlsPolicy;
use crate::upstream::Clients;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, header};
use http_body_util::BodyExt;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{0}")]
    Unavailable(String),
    #[error("timed out after {0}")]
    Timeout(String),
    /// The target no longer knows its session (HTTP 404): re-initialize and retry once.
    #[error("session expired at the target")]
    SessionLost,
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

pub struct Answer {
    pub message: Option<Relayed>,
    pub session_id: Option<String>,
}

/// Where a target is: its URL and the TLS policy composed for it at load.
#[derive(Clone, Copy)]
pub struct Endpoint<'a> {
    pub url: &'a url::Url,
    pub tls: Option<&'a TlsPolicy>,
}

/// Sends one JSON-RPC message (`body`, JSON text); for a request (`expect_id`), waits for the
/// response with that id.
pub async fn post(
    clients: &Clients,
    to: Endpoint<'_>,
    mut headers: HeaderMap,
    body: Bytes,
    expect_id: Option<u64>,
    timeout: Duration,
) -> Result<Answer, TargetError> {
    let fut = async {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        let resp = clients
            .send_whole(to.url, to.tls, Method::POST, headers, body)
            .await
            .map_err(|e| TargetError::Unavailable(e.to_string()))?;
        let status = resp.status();
        if status == http::StatusCode::NOT_FOUND {
            return Err(TargetError::SessionLost);
        }
        let session_id = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if expect_id.is_none() {
            if !status.is_success() {
                return Err(TargetError::Protocol(format!("HTTP {status}")));
            }
            return Ok(Answer {
                message: None,
                session_id,
            });
        }
        let sse = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let mut body = resp.into_body();
        if !status.is_success() && !sse {
            let bytes = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            if let Some(m) = Relayed::parse(&bytes)
                && m.member("error").is_some()
            {
                return Ok(Answer {
                    message: Some(m),
                    session_id,
                });
            }
            return Err(TargetError::Unavailable(format!("HTTP {status}")));
        }
        if !sse {
            let bytes = body
                .collect()
                .await
                .map_err(|e| TargetError::Unavailable(e.to_string()))?
                .to_bytes();
            let m = Relayed::parse(&bytes)
                .ok_or_else(|| TargetError::Protocol("response is not one JSON object".into()))?;
            return Ok(Answer {
                message: Some(m),
                session_id,
            });
        }
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| TargetError::Unavailable(e.to_string()))?;
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&chunk);
            while let Some(end) = crate::sse::event_end(&buf) {
                let event: Vec<u8> = buf.drain(..end).collect();
                if let Some(data) = crate::sse::event_data(&event)
                    && let Some(m) = Relayed::parse(data.as_bytes())
                    && expect_id.is_some_and(|id| m.answers(id))
                {
                    return Ok(Answer {
                        message: Some(m),
                        session_id,
                    });
                }
            }
        }
        Err(TargetError::Protocol(
            "the stream ended without a response".into(),
        ))
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(TargetError::Timeout(crate::config::duration::render(
            timeout,
        ))),
    }
}

pub async fn delete(clients: &Clients, to: Endpoint<'_>, headers: HeaderMap) {
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        clients.send_whole(to.url, to.tls, Method::DELETE, headers, Bytes::new()),
    )
    .await;
}
