//! Response bodies and the gateway's own error responses (OpenAI-compatible JSON, gateway.md §3).

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
