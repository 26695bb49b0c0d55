//! Response bodies and the gateway's own error responses (OpenAI-compatible JSON, docs/gateway.md §3).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

/// A body fed from a channel of chunks: each chunk is flushed as it arrives (streaming).
pub fn channel(rx: tokio::sync::mpsc::Receiver<Result<Bytes, BoxError>>) -> Body {
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let frames = futures_util::StreamExt::map(stream, |r| r.map(http_body::Frame::data));
    BodyExt::boxed(StreamBody::new(frames))
}

pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(full(serde_json::to_vec(value).unwrap_or_default()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A JSON body already serialised.
pub fn raw_json_response(status: StatusCode, json: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(full(json));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// `{"error":{"type":"agentid_gateway_error","code":…,"message":…,"correlationId":…}}`
pub fn gateway_error(
    status: StatusCode,
    code: &str,
    message: &str,
    correlation_id: &str,
) -> Response<Body> {
    json_response(
        status,
        &serde_json::json!({"error": {
            "type": "agentid_gateway_error",
            "code": code,
            "message": message,
            "correlationId": correlation_id,
        }}),
    )
}

/// Why a request body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum ReadBodyError {
    #[error("request body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("request body not received within {0}")]
    Timeout(String),
    #[error("request body could not be read: {0}")]
    Broken(String),
}

impl ReadBodyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ReadBodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ReadBodyError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ReadBodyError::Broken(_) => StatusCode::BAD_REQUEST,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ReadBodyError::TooLarge { .. } => "request_too_large",
            ReadBodyError::Timeout(_) => "request_timeout",
            ReadBodyError::Broken(_) => "bad_request",
        }
    }
}

/// Reads a whole request body of at most `limit` bytes within `within`: a client that sends
/// its body slowly holds a connection and a handler for `within` at most.
pub async fn read_limited<B>(
    body: B,
    limit: usize,
    within: std::time::Duration,
) -> Result<Bytes, ReadBodyError>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let read = http_body_util::Limited::new(body, limit).collect();
    match tokio::time::timeout(within, read).await {
        Err(_) => Err(ReadBodyError::Timeout(crate::config::duration::render(
            within,
        ))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ReadBodyError::TooLarge { limit })
        }
        Ok(Err(e)) => Err(ReadBodyError::Broken(e.to_string())),
    }
}
