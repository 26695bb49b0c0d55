//! The token endpoint: `POST /{tenant}/oauth2/v2.0/token`.

pub mod client_auth;
mod code;
pub(crate) mod consent;
pub(crate) mod device;
mod grants;
pub mod mint;
pub mod scope;

use crate::context::{ClientAddr, RequestContext};
use crate::error::OAuthError;
use crate::form::{Form, MAX_FORM_BYTES, check_content_type};
use crate::state::Sts;
use agentid_directory::audit::AuditEvent;
use agentid_directory::model::{Tenant, User};
use agentid_directory::tokens::RefreshRecord;
use axum::extract::{Path, Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use client_auth::{Client, ClientKind, Credential};
use std::sync::Mutex;

/// Logs an internal failure with the trace id and returns Entra's server_error.
pub(crate) fn internal<E: std::fmt::Display>(e: E) -> OAuthError {
    tracing::error!(error = %e, "internal error at the token endpoint");
    OAuthError::server_error()
}

/// A token request after parsing: everything the grants read.
pub struct TokenRequest<'a> {
    pub sts: &'a crate::state::StsState,
    pub ctx: &'a RequestContext,
    pub tenant: &'a Tenant,
    pub form: &'a Form,
    pub headers: &'a HeaderMap,
    /// The directory as of this request (docs/performance.md §3.1): cached reads.
    pub view: &'a agentid_directory::hot::View<'a>,
    audit: &'a Mutex<AuditEvent>,
}

/// What a successful grant issues; committed with its audit event in one transaction.
pub struct Issued {
    pub body: serde_json::Value,
    pub refresh: Option<RefreshRecord>,
    /// SHA-256 of a refresh token this issuance supersedes.
    pub supersede: Option<String>,
}

impl TokenRequest<'_> {
    fn with_audit(&self, f: impl FnOnce(&mut AuditEvent)) {
        if let Ok(mut a) = self.audit.lock() {
            f(&mut a);
        }
    }

    pub fn audit_client(&self, c: &Client) {
        self.with_audit(|a| {
            a.client_id = Some(c.app_id.to_string());
            a.client_kind = Some(c.kind.as_str().into());
            if c.kind == ClientKind::Agent {
                a.agent_id = Some(c.app_id.to_string());
                a.blueprint_id = c.blueprint_app_id().map(|b| b.to_string());
            }
        });
    }

    pub fn audit_credential(&self, cred: &Credential) {
        self.with_audit(|a| {
            a.credential_type = Some(cred.kind().into());
            a.credential_id = cred.id();
            // An agent proves itself with T1: that is the token it exchanges (docs/audit.md §2).
            if let Credential::T1 { uti } = cred {
                a.parent_uti = Some(uti.clone());
                a.parent_kind = Some("t1".into());
            }
        });
    }

    /// The token this issuance is exchanged from, when it is not the client's credential: the
    /// user's token for on-behalf-of, T2′ for `user_fic` (docs/audit.md §2).
    pub fn audit_parent(&self, kind: &'static str, uti: Option<&str>) {
        self.with_audit(|a| {
            a.parent_kind = Some(kind.into());
            a.parent_uti = uti.map(str::to_string);
        });
    }

    pub fn audit_federated(&self, iss: &str, sub: &str) {
        self.with_audit(|a| {
            a.credential_type = Some("federated".into());
            a.federated_issuer = Some(iss.into());
            a.federated_subject = Some(sub.into());
        });
    }

    pub fn audit_agent(&self, agent: &uuid::Uuid, blueprint: Option<&uuid::Uuid>) {
        self.with_audit(|a| {
            a.agent_id = Some(agent.to_string());
            a.blueprint_id = blueprint.map(|b| b.to_string());
        });
    }

    pub fn audit_user(&self, u: &User) {
        self.with_audit(|a| {
            a.user_id = Some(u.id.to_string());
            a.user_principal_name = Some(u.upn.clone());
        });
    }

    pub fn audit_refresh_family(&self, family: &str) {
        self.with_audit(|a| a.refresh_family_id = Some(family.into()));
    }

    pub fn audit_issued(
        &self,
        r: &scope::ResolvedScope,
        scp: Option<&str>,
        roles: &[String],
        m: &mint::Minted,
        family: Option<&str>,
    ) {
        self.with_audit(|a| {
            a.resource = Some(r.resource.app_id.to_string());
            a.audience = Some(r.audience.clone());
            a.scopes_granted = scp.map(str::to_string);
            a.roles = (!roles.is_empty()).then(|| roles.join(" "));
            a.token_id = Some(m.uti.clone());
            a.token_expires_at = Some(m.exp);
            if family.is_some() {
                a.refresh_family_id = family.map(str::to_string);
            }
        });
    }

    pub fn audit_t1(&self, m: &mint::Minted, scope: &str) {
        self.with_audit(|a| {
            a.resource = Some(agentid_claims::wellknown::TOKEN_EXCHANGE_APP_ID.into());
            a.audience = Some(agentid_claims::wellknown::TOKEN_EXCHANGE_APP_ID.into());
            a.scopes_granted = Some(scope.into());
            a.token_id = Some(m.uti.clone());
            a.token_expires_at = Some(m.exp);
        });
    }
}

const GRANTS: [&str; 8] = [
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "refresh_token",
    "password",
    "urn:ietf:params:oauth:grant-type:device_code",
    "device_code",
    "authorization_code",
    "user_fic",
];

/// The two form endpoints that share parsing, error shape and audit.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Token,
    DeviceCode,
}

pub async fn token_endpoint(state: State<Sts>, path: Path<String>, req: Request) -> Response {
    form_endpoint(state, path, req, Endpoint::Token).await
}

pub async fn devicecode_endpoint(state: State<Sts>, path: Path<String>, req: Request) -> Response {
    form_endpoint(state, path, req, Endpoint::DeviceCode).await
}

async fn form_endpoint(
    State(sts): State<Sts>,
    Path(segment): Path<String>,
    req: Request,
    endpoint: Endpoint,
) -> Response {
    let (parts, body) = req.into_parts();
    let addr = parts.extensions.get::<ClientAddr>().copied();
    let ctx = RequestContext::new(&parts.headers, parts.uri.query(), addr);
    let endpoint_name = if endpoint == Endpoint::Token {
        "token"
    } else {
        "devicecode"
    };
    // The first decision's event; a decision taken again (the directory moved) starts a new
    // one rather than each one copying a template (docs/performance.md §3.4).
    let mut first_event = Some(sts.audit_event(&ctx, endpoint_name));
    let form = async {
        check_content_type(
            parts
                .headers
                .get(axum::http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
        )?;
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| {
                OAuthError::malformed(
                    "The request body is larger than 64 KiB or could not be read.",
                )
            })?;
        Form::parse(&bytes)
    }
    .await;
    let form = match form {
        Ok(form) => form,
        Err(err) => {
            let mut event = first_event.unwrap_or_default();
            refuse(&sts, &ctx, &mut event, &err, None).await;
            return ctx.error_response(&sts.base, &err);
        }
    };
    // client_credentials decides at the directory generation this process last saw, without
    // reading it, and its audit row is written only if the generation has not moved; if it
    // has, the request is decided again at a generation read afresh (docs/performance.md §3.1).
    // The other grants write as they go (codes, refresh tokens) and read it first.
    let mut assume =
        endpoint == Endpoint::Token && form.get("grant_type") == Some("client_credentials");
    loop {
        let view = if assume {
            sts.hot.assumed_view(&sts.store).await
        } else {
            sts.hot.view(&sts.store).await
        };
        let audit = Mutex::new(
            first_event
                .take()
                .unwrap_or_else(|| sts.audit_event(&ctx, endpoint_name)),
        );
        let result = match &view {
            Ok(view) => {
                decide(
                    &sts,
                    &ctx,
                    &parts.headers,
                    &segment,
                    &form,
                    view,
                    &audit,
                    endpoint,
                )
                .await
            }
            Err(e) => Err(internal(e)),
        };
        let mut event = audit.into_inner().unwrap_or_default();
        let condition = view.as_ref().ok().and_then(|v| v.condition());
        if view.as_ref().is_ok_and(|v| v.is_stale()) {
            assume = false;
            continue;
        }
        match result {
            Ok(issued) => match commit(&sts, &issued, &mut event, condition).await {
                Ok(true) => {
                    let mut resp = axum::Json(issued.body).into_response();
                    ctx.decorate(&mut resp, true);
                    return resp;
                }
                // The directory moved since the generation this was decided at.
                Ok(false) => assume = false,
                Err(e) => {
                    let err = internal(e);
                    refuse(&sts, &ctx, &mut event, &err, None).await;
                    return ctx.error_response(&sts.base, &err);
                }
            },
            Err(err) => {
                if refuse(&sts, &ctx, &mut event, &err, condition).await {
                    return ctx.error_response(&sts.base, &err);
                }
                assume = false;
            }
        }
    }
}

/// Decides a parsed request at one view of the directory: what to issue, or the refusal.
#[allow(clippy::too_many_arguments)]
async fn decide(
    sts: &crate::state::StsState,
    ctx: &RequestContext,
    headers: &HeaderMap,
    segment: &str,
    form: &Form,
    view: &agentid_directory::hot::View<'_>,
    audit: &Mutex<AuditEvent>,
    endpoint: Endpoint,
) -> Result<Issued, OAuthError> {
    let tenant = view
        .tenant_by_segment(segment)
        .await
        .map_err(internal)?
        .ok_or_else(|| OAuthError::unknown_tenant(segment))?;
    if let Ok(mut a) = audit.lock() {
        a.tenant_id = Some(tenant.id.to_string());
        a.scopes_requested = form.get("scope").map(str::to_string);
    }
    let req = TokenRequest {
        sts,
        ctx,
        tenant: &tenant,
        form,
        headers,
        view,
        audit,
    };
    if endpoint == Endpoint::DeviceCode {
        return device::authorize(&req).await;
    }
    let grant = form.require("grant_type")?.to_string();
    if let Ok(mut a) = audit.lock() {
        a.grant_type = Some(grant.clone());
    }
    match grant.as_str() {
        "client_credentials" => grants::client_credentials(&req).await,
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => grants::on_behalf_of(&req).await,
        "refresh_token" => grants::refresh_token(&req).await,
        "password" => grants::password(&req).await,
        "user_fic" => grants::user_fic(&req).await,
        "authorization_code" => code::redeem(&req).await,
        "urn:ietf:params:oauth:grant-type:device_code" | "device_code" => {
            device::redeem(&req).await
        }
        g if GRANTS.contains(&g) => Err(OAuthError::unsupported_grant(g)),
        g => Err(OAuthError::unsupported_grant(g)),
    }
}

/// Persists an issuance: refresh-token rotation and the audit event, atomically. With a
/// `generation` (an assumed view's), the event is written only if the directory generation is
/// still that one: `Ok(false)` means it moved and nothing was written.
async fn commit(
    sts: &crate::state::StsState,
    issued: &Issued,
    event: &mut AuditEvent,
    generation: Option<u64>,
) -> Result<bool, agentid_directory::DirectoryError> {
    event.result = "issued".into();
    if event.parent_kind.is_none() {
        event.parent_kind = parent_kind_of(event);
    }
    if issued.supersede.is_none() && issued.refresh.is_none() {
        // Nothing but the event to write: one statement, group-committed.
        let written = match generation {
            Some(g) => sts.store.insert_audit_at(event, g).await?,
            None => {
                sts.store.insert_audit(event).await?;
                true
            }
        };
        if written {
            crate::state::log_audit(event);
        }
        return Ok(written);
    }
    if generation.is_some() {
        // Only grants that read the generation first issue refresh tokens.
        return Err(agentid_directory::DirectoryError::Conflict(
            "a refresh token cannot be issued at an assumed directory generation".into(),
        ));
    }
    let mut tx = sts.store.pool().begin().await?;
    if let Some(old) = &issued.supersede {
        sqlx_update_superseded(&mut tx, old, event.time).await?;
    }
    if let Some(r) = &issued.refresh {
        r.insert(&mut tx).await?;
    }
    event.insert(&mut tx).await?;
    tx.commit().await?;
    crate::state::log_audit(event);
    Ok(true)
}

/// The parent of a token that is not exchanged from another token: the user's sign-in grant, the
/// refresh family, or the credential the client proved itself with (docs/audit.md §2).
fn parent_kind_of(event: &AuditEvent) -> Option<String> {
    match event.grant_type.as_deref() {
        Some("refresh_token") => Some("refresh_family".into()),
        Some("password") => Some("password".into()),
        Some("authorization_code") => Some("authorization_code".into()),
        Some("urn:ietf:params:oauth:grant-type:device_code" | "device_code") => {
            Some("device_code".into())
        }
        _ => event.credential_type.clone().filter(|k| k != "none"),
    }
}

async fn sqlx_update_superseded(
    conn: &mut agentid_directory::store::AnyConnection,
    hash: &str,
    now: i64,
) -> Result<(), agentid_directory::DirectoryError> {
    agentid_directory::tokens::mark_superseded(conn, hash, now).await
}

/// Audits a refusal; `false` if it was decided at an assumed generation that has moved (nothing
/// written: decide again).
async fn refuse(
    sts: &crate::state::StsState,
    ctx: &RequestContext,
    event: &mut AuditEvent,
    err: &OAuthError,
    generation: Option<u64>,
) -> bool {
    event.result = "refused".into();
    event.error = Some(err.error.into());
    event.error_code = Some(err.code as i64);
    let written = match generation {
        Some(g) => sts.store.insert_audit_at(event, g).await,
        None => sts.store.insert_audit(event).await.map(|()| true),
    };
    match written {
        Ok(false) => return false,
        Ok(true) => {}
        Err(e) => tracing::error!(error = %e, "cannot write audit event"),
    }
    tracing::info!(trace_id = %ctx.trace_id, error = err.error, code = err.code, "token request refused");
    crate::state::log_audit(event);
    true
}
