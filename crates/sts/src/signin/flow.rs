//! The browser flow (docs/sts.md §11.1): one device login or one authorize request, kept in the
//! database (any replica continues it) under the SHA-256 of the random id in the `agentid_flow`
//! cookie, with the CSRF token its forms carry.

use super::cookies;
use crate::state::StsState;
use agentid_directory::DirectoryError;
use agentid_directory::device::BrowserFlow;
use agentid_directory::model::{Tenant, User};
use agentid_directory::secrets::{random_token, sha256_hex};
use axum::http::{HeaderMap, HeaderValue};

/// How long a flow lives, in seconds.
pub const LIFETIME: i64 = 600;

/// Stores a new flow (for `authorize_request`, the serialised request; else a device login)
/// and returns it with the cookie that names it.
pub async fn start(
    sts: &StsState,
    authorize_request: Option<String>,
) -> Result<(BrowserFlow, HeaderValue), DirectoryError> {
    let id = random_token();
    let flow = BrowserFlow {
        id_sha256: sha256_hex(&id),
        csrf: random_token(),
        device_code_sha256: None,
        user_id: None,
        failures: 0,
        expires_at: chrono::Utc::now().timestamp() + LIFETIME,
        authorize_request,
    };
    sts.store.insert_browser_flow(&flow).await?;
    Ok((flow, cookies::set(sts, cookies::FLOW, &id, LIFETIME)))
}

/// The flow of this browser, if its cookie names a live one.
pub async fn current(sts: &StsState, headers: &HeaderMap) -> Option<BrowserFlow> {
    let id = cookies::read(headers, cookies::FLOW)?;
    let flow = sts.store.browser_flow(&sha256_hex(&id)).await.ok()??;
    (flow.expires_at > chrono::Utc::now().timestamp()).then_some(flow)
}

/// The user who signed in on this flow, if any.
pub async fn user(sts: &StsState, tenant: &Tenant, flow: &BrowserFlow) -> Option<User> {
    let id = flow.user_id.as_deref()?.parse().ok()?;
    sts.store.user_by_id(&tenant.id, &id).await.ok()?
}

/// Saves `flow` with a new CSRF token: the token of the page just posted no longer verifies.
pub async fn renew_csrf(sts: &StsState, flow: &mut BrowserFlow) -> Result<(), DirectoryError> {
    flow.csrf = random_token();
    sts.store.update_browser_flow(flow).await
}
