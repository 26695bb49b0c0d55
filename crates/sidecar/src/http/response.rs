//! Responses: JSON bodies, problem+json errors in the shape of docs/sidecar.md §8.3, empty-body
//! refusals, and the headers every response carries (§8.2).

use bytes::Bytes;
use http::header::{
    ALLOW, CACHE_CONTROL, CONTENT_TYPE, EXPIRES, HeaderName, HeaderValue, PRAGMA, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

pub type Body = Full<Bytes>;

pub const JSON: &str = "application/json; charset=utf-8";
pub const PROBLEM_JSON: &str = "application/problem+json";
pub const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// Everything that ends a request without a success body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    /// 400 problem.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 401, empty body, `WWW-Authenticate: Bearer`.
    #[error("no bearer token")]
    MissingBearer,
    /// 401, empty body, `WWW-Authenticate: Bearer error="invalid_token", …`.
    #[error("invalid bearer token: {0}")]
    InvalidBearer(String),
    /// 401 problem (the authority refused, or a delegated flow has no user).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 403 problem.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 403, empty body: the caller is not local.
    #[error("remote caller refused")]
    RemoteCaller,
    /// 421 problem: the request names a host the sidecar does not serve (DNS rebinding).
    #[error("misdirected request: Host is not served")]
    MisdirectedHost,
    /// 404, empty body.
    #[error("not found")]
    NotFound,
    /// 405, empty body, with `Allow`.
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    /// 413 problem.
    #[error("request body too large: {0}")]
    TooLarge(String),
    /// 500 problem with this detail.
    #[error("internal: {0}")]
    Internal(String),
    /// 502 problem.
    #[error("bad gateway: {0}")]
    BadGateway(String),
    /// 503 problem with `Retry-After`.
    #[error("unavailable: {detail}")]
    Unavailable { detail: String, retry_after: u64 },
    /// 504 problem.
    #[error("gateway timeout: {0}")]
    GatewayTimeout(String),
}

pub const UNEXPECTED: &str = "An unexpected error occurred.";

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    type_: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    #[serde(rename = "correlationId")]
    correlation_id: &'a str,
}

fn problem(
    status: StatusCode,
    section: &str,
    title: &str,
    detail: &str,
    cid: &str,
) -> Response<Body> {
    let body = serde_json::to_vec(&Problem {
        type_: format!("https://tools.ietf.org/html/rfc9110#{section}"),
        title,
        status: status.as_u16(),
        detail,
        correlation_id: cid,
    })
    .unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    r
}

pub fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

pub fn json(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    r
}

pub fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Keeps a header value legal: visible ASCII, no quotes or backslashes inside a quoted string.
fn header_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                if c == '"' || c == '\\' { '\'' } else { c }
            } else {
                '?'
            }
        })
        .collect()
}

impl Failure {
    pub fn status(&self) -> StatusCode {
        match self {
            Failure::BadRequest(_) => StatusCode::BAD_REQUEST,
            Failure::MissingBearer | Failure::InvalidBearer(_) | Failure::Unauthorized(_) => {
                StatusCode::UNAUTHORIZED
            }
            Failure::Forbidden(_) | Failure::RemoteCaller => StatusCode::FORBIDDEN,
            Failure::MisdirectedHost => StatusCode::MISDIRECTED_REQUEST,
            Failure::NotFound => StatusCode::NOT_FOUND,
            Failure::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Failure::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Failure::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Failure::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Failure::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Failure::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    pub fn into_response(self, cid: &str) -> Response<Body> {
        let status = self.status();
        match self {
            Failure::BadRequest(d) => problem(status, "section-15.5.1", "Bad Request", &d, cid),
            Failure::MissingBearer => {
                let mut r = empty(status);
                r.headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                r
            }
            Failure::InvalidBearer(reason) => {
                let mut r = empty(status);
                let v = format!(
                    "Bearer error=\"invalid_token\", error_description=\"{}\"",
                    header_safe(&reason)
                );
                if let Ok(v) = HeaderValue::from_str(&v) {
                    r.headers_mut().insert(WWW_AUTHENTICATE, v);
                }
                r
            }
            Failure::Unauthorized(d) => problem(status, "section-15.5.2", "Unauthorized", &d, cid),
            Failure::Forbidden(d) => problem(status, "section-15.5.4", "Forbidden", &d, cid),
            Failure::MisdirectedHost => problem(
                status,
                "section-15.5.20",
                "Misdirected Request",
                "The Host of this request is not a name this sidecar serves: use localhost or a loopback address, or add the name to Sidecar__AllowedHosts.",
                cid,
            ),
            Failure::RemoteCaller | Failure::NotFound => empty(status),
            Failure::MethodNotAllowed(allow) => {
                let mut r = empty(status);
                r.headers_mut()
                    .insert(ALLOW, HeaderValue::from_static(allow));
                r
            }
            Failure::TooLarge(d) => {
                problem(status, "section-15.5.14", "Content Too Large", &d, cid)
            }
            Failure::Internal(d) => problem(
                status,
                "section-15.6.1",
                "An error occurred while processing your request.",
                &d,
                cid,
            ),
            Failure::BadGateway(d) => problem(status, "section-15.6.3", "Bad Gateway", &d, cid),
            Failure::Unavailable {
                detail,
                retry_after,
            } => {
                let mut r = problem(
                    status,
                    "section-15.6.4",
                    "Service Unavailable",
                    &detail,
                    cid,
                );
                r.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(retry_after));
                r
            }
            Failure::GatewayTimeout(d) => {
                problem(status, "section-15.6.5", "Gateway Timeout", &d, cid)
            }
        }
    }
}

/// The headers of every response (docs/sidecar.md §8.2).
pub fn finish(mut r: Response<Body>, cid: &str) -> Response<Body> {
    let h = r.headers_mut();
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(EXPIRES, HeaderValue::from_static("0"));
    if let Ok(v) = HeaderValue::from_str(cid) {
        h.insert(X_CORRELATION_ID, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_members_in_order() {
        let r = Failure::BadRequest("x".into()).into_response("c");
        let body = r.into_body();
        let bytes = futures_bytes(body);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"type":"https://tools.ietf.org/html/rfc9110#section-15.5.1","title":"Bad Request","status":400,"detail":"x","correlationId":"c"}"#
        );
    }

    fn futures_bytes(b: Body) -> Vec<u8> {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async { b.collect().await.unwrap().to_bytes().to_vec() })
    }

    #[test]
    fn invalid_token_header_stays_legal() {
        let r = Failure::InvalidBearer("The issuer 'a\"b' is invalid".into()).into_response("c");
        assert_eq!(
            r.headers()[WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\", error_description=\"The issuer 'a'b' is invalid\""
        );
    }
}
