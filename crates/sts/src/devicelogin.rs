//! The `/devicelogin` pages (sts.md §11.1, §11.2): enter the code, sign in, consent, done.
//! Server-rendered HTML that works without JavaScript (forms and 303 redirects). State lives
//! in the database (any replica continues a flow); the browser holds only a random flow id.

use crate::context::ClientAddr;
use crate::state::{Sts, StsState};
use crate::token::client_auth::{self, Client};
use crate::token::{consent, device, scope};
use agentid_directory::applications::{RedirectPlatform, RedirectUri};
use agentid_directory::device::{BrowserFlow, DeviceCode};
use agentid_directory::model::{Resource, Tenant, User};
use agentid_directory::secrets::{ct_eq, random_token, sha256_hex};
use agentid_directory::tokens::LockoutPolicy;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;

const COOKIE: &str = "agentid_flow";
const FLOW_LIFETIME: i64 = 600;
const CODE_FAILURES_PER_FLOW: i64 = 5;
/// Per client address: 10 wrong codes in 10 minutes lock code entry for 10 minutes.
const CODE_FAILURES_PER_ADDRESS: LockoutPolicy = LockoutPolicy {
    threshold: 10,
    lock_secs: 600,
    window: Some(600),
};

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

pub(crate) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t} – agentid</title><style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;color:#1b1b1b}}\
label{{display:block;margin:.8rem 0 .2rem}}input[type=text],input[type=password]{{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}}\
button{{margin-top:1rem;padding:.5rem 1.2rem;font-size:1rem}}.error{{color:#a4262c;border-left:3px solid #a4262c;padding-left:.6rem}}\
ul{{padding-left:1.2rem}}</style></head><body><main><h1>{t}</h1>{body}</main></body></html>",
        t = escape(title)
    );
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(crate) fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_str(to).expect("path"));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error_box(msg: Option<&str>) -> String {
    msg.map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m)))
        .unwrap_or_default()
}

pub(crate) fn internal<E: std::fmt::Display>(e: E) -> Response {
    tracing::error!(error = %e, "devicelogin failed");
    page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "<p>AADSTS50000: There was an error with our sign-in service. Try again.</p>",
    )
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    named_cookie(headers, COOKIE)
}

fn parse_form(body: &Bytes) -> HashMap<String, String> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The flow of this browser, if its cookie names a live one.
async fn current_flow(sts: &StsState, headers: &HeaderMap) -> Option<BrowserFlow> {
    let id = cookie_value(headers)?;
    let flow = sts.store.browser_flow(&sha256_hex(&id)).await.ok()??;
    (flow.expires_at > chrono::Utc::now().timestamp()).then_some(flow)
}

/// The `agentid_flow` cookie for a flow id.
pub(crate) fn flow_cookie(sts: &StsState, id: &str) -> HeaderValue {
    let secure = if sts.base.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Lax; Path=/; Max-Age={FLOW_LIFETIME}{secure}"
    ))
    .expect("cookie")
}

/// Starts a new flow and renders the code form with its cookie.
async fn new_flow_page(sts: &StsState, status: StatusCode, error: Option<&str>) -> Response {
    let id = random_token();
    let flow = BrowserFlow {
        id_sha256: sha256_hex(&id),
        csrf: random_token(),
        device_code_sha256: None,
        user_id: None,
        failures: 0,
        expires_at: chrono::Utc::now().timestamp() + FLOW_LIFETIME,
        authorize_request: None,
    };
    if let Err(e) = sts.store.insert_browser_flow(&flow).await {
        return internal(e);
    }
    let mut r = code_page(&flow, status, error);
    r.headers_mut()
        .insert(header::SET_COOKIE, flow_cookie(sts, &id));
    r
}

fn code_page(flow: &BrowserFlow, status: StatusCode, error: Option<&str>) -> Response {
    page(
        status,
        "Enter code",
        &format!(
            "<p>Enter the code displayed on your app or device.</p>{}<form method=\"post\" action=\"/devicelogin\">\
<input type=\"hidden\" name=\"csrf\" value=\"{}\"><label for=\"user_code\">Code</label>\
<input type=\"text\" id=\"user_code\" name=\"user_code\" autocomplete=\"off\" autocapitalize=\"characters\" required autofocus>\
<button type=\"submit\">Next</button></form>",
            error_box(error),
            flow.csrf
        ),
    )
}

/// Rejects cross-site posts: a wrong `Origin`, or a CSRF token that is not the flow's.
fn forged(
    sts: &StsState,
    headers: &HeaderMap,
    flow: &BrowserFlow,
    form: &HashMap<String, String>,
) -> bool {
    // Browsers send `Origin: null` for our own forms because every page carries
    // `Referrer-Policy: no-referrer`; the flow-bound CSRF token is what proves the form is ours.
    let origin_ok = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|o| o == sts.base || o == "null");
    let csrf_ok = form.get("csrf").is_some_and(|c| ct_eq(c, &flow.csrf));
    !(origin_ok && csrf_ok)
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
    let Some(mut flow) = current_flow(&sts, &headers).await else {
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
            let mut r = page(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                "<p>Too many wrong codes were entered from this network. Try again in a few minutes.</p>",
            );
            let wait = (until - chrono::Utc::now().timestamp()).max(1);
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&wait.to_string()).expect("number"),
            );
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
    let code = form.get("user_code").map(String::as_str).unwrap_or("");
    let now = chrono::Utc::now().timestamp();
    let found = match find_code(&sts, code).await {
        Ok(f) => f.filter(|(d, _)| d.status == "pending" && d.expires_at > now),
        Err(e) => return internal(e),
    };
    let Some((dc, _tenant)) = found else {
        // A failed attempt spends the form's CSRF token, as on the sign-in form.
        flow.failures += 1;
        flow.csrf = random_token();
        if let Err(e) = sts.store.update_browser_flow(&flow).await {
            return internal(e);
        }
        let _ = sts
            .store
            .record_signin_failure("", &ip_key, CODE_FAILURES_PER_ADDRESS)
            .await;
        return code_page(
            &flow,
            StatusCode::OK,
            Some(
                "AADSTS70018: The code you entered has expired, was already used, or is not valid. Check the code and try again.",
            ),
        );
    };
    flow.device_code_sha256 = Some(dc.device_code_sha256);
    flow.csrf = random_token();
    if let Err(e) = sts.store.update_browser_flow(&flow).await {
        return internal(e);
    }
    redirect("/devicelogin/signin")
}

async fn find_code(
    sts: &StsState,
    code: &str,
) -> Result<Option<(DeviceCode, Tenant)>, agentid_directory::DirectoryError> {
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
    let tenant = tenants
        .into_iter()
        .find(|t| t.id.to_string() == dc.tenant_id);
    Ok(tenant.map(|t| (dc, t)))
}

/// The flow's device code with its tenant and client, if still pending.
/// What a browser flow signs the user in for.
pub(crate) enum Target {
    /// A pending device code.
    Device(DeviceCode),
    /// An `/authorize` request that ends in a redirect with a code.
    Authorize(crate::authorize::AuthorizeRequest),
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
        let req: crate::authorize::AuthorizeRequest = serde_json::from_str(a).ok()?;
        let tenant = sts
            .store
            .tenant_by_id(&req.tenant_id.parse().ok()?)
            .await
            .ok()??;
        let client = client_auth::lookup(&sts.store, &tenant, &req.client_id)
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
    let client = client_auth::lookup(&sts.store, &tenant, &dc.client_id)
        .await
        .ok()?;
    (dc.status == "pending" && dc.expires_at > chrono::Utc::now().timestamp()).then_some((
        Target::Device(dc),
        tenant,
        client,
    ))
}

fn signin_page(
    flow: &BrowserFlow,
    client: &Client,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    signin_page_with(flow, client, status, error, None)
}

/// The sign-in form; with a live browser session, also "Continue as {upn}".
fn signin_page_with(
    flow: &BrowserFlow,
    client: &Client,
    status: StatusCode,
    error: Option<&str>,
    sso: Option<&User>,
) -> Response {
    let cont = sso
        .map(|u| {
            format!(
                "<form method=\"post\" action=\"/devicelogin/signin\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"continue\" value=\"1\">\
<button type=\"submit\">Continue as {}</button></form><p>Or sign in with another account:</p>",
                flow.csrf,
                escape(&u.upn)
            )
        })
        .unwrap_or_default();
    page(
        status,
        "Sign in",
        &format!(
            "<p>Are you trying to sign in to <strong>{}</strong>?</p><p>Only continue if you downloaded the app from a store or website that you trust.</p>{}{cont}\
<form method=\"post\" action=\"/devicelogin/signin\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<label for=\"username\">Email or user name</label><input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus>\
<label for=\"password\">Password</label><input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
<button type=\"submit\">Sign in</button></form>",
            escape(&client.display_name),
            error_box(error),
            flow.csrf
        ),
    )
}

const SESSION_COOKIE: &str = "agentid_session";
const SESSION_LIFETIME: i64 = 8 * 3600;

fn named_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
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

/// The enabled user of this browser's live SSO session in `tenant`, if any.
pub(crate) async fn session_user(
    sts: &StsState,
    headers: &HeaderMap,
    tenant: &Tenant,
) -> Option<(User, i64)> {
    let id = named_cookie(headers, SESSION_COOKIE)?;
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

/// Starts an SSO session; returns its cookie.
async fn start_session(sts: &StsState, tenant: &Tenant, user: &User) -> Option<HeaderValue> {
    let id = random_token();
    let now = chrono::Utc::now().timestamp();
    sts.store
        .insert_session(
            &sha256_hex(&id),
            &tenant.id.to_string(),
            &user.id.to_string(),
            now,
            now + SESSION_LIFETIME,
        )
        .await
        .ok()?;
    let secure = if sts.base.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={id}; HttpOnly; SameSite=Lax; Path=/; Max-Age={SESSION_LIFETIME}{secure}"
    ))
    .ok()
}

/// `GET /{tenant}/oauth2/v2.0/logout`: ends the browser session; redirects only to a URI
/// registered on an application of the tenant.
pub async fn logout(
    State(sts): State<Sts>,
    axum::extract::Path(segment): axum::extract::Path<String>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(id) = named_cookie(&headers, SESSION_COOKIE) {
        let _ = sts.store.delete_session(&sha256_hex(&id)).await;
    }
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
                    a.redirect_uris
                        .iter()
                        .any(|r| crate::authorize::redirect_matches(r, uri))
                        && RedirectUri::parse(uri, platform).is_ok()
                }),
                Err(_) => false,
            };
            registered.then(|| uri.clone())
        }
        _ => None,
    };
    let mut r = match target {
        Some(uri) => {
            let mut r = StatusCode::SEE_OTHER.into_response();
            match HeaderValue::from_str(&uri) {
                Ok(v) => {
                    r.headers_mut().insert(header::LOCATION, v);
                    r
                }
                Err(_) => page(StatusCode::OK, "Signed out", "<p>You have signed out.</p>"),
            }
        }
        None => page(
            StatusCode::OK,
            "Signed out",
            "<p>You have signed out. You can close this window.</p>",
        ),
    };
    r.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("agentid_session=; HttpOnly; SameSite=Lax; Path=/; Max-Age=0"),
    );
    r
}

pub async fn signin(State(sts): State<Sts>, headers: HeaderMap) -> Response {
    let Some(flow) = current_flow(&sts, &headers).await else {
        return redirect("/devicelogin");
    };
    match flow_context(&sts, &flow).await {
        Some((_, tenant, client)) => {
            let sso = session_user(&sts, &headers, &tenant).await.map(|(u, _)| u);
            signin_page_with(&flow, &client, StatusCode::OK, None, sso.as_ref())
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
    let Some(mut flow) = current_flow(&sts, &headers).await else {
        return redirect("/devicelogin");
    };
    let Some((dc, tenant, client)) = flow_context(&sts, &flow).await else {
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
    let sso = match form.get("continue").map(String::as_str) {
        Some("1") => session_user(&sts, &headers, &tenant).await.map(|(u, _)| u),
        _ => None,
    };
    let (user, fresh) = if let Some(u) = sso {
        (u, false)
    } else {
        let username = form
            .get("username")
            .map(String::as_str)
            .unwrap_or("")
            .trim()
            .to_string();
        let password = form.get("password").cloned().unwrap_or_default();
        let ip = addr.map(|a| a.0.0.ip().to_string());
        match crate::signin::check_password(&sts, &tenant, &username, &password, ip.as_deref())
            .await
        {
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
    flow.csrf = random_token();
    if let Err(e) = sts.store.update_browser_flow(&flow).await {
        return internal(e);
    }
    let mut resp = match missing_consent(&sts, &tenant, &client, &user, dc.scope()).await {
        Ok(m) if m.nothing_missing() => approve(&sts, &flow, &dc, &tenant, &client, &user).await,
        Ok(_) => redirect("/devicelogin/consent"),
        Err(msg) => decline(&sts, &dc, &msg).await,
    };
    if fresh && let Some(cookie) = start_session(&sts, &tenant, &user).await {
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
    e: crate::signin::SignInError,
) -> Response {
    use crate::signin::SignInError as S;
    flow.csrf = random_token();
    if let Err(err) = sts.store.update_browser_flow(flow).await {
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

/// For silent sign-in (`prompt=none`): is everything the request asks for already consented?
pub(crate) async fn consented(
    sts: &StsState,
    tenant: &Tenant,
    client: &Client,
    user: &User,
    scope: &str,
) -> bool {
    missing_consent(sts, tenant, client, user, scope)
        .await
        .is_ok_and(|m| m.nothing_missing())
}

/// What the user would have to consent to.
struct Missing {
    resource: Resource,
    values: Vec<(String, String, bool)>, // (value, display text, admin only)
    offline_access: bool,
}

impl Missing {
    fn nothing_missing(&self) -> bool {
        self.values.is_empty() && !self.offline_access
    }
    fn admin_only(&self, tenant: &Tenant) -> bool {
        !tenant.user_consent_allowed || self.values.iter().any(|(_, _, admin)| *admin)
    }
}

async fn missing_consent(
    sts: &StsState,
    tenant: &Tenant,
    client: &Client,
    user: &User,
    scope_str: &str,
) -> Result<Missing, String> {
    let param = scope::parse(scope_str).map_err(|e| e.to_string())?;
    let resolved = scope::resolve(&sts.store, tenant, param, &client.app_id.to_string())
        .await
        .map_err(|e| e.to_string())?;
    let granted = consent::granted(&sts.store, client, &resolved.resource, &user.id)
        .await
        .map_err(|e| e.to_string())?;
    let p = &resolved.param;
    let mut values = Vec::new();
    if p.is_default() {
        if granted.is_empty() {
            return Err(format!(
                "AADSTS65001: The application '{}' has no permissions configured that you could consent to.",
                client.display_name
            ));
        }
    } else {
        for v in &p.values {
            if granted.iter().any(|g| g.eq_ignore_ascii_case(v)) {
                continue;
            }
            let def = resolved
                .resource
                .scopes
                .iter()
                .find(|s| s.value.eq_ignore_ascii_case(v));
            let text = def
                .and_then(|d| d.user_consent_display_name.clone())
                .unwrap_or_else(|| v.clone());
            values.push((v.clone(), text, def.is_some_and(|d| d.kind == "Admin")));
        }
    }
    let offline_access = p.has_oidc("offline_access")
        && !consent::offline_access_granted(
            &sts.store,
            &tenant.id,
            client,
            &resolved.resource,
            &user.id,
            &granted,
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(Missing {
        resource: resolved.resource,
        values,
        offline_access,
    })
}

pub async fn consent_page(State(sts): State<Sts>, headers: HeaderMap) -> Response {
    let Some(flow) = current_flow(&sts, &headers).await else {
        return redirect("/devicelogin");
    };
    let Some((dc, tenant, client)) = flow_context(&sts, &flow).await else {
        return redirect("/devicelogin");
    };
    let Some(user) = flow_user(&sts, &tenant, &flow).await else {
        return redirect("/devicelogin/signin");
    };
    let m = match missing_consent(&sts, &tenant, &client, &user, dc.scope()).await {
        Ok(m) => m,
        Err(msg) => return decline(&sts, &dc, &msg).await,
    };
    if m.admin_only(&tenant) && !user.is_global_admin() {
        return page(
            StatusCode::OK,
            "Need admin approval",
            &format!(
                "<p>AADSTS90094: <strong>{}</strong> needs permission to access resources in your organization that only an admin can grant. Ask an admin to grant permission to this app before you can use it.</p>",
                escape(&client.display_name)
            ),
        );
    }
    let mut items: Vec<String> = m
        .values
        .iter()
        .map(|(v, text, _)| {
            if text == v {
                format!("<li>{}</li>", escape(v))
            } else {
                format!("<li>{} <small>({})</small></li>", escape(text), escape(v))
            }
        })
        .collect();
    if m.offline_access {
        items.push("<li>Maintain access to data you have given it access to <small>(offline_access)</small></li>".into());
    }
    let org = if user.is_global_admin() {
        "<p><input type=\"checkbox\" id=\"for_org\" name=\"for_org\" value=\"1\"> <label for=\"for_org\" style=\"display:inline\">Consent on behalf of your organization</label></p>"
    } else {
        ""
    };
    page(
        StatusCode::OK,
        "Permissions requested",
        &format!(
            "<p><strong>{}</strong> would like to access <strong>{}</strong> for you:</p><ul>{}</ul>\
<form method=\"post\" action=\"/devicelogin/consent\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">{org}\
<button type=\"submit\" name=\"action\" value=\"accept\">Accept</button> <button type=\"submit\" name=\"action\" value=\"cancel\">Cancel</button></form>",
            escape(&client.display_name),
            escape(&m.resource.display_name),
            items.join(""),
            flow.csrf
        ),
    )
}

async fn flow_user(sts: &StsState, tenant: &Tenant, flow: &BrowserFlow) -> Option<User> {
    let id = flow.user_id.as_deref()?.parse().ok()?;
    sts.store.user_by_id(&tenant.id, &id).await.ok()?
}

pub async fn submit_consent(State(sts): State<Sts>, headers: HeaderMap, body: Bytes) -> Response {
    let form = parse_form(&body);
    let Some(flow) = current_flow(&sts, &headers).await else {
        return redirect("/devicelogin");
    };
    let Some((dc, tenant, client)) = flow_context(&sts, &flow).await else {
        return redirect("/devicelogin");
    };
    let Some(user) = flow_user(&sts, &tenant, &flow).await else {
        return redirect("/devicelogin/signin");
    };
    if forged(&sts, &headers, &flow, &form) {
        return page(
            StatusCode::FORBIDDEN,
            "Request not verified",
            "<p>The form could not be verified. <a href=\"/devicelogin/consent\">Try again</a>.</p>",
        );
    }
    if form.get("action").map(String::as_str) != Some("accept") {
        audit(&sts, &tenant, &client, Some(&user), "refused", Some(65004)).await;
        return decline(
            &sts,
            &dc,
            "AADSTS65004: You declined to consent to access the app.",
        )
        .await;
    }
    let m = match missing_consent(&sts, &tenant, &client, &user, dc.scope()).await {
        Ok(m) => m,
        Err(msg) => return decline(&sts, &dc, &msg).await,
    };
    let for_org = user.is_global_admin() && form.get("for_org").map(String::as_str) == Some("1");
    if m.admin_only(&tenant) && !user.is_global_admin() {
        return redirect("/devicelogin/consent");
    }
    let (consent_type, principal) = if for_org {
        ("AllPrincipals", String::new())
    } else {
        ("Principal", user.id.to_string())
    };
    let client_sp = client.sp_id().to_string();
    let graph = agentid_directory::builtin::by_app_id(agentid_claims::wellknown::GRAPH_APP_ID)
        .expect("built in")
        .resource(&tenant.id);
    let mut resource_values: Vec<String> = m.values.iter().map(|(v, _, _)| v.clone()).collect();
    if m.offline_access && m.resource.is_graph() {
        resource_values.push("offline_access".into());
    }
    if !resource_values.is_empty()
        && let Err(e) = sts
            .store
            .merge_grant(
                &tenant.id,
                &client_sp,
                &m.resource.sp_id.to_string(),
                consent_type,
                &principal,
                &resource_values,
            )
            .await
    {
        return internal(e);
    }
    if m.offline_access
        && !m.resource.is_graph()
        && let Err(e) = sts
            .store
            .merge_grant(
                &tenant.id,
                &client_sp,
                &graph.sp_id.to_string(),
                consent_type,
                &principal,
                &["offline_access".to_string()],
            )
            .await
    {
        return internal(e);
    }
    approve(&sts, &flow, &dc, &tenant, &client, &user).await
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
            match crate::authorize::issue_code(sts, req, user, now).await {
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
            page(
                StatusCode::OK,
                "Sign-in canceled",
                &format!(
                    "<p>{}</p><p>You can close this window.</p>",
                    escape(message)
                ),
            )
        }
        Target::Authorize(req) => crate::authorize::redirect_error(req, "access_denied", message),
    }
}

pub async fn done(State(sts): State<Sts>, headers: HeaderMap) -> Response {
    let client = match current_flow(&sts, &headers).await {
        Some(flow) => match flow.device_code_sha256.as_deref() {
            Some(h) => match sts.store.device_code(h).await.ok().flatten() {
                Some(dc) if dc.status == "approved" || dc.status == "redeemed" => Some(dc),
                _ => None,
            },
            None => None,
        },
        None => None,
    };
    let Some(dc) = client else {
        return redirect("/devicelogin");
    };
    let name = match sts
        .store
        .tenant_by_id(&dc.tenant_id.parse().unwrap_or_default())
        .await
        .ok()
        .flatten()
    {
        Some(t) => client_auth::lookup(&sts.store, &t, &dc.client_id)
            .await
            .map(|c| c.display_name)
            .unwrap_or_default(),
        None => String::new(),
    };
    page(
        StatusCode::OK,
        "You're signed in",
        &format!(
            "<p>You have signed in to the <strong>{}</strong> application on your device. You may now close this window.</p>",
            escape(&name)
        ),
    )
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
    if let Err(err) = sts.store.insert_audit(&e).await {
        tracing::error!(error = %err, "cannot write audit event");
    }
    crate::state::log_audit(&e);
}
