//! The two cookies of the browser flows (docs/sts.md §11.1): `agentid_flow` names a flow,
//! `agentid_session` an SSO session. Both hold only a random id; the database holds the rest.

use crate::state::StsState;
use axum::http::{HeaderMap, HeaderValue, header};

pub const FLOW: &str = "agentid_flow";
pub const SESSION: &str = "agentid_session";

/// The value of the cookie `name` in a request.
pub fn read(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

/// A `Set-Cookie` for `name` = `id`, kept `max_age` seconds; `Secure` when the STS is served
/// over HTTPS. `id` is one of our random tokens (URL-safe base64), never request text.
pub fn set(sts: &StsState, name: &str, id: &str, max_age: i64) -> HeaderValue {
    let secure = if sts.base.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={id}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}{secure}"
    ))
    .expect("a cookie of URL-safe base64 is a header value")
}

/// A `Set-Cookie` that removes the SSO session cookie.
pub fn clear_session() -> HeaderValue {
    HeaderValue::from_static("agentid_session=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0")
}
