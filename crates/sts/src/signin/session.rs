//! The SSO session (docs/sts.md §11.1): after a password sign-in the browser holds
//! `agentid_session`, naming a database session (tenant, user, `auth_time`) for 8 hours. It
//! offers "Continue as" on the sign-in page and lets `prompt=none` succeed.

use super::cookies;
use crate::state::StsState;
use agentid_directory::model::{Tenant, User};
use agentid_directory::secrets::{random_token, sha256_hex};
use axum::http::{HeaderMap, HeaderValue};

/// How long a session lives, in seconds.
pub const LIFETIME: i64 = 8 * 3600;

/// The enabled user of this browser's live session in `tenant`, with the session's
/// `auth_time`. Sessions older than a revocation of the user's sessions do not count.
pub async fn user(sts: &StsState, headers: &HeaderMap, tenant: &Tenant) -> Option<(User, i64)> {
    let id = cookies::read(headers, cookies::SESSION)?;
    let (tid, uid, auth_time) = sts
        .store
        .session(&sha256_hex(&id), chrono::Utc::now().timestamp())
        .await
        .ok()??;
    if tid != tenant.id.to_string() {
        return None;
    }
    let user = sts
        .store
        .user_by_id(&tenant.id, &uid.parse().ok()?)
        .await
        .ok()??;
    (user.account_enabled && user.sessions_revoked_at.is_none_or(|r| r < auth_time))
        .then_some((user, auth_time))
}

/// Starts a session for `user`; returns its cookie, or `None` if it could not be stored (the
/// sign-in still succeeds, without SSO).
pub async fn start(sts: &StsState, tenant: &Tenant, user: &User) -> Option<HeaderValue> {
    let id = random_token();
    let now = chrono::Utc::now().timestamp();
    sts.store
        .insert_session(
            &sha256_hex(&id),
            &tenant.id.to_string(),
            &user.id.to_string(),
            now,
            now + LIFETIME,
        )
        .await
        .ok()?;
    Some(cookies::set(sts, cookies::SESSION, &id, LIFETIME))
}

/// Ends this browser's session, if it has one; returns the cookie that removes it.
pub async fn end(sts: &StsState, headers: &HeaderMap) -> HeaderValue {
    if let Some(id) = cookies::read(headers, cookies::SESSION) {
        let _ = sts.store.delete_session(&sha256_hex(&id)).await;
    }
    cookies::clear_session()
}
