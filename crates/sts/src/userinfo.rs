//! OIDC userinfo (docs/sts.md §4.5): the profile of the user in a Graph token with `openid`.

use crate::state::Sts;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::own_tokens::GRAPH_AUDIENCES;

fn challenge(error: &'static str) -> Response {
    let mut r = StatusCode::UNAUTHORIZED.into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_str(&format!("Bearer error=\"{error}\"")).expect("ascii"),
    );
    r
}

/// The verified claims of an agentid-issued bearer token, or `None`.
pub async fn verified_bearer(sts: &Sts, headers: &HeaderMap) -> Option<Map<String, Value>> {
    verified_bearer_for(sts, headers).await
}

/// [`verified_bearer`] for callers holding the state by reference.
pub async fn verified_bearer_for(
    sts: &crate::state::StsState,
    headers: &HeaderMap,
) -> Option<Map<String, Value>> {
    let now = chrono::Utc::now().timestamp();
    match crate::own_tokens::graph_bearer(sts, headers, now).await {
        Ok(claims) => Some(claims),
        Err(e) => {
            tracing::debug!(reason = %e, "bearer refused");
            None
        }
    }
}

pub async fn userinfo(State(sts): State<Sts>, headers: HeaderMap) -> Response {
    let Some(c) = verified_bearer(&sts, &headers).await else {
        return challenge("invalid_token");
    };
    let aud_ok = match c.get("aud") {
        Some(Value::String(a)) => GRAPH_AUDIENCES.contains(&a.as_str()),
        _ => false,
    };
    let user_id = c
        .get("oid")
        .and_then(Value::as_str)
        .and_then(agentid_claims::guid::parse);
    let tid = c
        .get("tid")
        .and_then(Value::as_str)
        .and_then(agentid_claims::guid::parse);
    if !aud_ok || c.get("idtyp").and_then(Value::as_str) != Some("user") {
        return challenge("invalid_token");
    }
    let has_openid = c
        .get("scp")
        .and_then(Value::as_str)
        .is_some_and(|s| s.split(' ').any(|x| x.eq_ignore_ascii_case("openid")));
    if !has_openid {
        return challenge("insufficient_scope");
    }
    let (Some(uid), Some(tid)) = (user_id, tid) else {
        return challenge("invalid_token");
    };
    let user = match sts.store.user_by_id(&tid, &uid).await {
        Ok(Some(u)) if u.account_enabled => u,
        _ => return challenge("invalid_token"),
    };
    let mut body =
        json!({"sub": c.get("sub").cloned().unwrap_or(Value::Null), "name": user.display_name});
    for (k, v) in [
        ("given_name", &user.given_name),
        ("family_name", &user.surname),
        ("email", &user.mail),
    ] {
        if let Some(v) = v {
            body[k] = json!(v);
        }
    }
    let mut r = axum::Json(body).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}
