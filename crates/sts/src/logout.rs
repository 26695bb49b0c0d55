//! `GET /{tenant}/oauth2/v2.0/logout` (docs/sts.md §11.4): ends the browser's SSO session and
//! redirects only to a URI registered on an application of the tenant.

use crate::authorize::redirect_matches;
use crate::signin::{page, session};
use crate::state::Sts;
use agentid_directory::applications::{RedirectPlatform, RedirectUri};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;

pub async fn logout(
    State(sts): State<Sts>,
    Path(segment): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let clear = session::end(&sts, &headers).await;
    let target = match (
        q.get("post_logout_redirect_uri"),
        sts.store.tenant_by_segment(&segment).await.ok().flatten(),
    ) {
        (Some(uri), Some(t)) => {
            let registered = match sts.store.applications(&t.id, false).await {
                Ok(apps) => apps.iter().any(|a| {
                    let platform = if a.is_public_client {
                        RedirectPlatform::PublicClient
                    } else {
                        RedirectPlatform::Web
                    };
                    a.redirect_uris.iter().any(|r| redirect_matches(r, uri))
                        && RedirectUri::parse(uri, platform).is_ok()
                }),
                Err(_) => false,
            };
            registered.then(|| uri.clone())
        }
        _ => None,
    };
    let mut r = match target.map(|uri| HeaderValue::from_str(&uri)) {
        Some(Ok(location)) => {
            let mut r = StatusCode::SEE_OTHER.into_response();
            r.headers_mut().insert(header::LOCATION, location);
            r
        }
        Some(Err(_)) => page::notice(StatusCode::OK, "Signed out", &["You have signed out."]),
        None => page::notice(
            StatusCode::OK,
            "Signed out",
            &["You have signed out. You can close this window."],
        ),
    };
    r.headers_mut().append(header::SET_COOKIE, clear);
    r
}
