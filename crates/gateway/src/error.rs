//! Every refusal and failure the gateway answers itself (docs/gateway.md §3): one type, one
//! status and `code` per case, and one way to become a response — the OpenAI-compatible JSON
//! error of `body::gateway_error`. Whether and how the audit event records it is the
//! pipeline's decision (`reply::failed`), not the error's.

use crate::body::{self, Body, ReadBodyError};
use crate::config::duration;
use crate::jwt::AuthFailure;
use crate::obo::ExchangeFailure;
use crate::request_path::PathError;
use http::{HeaderValue, Response, StatusCode, header};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request target has no canonical form (`request_path`).
    #[error(transparent)]
    Path(#[from] PathError),
    /// Absolute-form (HTTP/1.1) or `:authority` (HTTP/2) names another host than `Host`.
    #[error("the request target's authority and the Host header differ")]
    HostMismatch,
    #[error("no listener for this host")]
    NoListener,
    #[error("no route matches this request")]
    NoRoute,
    /// `jwtAuth` refused the credential (docs/gateway.md §6.4).
    #[error("{}", .0.message)]
    Unauthenticated(AuthFailure),
    /// The revocation feed revokes the token, or is unavailable on a route that fails closed
    /// (docs/gateway.md §19).
    #[error("{0}")]
    Revocation(crate::revocation::RevocationRefusal),
    /// The route's `authorization` rules denied the request.
    #[error("{}", denied_message(.rule, .reason))]
    Denied {
        rule: Option<String>,
        reason: String,
    },
    #[error("no backend with weight > 0")]
    NoBackend,
    /// `backendAuth.onBehalfOf` could not get a token (docs/gateway.md §8.3).
    #[error(transparent)]
    TokenExchange(#[from] ExchangeFailure),
    /// No client could be built for the upstream's TLS settings.
    #[error("{0}")]
    UpstreamClient(String),
    /// The upstream sent no response headers in time; `upstream` names it ("LLM upstream").
    #[error("{upstream} did not answer within {}", duration::render(*.after))]
    UpstreamTimeout {
        upstream: &'static str,
        after: Duration,
    },
    /// The upstream could not be reached; `upstream` names it with its address.
    #[error("{upstream} failed: {cause}")]
    UpstreamFailed { upstream: String, cause: String },
    /// The LLM upstream's response body broke off.
    #[error("LLM upstream broke off: {0}")]
    UpstreamBrokeOff(String),
    #[error(transparent)]
    Body(#[from] ReadBodyError),
    #[error("the chat completion request body is not a JSON object")]
    InvalidLlmRequest,
    #[error("MCP request body exceeds {limit} bytes")]
    McpBodyTooLarge { limit: usize },
    /// `dnsRebindingProtection`: Host or Origin is not local.
    #[error("Host/Origin not allowed")]
    DnsRebinding,
    /// An MCP endpoint method other than POST and DELETE; the text says what to use.
    #[error("{0}")]
    MethodNotAllowed(&'static str),
    #[error("MCP requests are application/json")]
    UnsupportedMediaType,
    #[error("Accept must allow application/json or text/event-stream")]
    NotAcceptable,
    /// A request handler panicked.
    #[error("internal error")]
    Internal,
}

fn denied_message(rule: &Option<String>, reason: &str) -> String {
    match rule {
        Some(rule) => format!("denied by authorization rule `{rule}` ({reason})"),
        None => format!("denied by authorization rules ({reason})"),
    }
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        use GatewayError::*;
        match self {
            Path(e) => e.status(),
            Body(e) => e.status(),
            TokenExchange(e) => e.status(),
            Unauthenticated(f) => {
                StatusCode::from_u16(f.status).unwrap_or(StatusCode::UNAUTHORIZED)
            }
            Revocation(crate::revocation::RevocationRefusal::Revoked(_)) => {
                StatusCode::UNAUTHORIZED
            }
            Revocation(_) => StatusCode::SERVICE_UNAVAILABLE,
            HostMismatch => StatusCode::BAD_REQUEST,
            NoListener | NoRoute => StatusCode::NOT_FOUND,
            Denied { .. } | DnsRebinding => StatusCode::FORBIDDEN,
            NoBackend | UpstreamFailed { .. } => StatusCode::SERVICE_UNAVAILABLE,
            UpstreamClient(_) | UpstreamBrokeOff(_) => StatusCode::BAD_GATEWAY,
            UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            InvalidLlmRequest => StatusCode::BAD_REQUEST,
            McpBodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `code` of the JSON error (and the audit reason of a refusal before routing).
    pub fn code(&self) -> &'static str {
        use GatewayError::*;
        match self {
            Path(e) => e.code(),
            Body(e) => e.code(),
            TokenExchange(e) => e.code(),
            Unauthenticated(f) => f.reason.as_str(),
            Revocation(r) => r.code(),
            HostMismatch => "invalid_host",
            NoListener | NoRoute => "route_not_found",
            Denied { .. } => "authorization_denied",
            NoBackend | UpstreamClient(_) | UpstreamFailed { .. } | UpstreamBrokeOff(_) => {
                "upstream_unavailable"
            }
            UpstreamTimeout { .. } => "upstream_timeout",
            InvalidLlmRequest => "invalid_llm_request",
            McpBodyTooLarge { .. } => "request_too_large",
            DnsRebinding => "dns_rebinding",
            MethodNotAllowed(_) => "method_not_allowed",
            UnsupportedMediaType => "unsupported_media_type",
            NotAcceptable => "not_acceptable",
            Internal => "internal_error",
        }
    }

    /// The pipeline stage whose policy refused the request, for the audit decision; `None`
    /// for failures and for refusals whose decision is already recorded with its rule.
    pub fn denied_at(&self) -> Option<&'static str> {
        match self {
            GatewayError::Unauthenticated(_) => Some("jwtAuth"),
            GatewayError::TokenExchange(_) => Some("tokenExchange"),
            GatewayError::Revocation(_) => Some("revocation"),
            _ => None,
        }
    }

    /// The gateway's JSON error with the headers the case calls for (`WWW-Authenticate` on a
    /// 401, `Allow` on a 405).
    pub fn into_response(self, correlation_id: &str) -> Response<Body> {
        let status = self.status();
        let mut resp = body::gateway_error(status, self.code(), &self.to_string(), correlation_id);
        match &self {
            GatewayError::Unauthenticated(f) if status == StatusCode::UNAUTHORIZED => {
                if let Ok(v) = HeaderValue::from_str(&f.www_authenticate()) {
                    resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
            }
            GatewayError::Revocation(_) if status == StatusCode::UNAUTHORIZED => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        r#"Bearer error="invalid_token", error_description="token revoked""#,
                    ),
                );
            }
            GatewayError::MethodNotAllowed(_) => {
                resp.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            }
            _ => {}
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::Reason;

    #[test]
    fn every_case_has_its_status_and_code() {
        let obo = |e: ExchangeFailure| GatewayError::TokenExchange(e);
        let table: Vec<(GatewayError, u16, &str, &str)> = vec![
            (
                PathError::DotSegment.into(),
                400,
                "invalid_path",
                "the path contains a dot segment ('.' or '..', literal or percent-encoded)",
            ),
            (
                PathError::TooLong { limit: 8 }.into(),
                414,
                "uri_too_long",
                "the request target is longer than 8 bytes",
            ),
            (
                PathError::Unstable.into(),
                500,
                "internal_error",
                "the upstream URL would not carry the authorized path unchanged",
            ),
            (
                GatewayError::HostMismatch,
                400,
                "invalid_host",
                "the request target's authority and the Host header differ",
            ),
            (
                GatewayError::NoListener,
                404,
                "route_not_found",
                "no listener for this host",
            ),
            (
                GatewayError::NoRoute,
                404,
                "route_not_found",
                "no route matches this request",
            ),
            (
                GatewayError::Unauthenticated(AuthFailure::new(Reason::TokenExpired, "expired")),
                401,
                "token_expired",
                "expired",
            ),
            (
                GatewayError::Unauthenticated(AuthFailure::new(Reason::JwksUnavailable, "no keys")),
                503,
                "jwks_unavailable",
                "no keys",
            ),
            (
                GatewayError::Denied {
                    rule: Some("r1".into()),
                    reason: "rule_matched".into(),
                },
                403,
                "authorization_denied",
                "denied by authorization rule `r1` (rule_matched)",
            ),
            (
                GatewayError::Denied {
                    rule: None,
                    reason: "no_rule_matched".into(),
                },
                403,
                "authorization_denied",
                "denied by authorization rules (no_rule_matched)",
            ),
            (
                GatewayError::NoBackend,
                503,
                "upstream_unavailable",
                "no backend with weight > 0",
            ),
            (
                obo(ExchangeFailure::RequiresUser("needs a user")),
                403,
                "token_exchange_requires_user",
                "needs a user",
            ),
            (
                obo(ExchangeFailure::Unavailable("sidecar down".into())),
                503,
                "token_exchange_unavailable",
                "sidecar down",
            ),
            (
                obo(ExchangeFailure::Denied("refused".into())),
                403,
                "token_exchange_denied",
                "refused",
            ),
            (
                GatewayError::UpstreamClient("bad CA".into()),
                502,
                "upstream_unavailable",
                "bad CA",
            ),
            (
                GatewayError::UpstreamTimeout {
                    upstream: "LLM upstream",
                    after: Duration::from_secs(5),
                },
                504,
                "upstream_timeout",
                "LLM upstream did not answer within 5s",
            ),
            (
                GatewayError::UpstreamFailed {
                    upstream: "upstream h:1".into(),
                    cause: "refused".into(),
                },
                503,
                "upstream_unavailable",
                "upstream h:1 failed: refused",
            ),
            (
                GatewayError::UpstreamBrokeOff("reset".into()),
                502,
                "upstream_unavailable",
                "LLM upstream broke off: reset",
            ),
            (
                ReadBodyError::TooLarge { limit: 10 }.into(),
                413,
                "request_too_large",
                "request body exceeds 10 bytes",
            ),
            (
                ReadBodyError::Timeout("1s".into()).into(),
                408,
                "request_timeout",
                "request body not received within 1s",
            ),
            (
                ReadBodyError::Broken("x".into()).into(),
                400,
                "bad_request",
                "request body could not be read: x",
            ),
            (
                GatewayError::InvalidLlmRequest,
                400,
                "invalid_llm_request",
                "the chat completion request body is not a JSON object",
            ),
            (
                GatewayError::McpBodyTooLarge { limit: 3 },
                413,
                "request_too_large",
                "MCP request body exceeds 3 bytes",
            ),
            (
                GatewayError::DnsRebinding,
                403,
                "dns_rebinding",
                "Host/Origin not allowed",
            ),
            (
                GatewayError::MethodNotAllowed("use POST"),
                405,
                "method_not_allowed",
                "use POST",
            ),
            (
                GatewayError::UnsupportedMediaType,
                415,
                "unsupported_media_type",
                "MCP requests are application/json",
            ),
            (
                GatewayError::NotAcceptable,
                406,
                "not_acceptable",
                "Accept must allow application/json or text/event-stream",
            ),
            (
                GatewayError::Internal,
                500,
                "internal_error",
                "internal error",
            ),
        ];
        for (err, status, code, message) in table {
            assert_eq!(err.status().as_u16(), status, "{err:?}");
            assert_eq!(err.code(), code, "{err:?}");
            assert_eq!(err.to_string(), message, "{err:?}");
        }
    }

    #[test]
    fn refusals_name_their_stage_and_responses_carry_their_headers() {
        let expired = GatewayError::Unauthenticated(AuthFailure::new(Reason::TokenExpired, "x"));
        assert_eq!(expired.denied_at(), Some("jwtAuth"));
        let resp = expired.into_response("c1");
        assert_eq!(resp.status(), 401);
        assert!(
            resp.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .is_ok_and(|v| v.contains("error=\"invalid_token\""))
        );
        let unavailable =
            GatewayError::Unauthenticated(AuthFailure::new(Reason::JwksUnavailable, "x"));
        assert!(
            !unavailable
                .into_response("c1")
                .headers()
                .contains_key(header::WWW_AUTHENTICATE)
        );
        assert_eq!(
            GatewayError::TokenExchange(ExchangeFailure::Denied("no".into())).denied_at(),
            Some("tokenExchange")
        );
        assert_eq!(GatewayError::NoRoute.denied_at(), None);
        let resp = GatewayError::MethodNotAllowed("use POST").into_response("c1");
        assert_eq!(resp.headers()[header::ALLOW], "GET, POST, DELETE");
    }
}
