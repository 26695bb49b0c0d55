//! The `/devicelogin` pages (docs/sts.md §11.1, §11.2): enter the code, sign in, consent, done.
//! Server-rendered HTML that works without JavaScript (forms and 303 redirects). An `/authorize`
//! request signs in and consents on the same pages, then ends in a redirect to its client.
//! Pages, cookies, the flow, the session and consent come from the sign-in kit (`signin`).

use crate::authorize::{self, AuthorizeRequest};
use crate::context::ClientAddr;
use crate::password::{self, SignInError};
use crate::signin::consent::{self, Missing};
use crate::signin::page::{self, internal, redirect};
use crate::signin::{csrf, flow, session};
use crate::state::{Sts, StsState};
use crate::token::client_auth::{self, Client};
use crate::token::device;
use agentid_directory::device::{BrowserFlow, DeviceCode};
use agentid_directory::model::{Tenant, User};
use agentid_directory::tokens::LockoutPolicy;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use std::collections::HashMap;

const CODE_FAILURES_PER_FLOW: i64 = 5;
/// Per client address: 10 wrong codes in 10 minutes lock code entry for 10 minutes.
const CODE_FAILURES_PER_ADDRESS: LockoutPolicy = LockoutPolicy {
    threshold: 10,
    lock_secs: 600,
    window: Some(600),
};

/// A posted form: field name → value.
type Form = HashMap<String, String>;

fn parse_form(body: &Bytes) -> Form {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn field<'a>(form: &'a Form, name: &str) -> Option<&'a str> {
    form.get(name).map(String::as_str)
}

/// Rejects a post that did not come from our own form for `flow`.
fn forged(sts: &StsState, headers: &HeaderMap, flow: &BrowserFlow, form: &Form) -> bool {
    csrf::forged(sts, headers, &flow.csrf, field(form, "csrf"))
}

/// Starts a new flow and renders the code form with its cookie.
async fn new_flow_page(sts: &StsState, status: StatusCode, error: Option<&str>) -> Response {
    let (flow, cookie) = match flow::start(sts, None).await {
        Ok(started) => started,
        Err(e) => return internal(e),
    };
    let mut r = page::enter_code(status, &flow.csrf, error);
    r.headers_mut().insert(header::SET_COOKIE, cookie);
    r
}

pub async fn enter_code(State(sts): State<Sts>) -> Response {
    new_flow_page(&sts, StatusCode::OK, None).await
}

pub async fn submit_code(
    State(sts): State<Sts>,
    headers: HeaderMap,
    addr: Option<axum::Extension<ClientAddr>>,
    body: Bytes,
) -> Response {
    let form = parse_form(&body);
    let Some(mut flow) = flow::current(&sts, &headers).await else {
        return new_flow_page(
            &sts,
            StatusCode::OK,
            Some("Your sign-in session expired. Enter the code again."),
        )
        .await;
    };
    if forged(&sts, &headers, &flow, &form) {
        return new_flow_page(
            &sts,
            StatusCode::FORBIDDEN,
            Some("The form could not be verified. Enter the code again."),
        )
        .await;
    }
    let ip_key = format!(
        "devicecode-ip:{}",
        addr.map(|a| a.0.0.ip().to_string()).unwrap_or_default()
    );
    match sts.store.signin_locked_until("", &ip_key).await {
        Ok(Some(until)) => {
            let mut r = page::notice(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                &[
                    "Too many wrong codes were entered from this network. Try again in a few minutes.",
                ],
            );
            let wait = (until - chrono::Utc::now().timestamp()).max(1);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait));
            return r;
        }
        Ok(None) => {}
        Err(e) => return internal(e),
    }
    if flow.failures >= CODE_FAILURES_PER_FLOW {
        return new_flow_page(
            &sts,
            StatusCode::OK,
            Some("Too many wrong codes. Enter the code again."),
        )
        .await;
    }
    let code = field(&form, "user_code").unwrap_or("");
    let now = chrono::Utc::now().timestamp();
    let found = match find_code(&sts, code).await {
        Ok(f) => f.filter(|d| d.status == "pending" && d.expires_at > now),
        Err(e) => return internal(e),
    };
    let Some(dc) = found else {
        // A failed attempt spends the form's CSRF token, as on the sign-in form.
        flow.failures += 1;
        if let Err(e) = flow::renew_csrf(&sts, &mut flow).await {
            return internal(e);
        }
        let _ = sts
            .store
            .record_signin_failure("", &ip_key, CODE_FAILURES_PER_ADDRESS)
            .await;
        return page::enter_code(
            StatusCode::OK,
            &flow.csrf,
            Some(
                "AADSTS70018: The code you entered has expired, was already used, or is not valid. Check the code and try again.",
            ),
        );
    };
    flow.device_code_sha256 = Some(dc.device_code_sha256);
    if let Err(e) = flow::renew_csrf(&sts, &mut flow).await {
        return internal(e);
    }
    redirect("/devicelogin/signin")
}

/// The device code a user code stands for, in whichever tenant issued it.
async fn find_code(
    sts: &StsState,
    code: &str,
) -> Result<Option<DeviceCode>, agentid_directory::DirectoryError> {
    if code.trim().is_empty() || code.len() > 64 {
        return Ok(None);
    }
    let tenants = sts.store.tenants().await?;
    let hmacs: Vec<String> = tenants
        .iter()
        .map(|t| device::user_code_hmac(t, code))
        .collect();
    let Some(dc) = sts.store.device_code_by_user_code(&hmacs).await? else {
        return Ok(None);
    };
    Ok(tenants
        .iter()
        .any(|t| t.id.to_string() == dc.tenant_id)
        .then_some(dc))
}

/// What a browser flow signs the user in for.
pub(crate) enum Target {
    /// A pending device code.
    Device(DeviceCode),
    /// An `/authorize` request that ends in a redirect with a code.
    Authorize(AuthorizeRequest),
}

impl Target {
    fn scope(&self) -> &str {
        match self {
            Target::Device(d) => &d.scope,
            Target::Authorize(a) => &a.scope,
        }
    }
}

/// The flow's target with its tenant and client, while it can still be completed.
async fn flow_context(sts: &StsState, flow: &BrowserFlow) -> Option<(Target, Tenant, Client)> {
    if let Some(a) = flow.authorize_request.as_deref() {
        let req: AuthorizeRequest = serde_json::from_str(a).ok()?;
        let tenant = sts
            .store
            .tenant_by_id(&req.tenant_id.parse().ok()?)
            .await
            .ok()??;
        let client = client_auth::lookup(&sts.store.direct(), &tenant, &req.client_id)
            .await
            .ok()?;
        return Some((Target::Authorize(req), tenant, client));
    }
    let dc = sts
        .store
        .device_code(flow.device_code_sha256.as_deref()?)
        .await
        .ok()??;
    let tenant = sts
        .store
        .tenant_by_id(&dc.tenant_id.parse().ok()?)
        .await
        .ok()??;
    let client = client_auth::lookup(&sts.store.direct(), &tenant, &dc.client_id)
        .await
        .ok()?;
    (dc.status == "pending" && dc.expires_at > chrono::Utc::now().timestamp()).then_some((
        Target::Device(dc),
        tenant,
        client,
    ))
}

/// The host of a client ID metadata document client, whose identity is only its web address
/// (docs/sts.md §16.4): the pages say so.
fn unverified_host(flow: &BrowserFlow) -> Option<String> {
    let req: AuthorizeRequest = serde_json::from_str(flow.authorize_request.as_deref()?).ok()?;
    req.unverified_host()
}

/// The sign-in form of `flow`, without "Continue as".
fn signin_page(
    flow: &BrowserFlow,
    client: &Client,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let host = unverified_host(flow);
    page::sign_in(
        status,
        &flow.csrf,
        &client.display_name,
        host.as_deref(),
        error,
        None,
    )
}

pub async fn signin(State(sts): State<Sts>, headers: HeaderMap) -> Response {
    let Some(flow) = flow::current(&sts, &headers).await else {
        return redirect("/devicelogin");
    };
    match flow_context(&sts, &flow).await {
        Some((_, tenant, client)) => {
            let sso = session::user(&sts, &headers, &tenant).await.map(|(u, _)| u);
            let host = unverified_host(&flow);
            page::sign_in(
                StatusCode::OK,
                &flow.csrf,
                &client.display_name,
                host.as_deref(),
                None,
                sso.as_ref().map(|u| u.upn.as_str()),
            )
        }
        None => redirect("/devicelogin"),
    }
}

pub async fn submit_signin(
    State(sts): State<Sts>,
    headers: HeaderMap,
    addr: Option<axum::Extension<ClientAddr>>,
    body: Bytes,
) -> Response {
    let form = parse_form(&body);
    let Some(mut flow) = flow::current(&sts, &headers).await else {
        return redirect("/devicelogin");
    };
    let Some((target, tenant, client)) = flow_context(&sts, &flow).await else {
        return redirect("/devicelogin");
    };
    if forged(&sts, &headers, &flow, &form) {
        return signin_page(
            &flow,
            &client,
            StatusCode::FORBIDDEN,
            Some("The form could not be verified. Sign in again."),
        );
    }
    let sso = match field(&form, "continue") {
        Some("1") => session::user(&sts, &headers, &tenant).await.map(|(u, _)| u),
        _ => None,
    };
    let (user, fresh) = if let Some(u) = sso {
        (u, false)
    } else {
        let username = field(&form, "username").unwrap_or("").trim();
        let password = field(&form, "password").unwrap_or("");
        let ip = addr.map(|a| a.0.0.ip().to_string());
        match password::check_password(&sts, &tenant, username, password, ip.as_deref()).await {
            Ok(user) => (user, true),
            Err(e) => return refused_sign_in(&sts, &mut flow, &tenant, &client, e).await,
        }
    };
    if !user.account_enabled {
        audit(&sts, &tenant, &client, Some(&user), "refused", Some(50057)).await;
        return signin_page(
            &flow,
            &client,
            StatusCode::OK,
            Some("AADSTS50057: The user account is disabled."),
        );
    }
    flow.user_id = Some(user.id.to_string());
    if let Err(e) = flow::renew_csrf(&sts, &mut flow).await {
        return internal(e);
    }
    let mut resp = match consent::missing(&sts, &tenant, &client, &user, target.scope()).await {
        Ok(m) if m.nothing_missing() => {
            approve(&sts, &flow, &target, &tenant, &client, &user).await
        }
        Ok(_) => redirect("/devicelogin/consent"),
        Err(msg) => decline(&sts, &target, &msg).await,
    };
    if fresh && let Some(cookie) = session::start(&sts, &tenant, &user).await {
        resp.headers_mut().append(header::SET_COOKIE, cookie);
    }
    resp
}

/// The page after a refused sign-in. Any failure spends the form's CSRF token: the page
/// carries a new one, and the old one no longer verifies a post.
async fn refused_sign_in(
    sts: &StsState,
    flow: &mut BrowserFlow,
    tenant: &Tenant,
    client: &Client,
    e: SignInError,
) -> Response {
    use SignInError as S;
    if let Err(err) = flow::renew_csrf(sts, flow).await {
        return internal(err);
    }
    let (status, message, retry_after) = match e {
        S::BadCredentials { user } => {
            audit(sts, tenant, client, user.as_deref(), "refused", Some(50126)).await;
            (
                StatusCode::OK,
                "AADSTS50126: Error validating credentials due to invalid username or password.",
                None,
            )
        }
        S::UserLocked { .. } => (
            StatusCode::OK,
            "AADSTS50053: Your account is temporarily locked to prevent unauthorized use. Try again later.",
            None,
        ),
        S::AddressLocked { retry_after } => (
            StatusCode::TOO_MANY_REQUESTS,
            "AADSTS50053: Your account is temporarily locked to prevent unauthorized use. Try again later.",
            Some(retry_after),
        ),
        S::Busy(b) => (
            StatusCode::TOO_MANY_REQUESTS,
            "AADSTS90055: There are too many incoming requests. Wait a moment and sign in again.",
            Some(b.retry_after),
        ),
        S::Directory(err) => return internal(err),
    };
    let mut r = signin_page(flow, client, status, Some(message));
    if let Some(wait) = retry_after {
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
    }
    r
}

/// The flow's target, tenant, client and signed-in user, or where to send the browser instead.
async fn consent_context(
    sts: &StsState,
    headers: &HeaderMap,
) -> Result<(BrowserFlow, Target, Tenant, Client, User), Response> {
    let Some(flow) = flow::current(sts, headers).await else {
        return Err(redirect("/devicelogin"));
    };
    let Some((target, tenant, client)) = flow_context(sts, &flow).await else {
        return Err(redirect("/devicelogin"));
    };
    let Some(user) = flow::user(sts, &tenant, &flow).await else {
        return Err(redirect("/devicelogin/signin"));
    };
    Ok((flow, target, tenant, client, user))
}

pub async fn consent_page(State(sts): State<Sts>, headers: HeaderMap) -> Response {
    let (flow, target, tenant, client, user) = match consent_context(&sts, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let m = match consent::missing(&sts, &tenant, &client, &user, target.scope()).await {
        Ok(m) => m,
        Err(msg) => return decline(&sts, &target, &msg).await,
    };
    if m.admin_only(&tenant) && !user.is_global_admin() {
        return page::admin_approval(&client.display_name);
    }
    let host = unverified_host(&flow);
    page::consent(
        &flow.csrf,
        &client.display_name,
        host.as_deref(),
        &m,
        user.is_global_admin(),
    )
}

pub async fn submit_consent(State(sts): State<Sts>, headers: HeaderMap, body: Bytes) -> Response {
    let form = parse_form(&body);
    let (flow, target, tenant, client, user) = match consent_context(&sts, &headers).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if forged(&sts, &headers, &flow, &form) {
        return page::not_verified();
    }
    if field(&form, "action") != Some("accept") {
        audit(&sts, &tenant, &client, Some(&user), "refused", Some(65004)).await;
        return decline(
            &sts,
            &target,
            "AADSTS65004: You declined to consent to access the app.",
        )
        .await;
    }
    let m: Missing = match consent::missing(&sts, &tenant, &client, &user, target.scope()).await {
        Ok(m) => m,
        Err(msg) => return decline(&sts, &target, &msg).await,
    };
    let for_org = user.is_global_admin() && field(&form, "for_org") == Some("1");
    if m.admin_only(&tenant) && !user.is_global_admin() {
        return redirect("/devicelogin/consent");
    }
    if let Err(e) = consent::record(&sts, &tenant, &client, &user, &m, for_org).await {
        return internal(e);
    }
    approve(&sts, &flow, &target, &tenant, &client, &user).await
}

async fn approve(
    sts: &StsState,
    flow: &BrowserFlow,
    target: &Target,
    tenant: &Tenant,
    client: &Client,
    user: &User,
) -> Response {
    let now = chrono::Utc::now().timestamp();
    let user_id = user.id.to_string();
    match target {
        Target::Device(dc) => match sts
            .store
            .transition_device_code(
                &dc.device_code_sha256,
                "pending",
                "approved",
                Some(&user_id),
                Some(now),
            )
            .await
        {
            Ok(true) => {
                audit(sts, tenant, client, Some(user), "issued", None).await;
                redirect("/devicelogin/done")
            }
            Ok(false) => redirect("/devicelogin"),
            Err(e) => internal(e),
        },
        Target::Authorize(req) => {
            // The flow is spent: a reload cannot mint a second code.
            let mut spent = flow.clone();
            spent.authorize_request = None;
            spent.user_id = None;
            if let Err(e) = sts.store.update_browser_flow(&spent).await {
                return internal(e);
            }
            audit(sts, tenant, client, Some(user), "issued", None).await;
            match authorize::issue_code(sts, req, user, now).await {
                Ok(r) => r,
                Err(e) => internal(e),
            }
        }
    }
}

async fn decline(sts: &StsState, target: &Target, message: &str) -> Response {
    match target {
        Target::Device(dc) => {
            if let Err(e) = sts
                .store
                .transition_device_code(&dc.device_code_sha256, "pending", "declined", None, None)
                .await
            {
                return internal(e);
            }
            page::notice(
                StatusCode::OK,
                "Sign-in canceled",
                &[message, "You can close this window."],
            )
        }
        Target::Authorize(req) => authorize::redirect_error(req, "access_denied", message),
    }
}

pub async fn done(State(sts): State<Sts>, headers: HeaderMap) -> Response {
    let approved = match flow::current(&sts, &headers).await {
        Some(flow) => match flow.device_code_sha256.as_deref() {
            Some(h) => match sts.store.device_code(h).await.ok().flatten() {
                Some(dc) if dc.status == "approved" || dc.status == "redeemed" => Some(dc),
                _ => None,
            },
            None => None,
        },
        None => None,
    };
    let Some(dc) = approved else {
        return redirect("/devicelogin");
    };
    let name = match sts
        .store
        .tenant_by_id(&dc.tenant_id.parse().unwrap_or_default())
        .await
        .ok()
        .flatten()
    {
        Some(t) => client_auth::lookup(&sts.store.direct(), &t, &dc.client_id)
            .await
            .map(|c| c.display_name)
            .unwrap_or_default(),
        None => String::new(),
    };
    page::done(&name)
}

/// One audit event per sign-in and consent decision on the pages.
async fn audit(
    sts: &StsState,
    tenant: &Tenant,
    client: &Client,
    user: Option<&User>,
    result: &str,
    code: Option<i64>,
) {
    let ctx = crate::context::RequestContext::new(&HeaderMap::new(), None, None);
    let mut e = sts.audit_event(&ctx, "devicelogin");
    e.tenant_id = Some(tenant.id.to_string());
    e.grant_type = Some("device_code".into());
    e.client_id = Some(client.app_id.to_string());
    e.client_kind = Some(client.kind.as_str().into());
    e.user_id = user.map(|u| u.id.to_string());
    e.user_principal_name = user.map(|u| u.upn.clone());
    e.result = result.into();
    e.error_code = code;
    if let Err(err) = sts.store.insert_audit(&mut e).await {
        tracing::error!(error = %err, "cannot write audit event");
    }
    crate::state::log_audit(&e);
}
