//! One MCP target over streamable HTTP: JSON-RPC POSTs whose answer is JSON or an SSE stream
//! carrying the response (notifications before it are skipped).

use futures_util::StreamExt;
use http::HeaderMap;
use serde_json::Value;
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
    pub message: Option<Value>,
    pub session_id: Option<String>,
}

/// Sends one JSON-RPC message; for a request (`expect_id`), waits for the response with that id.
pub async fn post(
    client: &reqwest::Client,
    url: &url::Url,
    headers: HeaderMap,
    message: &Value,
    expect_id: Option<u64>,
    timeout: Duration,
) -> Result<Answer, TargetError> {
    let fut = async {
        let resp = client
            .post(url.clone())
            .headers(headers)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json, text/event-stream")
            .body(serde_json::to_vec(message).unwrap_or_default())
            .send()
            .await
            .map_err(|e| TargetError::Unavailable(crate::upstream::error_chain(&e)))?;
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
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !status.is_success() && !sse {
            let body = resp.bytes().await.unwrap_or_default();
            if let Ok(v) = serde_json::from_slice::<Value>(&body)
                && v.get("error").is_some()
            {
                return Ok(Answer {
                    message: Some(v),
                    session_id,
                });
            }
            return Err(TargetError::Unavailable(format!("HTTP {status}")));
        }
        if !sse {
            let body = resp
                .bytes()
                .await
                .map_err(|e| TargetError::Unavailable(e.to_string()))?;
            let v: Value = serde_json::from_slice(&body)
                .map_err(|e| TargetError::Protocol(format!("response is not JSON: {e}")))?;
            return Ok(Answer {
                message: Some(v),
                session_id,
            });
        }
        let mut stream = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| TargetError::Unavailable(e.to_string()))?;
            buf.extend_from_slice(&chunk);
            while let Some(end) = crate::sse::event_end(&buf) {
                let event: Vec<u8> = buf.drain(..end).collect();
                if let Some(data) = crate::sse::event_data(&event)
                    && let Ok(v) = serde_json::from_str::<Value>(&data)
                    && v.get("id").and_then(Value::as_u64) == expect_id
                    && (v.get("result").is_some() || v.get("error").is_some())
                {
                    return Ok(Answer {
                        message: Some(v),
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

pub async fn delete(client: &reqwest::Client, url: &url::Url, headers: HeaderMap) {
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        client.delete(url.clone()).headers(headers).send(),
    )
    .await;
}
