//! Signing in to the console (docs/console.md §2): the console is the built-in public client
//! [`CONSOLE_APP_ID`]; it sends the browser through this STS's own `/authorize` (code + PKCE
//! S256, `state` and `nonce`), redeems the code at this STS's `/token` in process, verifies the
//! ID token with the shared verifier and opens a console session.

use super::{gate, page};
use crate::context::ClientAddr;
use crate::own_tokens;
use crate::signin::cookies;
use crate::state::Sts;
use agentid_claims::UnverifiedJwt;
use agentid_claims::verify::Audiences;
use agentid_directory::builtin::{CONSOLE_APP_ID, console_redirect_uri};
use agentid_directory::device::BrowserFlow;
use agentid_directory::model::Tenant;
use agentid_directory::secrets::{ct_eq, random_token, sha256_hex};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// The cookie naming the sign-in in progress (a browser flow row).
const LOGIN_COOKIE: &str = "agentid_console_login";
/// How long a sign-in may take, in seconds.
const LOGIN_LIFETIME: i64 = 600;

/// What the callback checks, kept server-side under the login cookie; `state` is the flow's
/// `csrf` field.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Login {
    tenant: String,
    nonce: String,
    verifier: String,
}

fn query(raw: Option<&str>) -> HashMap<String, String> {
    raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// `GET /console/signin[?tenant=…]`: starts the authorization request, or asks for the tenant
/// when the STS serves several and none is named.
pub async fn start(State(sts): State<Sts>, req: Request) -> Response {
    let q = query(req.uri().query());
    let tenant: Tenant = match q.get("tenant").filter(|t| !t.is_empty()) {
        Some(seg) => match sts.store.tenant_by_segment(seg).await {
            Ok(Some(t)) => t,
            Ok(None) => return page::choose_tenant(Some("No tenant has that name or id.")),
            Err(e) => return page::internal(e),
        },
        None => match sts.store.tenants().await {
            Ok(mut all) if all.len() == 1 => all.remove(0),
            Ok(_) => return page::choose_tenant(None),
            Err(e) => return page::internal(e),
        },
    };
    let (state, nonce, verifier) = (random_token(), random_token(), random_token());
    let login = Login {
        tenant: tenant.id.to_string(),
        nonce: nonce.clone(),
        verifier: verifier.clone(),
    };
    let id = random_token();
    let flow = BrowserFlow {
        id_sha256: sha256_hex(&id),
        csrf: state.clone(),
        device_code_sha256: None,
        user_id: None,
        failures: 0,
        expires_at: chrono::Utc::now().timestamp() + LOGIN_LIFETIME,
        authorize_request: Some(serde_json::to_string(&login).expect("serialisable")),
    };
    if let Err(e) = sts.store.insert_browser_flow(&flow).await {
        return page::internal(e);
    }
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let params: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", CONSOLE_APP_ID)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", &console_redirect_uri(&sts.base))
        .append_pair("scope", "openid profile")
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .finish();
    let mut r = page::redirect_to(&format!("/{}/oauth2/v2.0/authorize?{params}", tenant.id));
    r.headers_mut().append(
        header::SET_COOKIE,
        cookies::set(&sts, LOGIN_COOKIE, &id, LOGIN_LIFETIME),
    );
    r
}

fn refused(message: &str) -> Response {
    page::notice(
        StatusCode::BAD_REQUEST,
        "Sign-in failed",
        &[message, "Start again from the console's sign-in page."],
    )
}

/// `GET /console/callback?code=…&state=…`: checks `state`, redeems the code with the PKCE
/// verifier, checks the ID token (signature, issuer, audience, lifetime, `nonce`), opens the
/// session.
pub async fn callback(State(sts): State<Sts>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let q = query(parts.uri.query());
    let Some(id) = cookies::read(&parts.headers, LOGIN_COOKIE) else {
        return refused("This browser has no console sign-in in progress.");
    };
    let now = chrono::Utc::now().timestamp();
    let mut flow = match sts.store.browser_flow(&sha256_hex(&id)).await {
        Ok(Some(f)) if f.expires_at > now => f,
        Ok(_) => return refused("The sign-in has expired."),
        Err(e) => return page::internal(e),
    };
    let Some(login) = flow
        .authorize_request
        .as_deref()
        .and_then(|j| serde_json::from_str::<Login>(j).ok())
    else {
        return refused("This browser has no console sign-in in progress.");
    };
    if !q.get("state").is_some_and(|s| ct_eq(s, &flow.csrf)) {
        return refused("The response does not belong to this sign-in (state mismatch).");
    }
    // One response per sign-in.
    flow.expires_at = 0;
    if let Err(e) = sts.store.update_browser_flow(&flow).await {
        return page::internal(e);
    }
    if let Some(err) = q.get("error") {
        let desc = q.get("error_description").map(String::as_str).unwrap_or("");
        return refused(&format!("{err}: {desc}"));
    }
    let Some(code) = q.get("code") else {
        return refused("The response carries no authorization code.");
    };
    let addr = parts.extensions.get::<ClientAddr>().copied();
    let tokens = match redeem(&sts, &login, code, &parts.headers, addr).await {
        Ok(t) => t,
        Err(m) => return refused(&m),
    };
    let Some(id_token) = tokens.get("id_token").and_then(Value::as_str) else {
        return refused("The token response carries no ID token.");
    };
    let (tenant, user) = match verify_id_token(&sts, &login, id_token).await {
        Ok(v) => v,
        Err(m) => return refused(&m),
    };
    let session = match gate::open(&sts, &tenant, &user).await {
        Ok(c) => c,
        Err(e) => return page::internal(e),
    };
    let mut r = page::redirect_to("/console");
    r.headers_mut().append(header::SET_COOKIE, session);
    r.headers_mut()
        .append(header::SET_COOKIE, cookies::set(&sts, LOGIN_COOKIE, "", 0));
    r
}

/// Redeems `code` at this STS's token endpoint, in process.
async fn redeem(
    sts: &Sts,
    login: &Login,
    code: &str,
    headers: &HeaderMap,
    addr: Option<ClientAddr>,
) -> Result<Value, String> {
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("client_id", CONSOLE_APP_ID)
        .append_pair("code", code)
        .append_pair("redirect_uri", &console_redirect_uri(&sts.base))
        .append_pair("code_verifier", &login.verifier)
        .append_pair("scope", "openid profile")
        .finish();
    let mut req = Request::new(Body::from(form));
    *req.method_mut() = axum::http::Method::POST;
    let h = req.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    if let Some(ua) = headers.get(header::USER_AGENT) {
        h.insert(header::USER_AGENT, ua.clone());
    }
    if let Some(a) = addr {
        req.extensions_mut().insert(a);
    }
    let resp =
        crate::token::token_endpoint(State(sts.clone()), Path(login.tenant.clone()), req).await;
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 256 * 1024)
        .await
        .map_err(|_| "The token response could not be read.".to_string())?;
    let v: Value =
        serde_json::from_slice(&body).map_err(|_| "The token response is not JSON.".to_string())?;
    if !status.is_success() {
        return Err(v
            .get("error_description")
            .and_then(Value::as_str)
            .unwrap_or("The code was refused.")
            .to_string());
    }
    Ok(v)
}

/// Verifies the ID token with the shared verifier (this tenant's keys, v2 issuer, the
/// console's audience, lifetime) and checks `nonce`; returns the tenant and the live user.
async fn verify_id_token(
    sts: &Sts,
    login: &Login,
    id_token: &str,
) -> Result<(Tenant, agentid_directory::model::User), String> {
    let bad = |what: &str| format!("The ID token is not valid: {what}.");
    let tid: uuid::Uuid = login.tenant.parse().map_err(|_| bad("tenant"))?;
    let jwt = UnverifiedJwt::parse(id_token).map_err(|e| bad(&e.to_string()))?;
    let v = own_tokens::verifier(sts, vec![sts.issuer_v2(&tid)])
        .audiences(Audiences::OneOf(vec![CONSOLE_APP_ID.to_string()]));
    let now = chrono::Utc::now().timestamp();
    own_tokens::verify(sts, &tid, &jwt, &v, now)
        .await
        .map_err(|e| bad(&e.to_string()))?;
    if !jwt
        .str_claim("nonce")
        .is_some_and(|n| ct_eq(n, &login.nonce))
    {
        return Err(bad("nonce mismatch"));
    }
    let oid = jwt
        .str_claim("oid")
        .and_then(agentid_claims::guid::parse)
        .ok_or_else(|| bad("no oid"))?;
    let tenant = sts
        .store
        .tenant_by_id(&tid)
        .await
        .ok()
        .flatten()
        .ok_or_else(|| bad("unknown tenant"))?;
    let user = sts
        .store
        .user_by_id(&tid, &oid)
        .await
        .ok()
        .flatten()
        .filter(|u| u.account_enabled)
        .ok_or_else(|| bad("unknown or disabled user"))?;
    Ok((tenant, user))
}

/// `POST /console/signout`: ends the session (CSRF-checked like every console form).
pub async fn signout(
    State(sts): State<Sts>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let form = match crate::form::Form::parse(&body) {
        Ok(f) => f,
        Err(_) => return page::bad_form(),
    };
    // A signed-in user without a role may still sign out: check the session's token only.
    if let Some(id) = cookies::read(&headers, gate::COOKIE) {
        let now = chrono::Utc::now().timestamp();
        if let Ok(Some(s)) = sts.store.console_session(&sha256_hex(&id), now).await
            && crate::signin::csrf::forged(&sts, &headers, &s.csrf, form.get("csrf"))
        {
            return page::notice(
                StatusCode::FORBIDDEN,
                "Request not verified",
                &["Sign out from a console page."],
            );
        }
    }
    let cookie = gate::close(&sts, &headers).await;
    let mut r = page::notice(
        StatusCode::OK,
        "Signed out",
        &["You have signed out of the agentid console."],
    );
    r.headers_mut().append(header::SET_COOKIE, cookie);
    r.into_response()
}
