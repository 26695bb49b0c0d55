//! `/{tenant}/oauth2/v2.0/authorize` (docs/sts.md §11.3): authorization code with PKCE for public
//! and confidential clients. Validation errors before the redirect URI is trusted are shown on a
//! page; after that, errors go back to the client as a redirect. Sign-in and consent are the
//! same pages as the device-code flow (`devicelogin`), which hands the request back here to
//! issue the code.

use crate::mcp::client_metadata;
use crate::signin::consent::consented;
use crate::signin::page::{self, internal};
use crate::signin::{flow, session};
use crate::state::{Sts, StsState};
use crate::token::client_auth::{self, ClientKind};
use crate::token::scope;
use agentid_directory::applications::{RedirectPlatform, RedirectUri};
use agentid_directory::device::AuthCode;
use agentid_directory::model::User;
use agentid_directory::secrets::{random_token, sha256_hex};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A validated authorization request, kept on the browser flow until the code is issued.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthorizeRequest {
    pub tenant_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub form_post: bool,
    /// The client ID metadata document URL the client named itself with (docs/sts.md §16.4);
    /// `client_id` is then the application made for it. The pages say it is unverified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_metadata_url: Option<String>,
}

impl AuthorizeRequest {
    /// The host of a metadata-document client: all that identifies it.
    pub fn unverified_host(&self) -> Option<String> {
        let u = url::Url::parse(self.client_metadata_url.as_deref()?).ok()?;
        u.host_str().map(str::to_string)
    }
}

/// Exact redirect URI matching, except that the port of `http://localhost` and
/// `http://127.0.0.1` is ignored (native apps pick a free port).
pub fn redirect_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(r), Ok(q)) = (url::Url::parse(registered), url::Url::parse(requested)) else {
        return false;
    };
    let loopback = |u: &url::Url| {
        u.scheme() == "http" && matches!(u.host_str(), Some("localhost") | Some("127.0.0.1"))
    };
    loopback(&r)
        && loopback(&q)
        && r.host_str() == q.host_str()
        && r.path().trim_end_matches('/') == q.path().trim_end_matches('/')
        && r.query() == q.query()
}

fn with_params(uri: &str, params: &[(&str, &str)]) -> Option<String> {
    let mut u = url::Url::parse(uri).ok()?;
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    Some(u.to_string())
}

/// Sends the browser back to the client: a 303 with query parameters, or a form post.
fn deliver(req: &AuthorizeRequest, params: Vec<(&str, String)>) -> Response {
    let mut all: Vec<(&str, String)> = params;
    if let Some(s) = &req.state {
        all.push(("state", s.clone()));
    }
    if req.form_post {
        return page::form_post(&req.redirect_uri, &all);
    }
    let refs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // A registered URI that is not a URL cannot be redirected to: say so instead of panicking.
    let Some(location) =
        with_params(&req.redirect_uri, &refs).and_then(|l| HeaderValue::from_str(&l).ok())
    else {
        return page::error(
            50011,
            "The application's registered redirect URI is not a valid absolute URI.",
        );
    };
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut().insert(header::LOCATION, location);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub fn redirect_error(req: &AuthorizeRequest, error: &str, description: &str) -> Response {
    deliver(
        req,
        vec![
            ("error", error.to_string()),
            ("error_description", description.to_string()),
        ],
    )
}

/// Issues the code for a signed-in, consented user and redirects to the client.
pub async fn issue_code(
    sts: &StsState,
    req: &AuthorizeRequest,
    user: &User,
    now: i64,
) -> Result<Response, agentid_directory::DirectoryError> {
    let code = random_token();
    sts.store
        .insert_auth_code(&AuthCode {
            code_sha256: sha256_hex(&code),
            tenant_id: req.tenant_id.clone(),
            client_id: req.client_id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            code_challenge: req.code_challenge.clone(),
            scope: req.scope.clone(),
            user_id: user.id.to_string(),
            nonce: req.nonce.clone(),
            auth_time: now,
            created_at: now,
            redeemed: 0,
        })
        .await?;
    Ok(deliver(req, vec![("code", code)]))
}

pub async fn authorize(
    State(sts): State<Sts>,
    Path(segment): Path<String>,
    method: Method,
    headers: axum::http::HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let raw = if method == Method::POST {
        String::from_utf8_lossy(&body).into_owned()
    } else {
        q.unwrap_or_default()
    };
    let p: HashMap<String, String> = form_urlencoded::parse(raw.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| p.get(k).map(String::as_str).filter(|v| !v.is_empty());

    // Before the redirect URI is validated, every error is a page.
    let tenant = match sts.store.tenant_by_segment(&segment).await {
        Ok(Some(t)) => t,
        Ok(None) => return page::error(90002, &format!("Tenant '{segment}' not found.")),
        Err(e) => return internal(e),
    };
    let Some(client_id) = get("client_id") else {
        return page::error(
            900144,
            "The request must contain the parameter 'client_id'.",
        );
    };
    // A URL client_id is a client ID metadata document (docs/sts.md §16.4): its document lists
    // the redirect URIs, and the application made for it is the client from here on.
    let (client_id, document) = if client_metadata::is_url(client_id) {
        let refused = |e: client_metadata::ClientMetadataError| {
            tracing::info!(client_id, error = ?e, "client ID metadata document refused");
            page::error(
                700016,
                &format!("The client '{client_id}' cannot be used: {e}."),
            )
        };
        let doc = match client_metadata::authorize_document(
            &sts.store,
            &sts.client_documents,
            &tenant,
            client_id,
        )
        .await
        {
            Ok(d) => d,
            Err(e) => return refused(e),
        };
        // Nothing is written for a request the document does not allow.
        let listed = get("redirect_uri").is_some_and(|r| {
            doc.redirect_uris
                .iter()
                .any(|u| redirect_matches(u.as_str(), r))
        });
        if !listed {
            return page::error(
                50011,
                &format!(
                    "The redirect URI specified in the request is not one of those of the client metadata document '{client_id}'."
                ),
            );
        }
        let now = chrono::Utc::now().timestamp();
        match client_metadata::application(&sts.store, &tenant, &doc, now).await {
            Ok(app) => (app.to_string(), Some(doc)),
            Err(e) => return refused(e),
        }
    } else {
        (client_id.to_string(), None)
    };
    let client = match client_auth::lookup(&sts.store.direct(), &tenant, &client_id).await {
        Ok(c) => c,
        Err(e) => return page::error(e.code, &e.description),
    };
    if matches!(client.kind, ClientKind::Agent | ClientKind::Blueprint) {
        return page::error(
            82001,
            "Agent identities and blueprints cannot sign users in.",
        );
    }
    let registered: Vec<String> = match (&document, &client.app) {
        // The document's current list, not the copy stored when the application was made.
        (Some(doc), _) => doc.redirect_uri_strings(),
        (None, Some(app)) => app.redirect_uris.clone(),
        (None, None) if client.app_id.to_string() == agentid_directory::builtin::CONSOLE_APP_ID => {
            vec![agentid_directory::builtin::console_redirect_uri(&sts.base)]
        }
        (None, None) => agentid_directory::builtin::GRAPH_CLI_REDIRECT_URIS
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let Some(redirect_uri) = get("redirect_uri") else {
        return page::error(
            900144,
            "The request must contain the parameter 'redirect_uri'.",
        );
    };
    // Registered URIs were checked when written; this also covers ones stored before that rule.
    let platform = match &client.app {
        Some(app) if !app.is_public_client => RedirectPlatform::Web,
        _ => RedirectPlatform::PublicClient,
    };
    if !registered.iter().any(|r| redirect_matches(r, redirect_uri))
        || RedirectUri::parse(redirect_uri, platform).is_err()
    {
        return page::error(
            50011,
            &format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{}'.",
                client.app_id
            ),
        );
    }
    let response_mode = get("response_mode").unwrap_or("query");
    let mut req = AuthorizeRequest {
        tenant_id: tenant.id.to_string(),
        client_id: client.app_id.to_string(),
        redirect_uri: redirect_uri.to_string(),
        scope: get("scope").unwrap_or("openid").to_string(),
        state: get("state").map(str::to_string),
        nonce: get("nonce").map(str::to_string),
        code_challenge: get("code_challenge").unwrap_or("").to_string(),
        form_post: response_mode == "form_post",
        client_metadata_url: document.as_ref().map(|d| d.url.clone()),
    };

    // From here on, errors go back to the client.
    if response_mode != "query" && response_mode != "form_post" {
        req.form_post = false;
        return redirect_error(
            &req,
            "invalid_request",
            "AADSTS9002313: response_mode must be query or form_post.",
        );
    }
    if get("response_type") != Some("code") {
        return redirect_error(
            &req,
            "unsupported_response_type",
            "AADSTS70005: response_type must be 'code'.",
        );
    }
    if req.code_challenge.is_empty() || get("code_challenge_method") != Some("S256") {
        return redirect_error(
            &req,
            "invalid_request",
            "AADSTS50149: PKCE is required: send code_challenge with code_challenge_method=S256.",
        );
    }
    // RFC 8707: the resource names the token's audience (docs/sts.md §16.2).
    if let Some(resource) = get("resource") {
        match crate::mcp::resource::scope_for(&sts.store, &tenant, resource, get("scope")).await {
            Ok(s) => req.scope = s,
            Err(e) => return redirect_error(&req, e.error, &e.description),
        }
    }
    if let Err(e) = scope::parse(&req.scope) {
        return redirect_error(
            &req,
            e.error,
            &format!("AADSTS{}: {}", e.code, e.description),
        );
    }
    if get("prompt") == Some("none") {
        // Silent: only with a live browser session and nothing left to consent to.
        let Some((user, auth_time)) = session::user(&sts, &headers, &tenant).await else {
            return redirect_error(
                &req,
                "login_required",
                "AADSTS50058: A silent sign-in request was sent but no user is signed in.",
            );
        };
        if !consented(&sts, &tenant, &client, &user, &req.scope).await {
            return redirect_error(
                &req,
                "consent_required",
                "AADSTS65001: The user has not consented to the requested scopes.",
            );
        }
        return match issue_code(&sts, &req, &user, auth_time).await {
            Ok(r) => r,
            Err(e) => internal(e),
        };
    }
    let request = serde_json::to_string(&req).expect("serialisable");
    let cookie = match flow::start(&sts, Some(request)).await {
        Ok((_, cookie)) => cookie,
        Err(e) => return internal(e),
    };
    let mut r = page::redirect("/devicelogin/signin");
    r.headers_mut().insert(header::SET_COOKIE, cookie);
    r
}
