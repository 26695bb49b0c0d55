//! Metadata documents (docs/sts.md §4): v2 and v1 discovery, JWKS, MSAL instance discovery, user
//! realm discovery, probes and the error page.

use crate::context::RequestContext;
use crate::error::OAuthError;
use crate::state::Sts;
use agentid_directory::model::Tenant;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;

pub(crate) fn cacheable(ctx: &RequestContext, body: Value) -> Response {
    let mut resp = axum::Json(body).into_response();
    ctx.decorate(&mut resp, false);
    let h = resp.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

pub(crate) async fn tenant_or_error(
    sts: &Sts,
    ctx: &RequestContext,
    segment: &str,
) -> Result<Tenant, Response> {
    match sts.store.tenant_by_segment(segment).await {
        Ok(Some(t)) => Ok(t),
        Ok(None) => Err(ctx.error_response(&sts.base, &OAuthError::unknown_tenant(segment))),
        Err(e) => Err(ctx.error_response(&sts.base, &crate::token::internal(e))),
    }
}

fn hostport(base: &str) -> String {
    base.split_once("://")
        .map(|(_, h)| h.to_string())
        .unwrap_or_default()
}

/// The v2 discovery document, exactly the members of docs/sts.md §4.1.
pub fn v2_document(base: &str, tid: &str) -> Value {
    let hp = hostport(base);
    json!({
        "issuer": format!("{base}/{tid}/v2.0"),
        "authorization_endpoint": format!("{base}/{tid}/oauth2/v2.0/authorize"),
        "token_endpoint": format!("{base}/{tid}/oauth2/v2.0/token"),
        "device_authorization_endpoint": format!("{base}/{tid}/oauth2/v2.0/devicecode"),
        "end_session_endpoint": format!("{base}/{tid}/oauth2/v2.0/logout"),
        "userinfo_endpoint": format!("{base}/oidc/userinfo"),
        "jwks_uri": format!("{base}/{tid}/discovery/v2.0/keys"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token",
            "urn:ietf:params:oauth:grant-type:jwt-bearer", "urn:ietf:params:oauth:grant-type:device_code", "user_fic"],
        "code_challenge_methods_supported": ["S256"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "auth_time", "nonce", "name",
            "preferred_username", "email", "oid", "tid", "ver"],
        "request_uri_parameter_supported": false,
        "http_logout_supported": true,
        "frontchannel_logout_supported": false,
        "cloud_instance_name": hp,
        "msgraph_host": hp,
    })
}

/// The v1-style document (§4.2): v2 endpoints, v1 issuer.
pub fn v1_document(base: &str, tid: &str) -> Value {
    let mut d = v2_document(base, tid);
    d["issuer"] = json!(format!("{base}/{tid}/"));
    d["jwks_uri"] = json!(format!("{base}/{tid}/discovery/keys"));
    d["userinfo_endpoint"] = json!(format!("{base}/{tid}/openid/userinfo"));
    d["scopes_supported"] = json!(["openid"]);
    d["microsoft_multi_refresh_token"] = json!(true);
    d
}

pub async fn openid_v2(
    State(sts): State<Sts>,
    Path(segment): Path<String>,
    headers: HeaderMap,
) -> Response {
    let ctx = RequestContext::new(&headers, None, None);
    match tenant_or_error(&sts, &ctx, &segment).await {
        Ok(t) => cacheable(&ctx, v2_document(&sts.base, &t.id.to_string())),
        Err(r) => r,
    }
}

pub async fn openid_v1(
    State(sts): State<Sts>,
    Path(segment): Path<String>,
    headers: HeaderMap,
) -> Response {
    let ctx = RequestContext::new(&headers, None, None);
    match tenant_or_error(&sts, &ctx, &segment).await {
        Ok(t) => cacheable(&ctx, v1_document(&sts.base, &t.id.to_string())),
        Err(r) => r,
    }
}

pub async fn jwks(
    State(sts): State<Sts>,
    Path(segment): Path<String>,
    headers: HeaderMap,
) -> Response {
    let ctx = RequestContext::new(&headers, None, None);
    let tenants = if segment.eq_ignore_ascii_case("common") {
        match sts.store.tenants().await {
            Ok(t) => t,
            Err(e) => return ctx.error_response(&sts.base, &crate::token::internal(e)),
        }
    } else {
        match tenant_or_error(&sts, &ctx, &segment).await {
            Ok(t) => vec![t],
            Err(r) => return r,
        }
    };
    let mut keys = Vec::new();
    for t in tenants {
        match sts.keys.jwks(&t.id, ctx.now).await {
            Ok(k) => keys.extend(k),
            Err(e) => return ctx.error_response(&sts.base, &crate::token::internal(e)),
        }
    }
    cacheable(&ctx, json!({ "keys": keys }))
}

pub async fn instance_discovery(
    State(sts): State<Sts>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let ctx = RequestContext::new(&headers, None, None);
    let refuse = || ctx.error_response(&sts.base, &OAuthError::invalid_instance());
    let Some(endpoint) = q
        .get("authorization_endpoint")
        .and_then(|e| url::Url::parse(e).ok())
    else {
        return refuse();
    };
    let Ok(base) = url::Url::parse(&sts.base) else {
        return refuse();
    };
    let same_host = endpoint.host_str().map(str::to_ascii_lowercase)
        == base.host_str().map(str::to_ascii_lowercase)
        && endpoint.port_or_known_default() == base.port_or_known_default();
    let segment = endpoint
        .path_segments()
        .and_then(|mut s| s.next())
        .unwrap_or("")
        .to_string();
    if !same_host {
        return refuse();
    }
    let Ok(Some(tenant)) = sts.store.tenant_by_segment(&segment).await else {
        return refuse();
    };
    let hp = hostport(&sts.base);
    cacheable(
        &ctx,
        json!({
            "tenant_discovery_endpoint": format!("{}/{}/v2.0/.well-known/openid-configuration", sts.base, tenant.id),
            "api-version": "1.1",
            "metadata": [{"preferred_network": hp, "preferred_cache": hp, "aliases": [hp]}],
        }),
    )
}

/// MSAL's user realm discovery before a password grant: every agentid account is managed.
pub async fn user_realm(
    State(sts): State<Sts>,
    Path(upn): Path<String>,
    headers: HeaderMap,
) -> Response {
    let ctx = RequestContext::new(&headers, None, None);
    let domain = upn
        .rsplit_once('@')
        .map(|(_, d)| d.to_string())
        .unwrap_or_default();
    let mut resp = axum::Json(json!({
        "ver": "1.0",
        "account_type": "Managed",
        "domain_name": domain,
        "cloud_instance_name": hostport(&sts.base),
        "cloud_audience_urn": "urn:federation:MicrosoftOnline",
    }))
    .into_response();
    ctx.decorate(&mut resp, true);
    resp
}

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(sts): State<Sts>) -> Response {
    if sts.drain.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response()
    } else if sts.store.ping().await {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
    }
}

pub async fn error_page(Query(q): Query<HashMap<String, String>>) -> Response {
    let code: String = q
        .get("code")
        .map(|c| c.chars().filter(char::is_ascii_digit).take(8).collect())
        .unwrap_or_default();
    let text = match code.as_str() {
        "7000215" => "The client secret is wrong. Send the secret's value, not its id.",
        "700016" => {
            "The application was not found in this tenant. Check the client id and the tenant in the URL."
        }
        "65001" => {
            "Nobody has consented to this application using the requested scopes. Create an oauth2PermissionGrant."
        }
        "70021" | "700211" | "700213" => {
            "No federated identity credential matches the assertion's issuer, subject and audience exactly."
        }
        "700024" => {
            "The client assertion has expired or is not yet valid. Check clocks and token rotation."
        }
        "82001" => "This combination of agent identity, blueprint and protocol is not allowed.",
        _ => "See the error description returned with this code.",
    };
    let mut resp = Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>AADSTS{code}</title></head><body><h1>AADSTS{code}</h1><p>{text}</p></body></html>"
    ))
    .into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}
