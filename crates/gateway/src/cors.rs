//! CORS (docs/gateway.md §5.4): preflights are answered before authentication; other responses
//! of a CORS route get the allow headers when the origin is allowed.

use crate::body::{self, Body};
use crate::config::model::Cors;
use http::{HeaderMap, HeaderValue, Response, header};

/// The answer to a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`):
/// empty, with allow headers only when the origin is allowed.
pub fn preflight(cors: &Cors, origin: &str) -> Response<Body> {
    let mut resp = Response::new(body::empty());
    if !origin_allowed(cors, origin) {
        return resp;
    }
    let h = resp.headers_mut();
    allow_origin(cors, origin, h);
    let join = |v: &[String]| v.join(", ");
    if !cors.allow_methods.is_empty()
        && let Ok(v) = HeaderValue::from_str(&join(&cors.allow_methods))
    {
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
    }
    if !cors.allow_headers.is_empty()
        && let Ok(v) = HeaderValue::from_str(&join(&cors.allow_headers))
    {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
    }
    if let Some(age) = cors.max_age {
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(age));
    }
    if cors.allow_credentials {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    resp
}

/// Adds the allow headers to a response for a request from `origin`.
pub fn apply(cors: &Cors, origin: &str, h: &mut HeaderMap) {
    if !origin_allowed(cors, origin) {
        return;
    }
    allow_origin(cors, origin, h);
    if !cors.expose_headers.is_empty()
        && let Ok(v) = HeaderValue::from_str(&cors.expose_headers.join(", "))
    {
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
    }
    if cors.allow_credentials {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

fn origin_allowed(cors: &Cors, origin: &str) -> bool {
    cors.allow_origins.iter().any(|o| o == "*" || o == origin)
}

fn allow_origin(cors: &Cors, origin: &str, h: &mut HeaderMap) {
    let star = cors.allow_origins.iter().any(|o| o == "*") && !cors.allow_credentials;
    if star {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    } else if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}
