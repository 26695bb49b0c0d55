//! Dynamic client registration (RFC 7591, docs/sts.md §16.3): `POST /{tenant}/oauth2/v2.0/register`.
//! Off unless the tenant's policy says `open` or `token` (then the initial access token is
//! required as a bearer token, compared with its stored hash). A registered client is a public
//! client application with its principal, written by the directory's one write path; it signs
//! users in with authorization code + PKCE S256 and is consented to like every other app.
//! Registrations are rate limited per tenant and audited.

use super::client_rules::{RATE_WINDOW_SECS, admit, client_name, flows, redirect_uris};
use crate::context::RequestContext;
use crate::state::Sts;
use agentid_directory::applications::RedirectUri;
use agentid_directory::mcp_clients::RegistrationMode;
use agentid_directory::secrets::{ct_eq, sha256_hex};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The members of RFC 7591 §2 agentid reads; others are ignored, as RFC 7591 §3.2.1 allows.
#[derive(Debug, Deserialize)]
struct Metadata {
    #[serde(default)]
    redirect_uris: Vec<String>,
    client_name: Option<String>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    jwks: Option<Value>,
    jwks_uri: Option<String>,
}

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    let mut r = (
        status,
        axum::Json(json!({"error": code, "error_description": description})),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED
        && let Ok(v) = HeaderValue::from_str(&format!(
            r#"Bearer error="invalid_token", error_description="{description}""#
        ))
    {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// The checks of RFC 7591 §2 for a public client that uses authorization code + PKCE.
fn check(m: &Metadata) -> Result<(String, Vec<RedirectUri>), (&'static str, String)> {
    let meta = "invalid_client_metadata";
    let uris = redirect_uris(&m.redirect_uris).map_err(|e| ("invalid_redirect_uri", e))?;
    if m.jwks.is_some() || m.jwks_uri.is_some() {
        return Err((
            meta,
            "Registered clients are public clients: no keys.".into(),
        ));
    }
    flows(m.grant_types.as_deref(), m.response_types.as_deref()).map_err(|e| (meta, e))?;
    let name = client_name(m.client_name.as_deref(), "MCP client").map_err(|e| (meta, e))?;
    Ok((name, uris))
}

pub async fn register(
    State(sts): State<Sts>,
    Path(segment): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ctx = RequestContext::new(&headers, None, None);
    let tenant = match crate::discovery::tenant_or_error(&sts, &ctx, &segment).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let mut audit = sts.audit_event(&ctx, "register");
    audit.tenant_id = Some(tenant.id.to_string());
    audit.category = Some("directory".into());
    audit.operation = Some("POST /oauth2/v2.0/register".into());
    let resp = registered(&sts, &ctx, &tenant.id, &headers, &body, &mut audit).await;
    audit.result = if resp.status() == StatusCode::CREATED {
        "success".into()
    } else {
        "refused".into()
    };
    if let Err(e) = sts.store.insert_audit(&mut audit).await {
        tracing::error!(error = %e, "writing the registration audit event failed");
    }
    crate::state::log_audit(&audit);
    resp
}

async fn registered(
    sts: &Sts,
    ctx: &RequestContext,
    tenant: &Uuid,
    headers: &HeaderMap,
    body: &[u8],
    audit: &mut agentid_directory::audit::AuditEvent,
) -> Response {
    let policy = match sts.store.registration_policy(tenant).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "reading the registration policy failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "Try again later.",
            );
        }
    };
    match policy.mode {
        RegistrationMode::Off => {
            audit.error = Some("registration_disabled".into());
            return error(
                StatusCode::FORBIDDEN,
                "access_denied",
                "Dynamic client registration is not enabled for this tenant.",
            );
        }
        RegistrationMode::Open => {}
        RegistrationMode::Token => {
            let presented = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            let ok = match (presented, &policy.initial_access_token_sha256) {
                (Some(t), Some(hash)) => ct_eq(&sha256_hex(t), hash),
                _ => false,
            };
            if !ok {
                audit.error = Some("initial_access_token".into());
                return error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_token",
                    "A valid initial access token is required to register a client.",
                );
            }
        }
    }
    if !admit(tenant, ctx.now) {
        audit.error = Some("rate_limited".into());
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            "Too many registrations; retry later.",
        );
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(RATE_WINDOW_SECS as u32),
        );
        return r;
    }
    if body.len() > MAX_BODY_BYTES {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_client_metadata",
            "The registration request is too large.",
        );
    }
    let meta: Metadata = match serde_json::from_slice(body) {
        Ok(m) => m,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_client_metadata",
                "The body must be a JSON object of client metadata.",
            );
        }
    };
    let (name, uris) = match check(&meta) {
        Ok(v) => v,
        Err((code, description)) => {
            audit.error = Some(code.into());
            return error(StatusCode::BAD_REQUEST, code, &description);
        }
    };
    // The name is the registrant's claim: consent pages and the directory say so.
    let shown = format!("{name} (unverified, self-registered)");
    let app_id = match sts
        .store
        .register_public_client(tenant, &shown, &uris)
        .await
    {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "registering a client failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "Try again later.",
            );
        }
    };
    audit.client_id = Some(app_id.to_string());
    audit.client_kind = Some("public".into());
    audit.target = Some(app_id.to_string());
    // RFC 7591 §3.2.1: the server's values replace the requested ones; the client reads them.
    let _ = meta.token_endpoint_auth_method;
    let mut r = (
        StatusCode::CREATED,
        axum::Json(json!({
            "client_id": app_id.to_string(),
            "client_id_issued_at": ctx.now,
            "client_name": name,
            "redirect_uris": uris.iter().map(RedirectUri::as_str).collect::<Vec<_>>(),
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        })),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::super::client_rules::RATE_LIMIT;
    use super::*;

    fn meta(v: Value) -> Metadata {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn hostile_metadata_is_refused() {
        let cases = [
            (json!({}), "invalid_redirect_uri"),
            (
                json!({"redirect_uris": ["javascript:alert(1)"]}),
                "invalid_redirect_uri",
            ),
            (
                json!({"redirect_uris": ["http://evil.example/cb"]}),
                "invalid_redirect_uri",
            ),
            (
                json!({"redirect_uris": ["https://a.example/cb#f"]}),
                "invalid_redirect_uri",
            ),
            (
                json!({"redirect_uris": ["http://127.0.0.1/cb"], "jwks_uri": "https://k"}),
                "invalid_client_metadata",
            ),
            (
                json!({"redirect_uris": ["http://127.0.0.1/cb"], "grant_types": ["client_credentials"]}),
                "invalid_client_metadata",
            ),
            (
                json!({"redirect_uris": ["http://127.0.0.1/cb"], "response_types": ["token"]}),
                "invalid_client_metadata",
            ),
            (
                json!({"redirect_uris": ["http://127.0.0.1/cb"], "client_name": "a\u{0}b"}),
                "invalid_client_metadata",
            ),
            (
                json!({"redirect_uris": ["http://127.0.0.1/cb"], "client_name": "x".repeat(201)}),
                "invalid_client_metadata",
            ),
        ];
        for (v, want) in cases {
            assert_eq!(check(&meta(v.clone())).unwrap_err().0, want, "{v}");
        }
        let many: Vec<String> = (0..11).map(|i| format!("http://127.0.0.1/{i}")).collect();
        assert!(check(&meta(json!({"redirect_uris": many}))).is_err());
        let (name, uris) = check(&meta(
            json!({"redirect_uris": ["http://localhost:3030/callback"],
            "token_endpoint_auth_method": "client_secret_post", "client_name": " Claude "}),
        ))
        .unwrap();
        assert_eq!((name.as_str(), uris.len()), ("Claude", 1));
    }

    #[test]
    fn the_rate_limit_is_per_tenant_and_windowed() {
        let t = Uuid::new_v4();
        for _ in 0..RATE_LIMIT {
            assert!(admit(&t, 1000));
        }
        assert!(!admit(&t, 1000));
        assert!(admit(&Uuid::new_v4(), 1000));
        assert!(admit(&t, 1000 + RATE_WINDOW_SECS));
    }
}
