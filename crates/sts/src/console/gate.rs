//! Who may see the console (docs/console.md §3): the browser's console session, re-checked
//! against the directory on every request (account enabled, sessions not revoked since, a
//! directory role), and the CSRF token bound to that session.

use super::page;
use crate::signin::{cookies, csrf};
use crate::state::StsState;
use agentid_directory::console_sessions::ConsoleSession;
use agentid_directory::model::{ROLE_AGENT_ID_ADMIN, ROLE_GLOBAL_ADMIN, Tenant, User};
use agentid_directory::secrets::{random_token, sha256_hex};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

/// The console session cookie; it holds only a random id.
pub const COOKIE: &str = "agentid_console";
/// A session lives as long as the ID token it was opened with.
pub const LIFETIME: i64 = 3600;

/// A signed-in administrator of `tenant`.
pub struct Admin {
    pub tenant: Tenant,
    pub user: User,
    /// The CSRF token of this session, for the page's forms.
    pub csrf: String,
}

/// True for a user holding a directory role that opens the console.
pub fn may_administer(user: &User) -> bool {
    user.roles
        .iter()
        .any(|r| r == ROLE_GLOBAL_ADMIN || r == ROLE_AGENT_ID_ADMIN)
}

/// The signed-in administrator, or the response to send instead: to sign-in without a live
/// session, 403 for a user without a role.
pub async fn admin(sts: &StsState, headers: &HeaderMap) -> Result<Admin, Response> {
    let now = chrono::Utc::now().timestamp();
    let signin = || page::redirect("/console/signin");
    let Some(id) = cookies::read(headers, COOKIE) else {
        return Err(signin());
    };
    let session = match sts.store.console_session(&sha256_hex(&id), now).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(signin()),
        Err(e) => return Err(page::internal(e)),
    };
    let (Ok(tid), Ok(uid)) = (session.tenant_id.parse(), session.user_id.parse()) else {
        return Err(signin());
    };
    let tenant = match sts.store.tenant_by_id(&tid).await {
        Ok(Some(t)) => t,
        Ok(None) => return Err(signin()),
        Err(e) => return Err(page::internal(e)),
    };
    let user = match sts.store.user_by_id(&tid, &uid).await {
        Ok(Some(u)) => u,
        Ok(None) => return Err(signin()),
        Err(e) => return Err(page::internal(e)),
    };
    // A disabled account or a revocation after sign-in ends the session.
    if !user.account_enabled
        || user
            .sessions_revoked_at
            .is_some_and(|r| r >= session.created_at)
    {
        return Err(signin());
    }
    if !may_administer(&user) {
        return Err(page::forbidden(&user.upn, &session.csrf));
    }
    Ok(Admin {
        tenant,
        user,
        csrf: session.csrf,
    })
}

/// [`admin`] for a form post: also refuses (403) a post without this session's CSRF token.
pub async fn admin_post(
    sts: &StsState,
    headers: &HeaderMap,
    form: &crate::form::Form,
) -> Result<Admin, Response> {
    let a = admin(sts, headers).await?;
    if csrf::forged(sts, headers, &a.csrf, form.get("csrf")) {
        return Err(page::notice(
            StatusCode::FORBIDDEN,
            "Request not verified",
            &["This form did not come from your console session. Open the page again and retry."],
        ));
    }
    Ok(a)
}

/// Opens a session for `user` of `tenant`; returns its cookie.
pub async fn open(
    sts: &StsState,
    tenant: &Tenant,
    user: &User,
) -> Result<HeaderValue, agentid_directory::DirectoryError> {
    let id = random_token();
    let now = chrono::Utc::now().timestamp();
    sts.store
        .insert_console_session(&ConsoleSession {
            id_sha256: sha256_hex(&id),
            tenant_id: tenant.id.to_string(),
            user_id: user.id.to_string(),
            csrf: random_token(),
            created_at: now,
            expires_at: now + LIFETIME,
        })
        .await?;
    Ok(cookies::set(sts, COOKIE, &id, LIFETIME))
}

/// Ends this browser's console session; returns the cookie that removes it.
pub async fn close(sts: &StsState, headers: &HeaderMap) -> HeaderValue {
    if let Some(id) = cookies::read(headers, COOKIE) {
        let _ = sts.store.delete_console_session(&sha256_hex(&id)).await;
    }
    cookies::set(sts, COOKIE, "", 0)
}
