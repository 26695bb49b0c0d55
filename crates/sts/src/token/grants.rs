//! The grants of the token endpoint (docs/sts.md §7): client credentials (app, blueprint, T1, T2),
//! on-behalf-of, refresh and resource-owner password. Each takes a parsed request and returns
//! what to issue; the endpoint commits it together with its audit event.

use super::client_auth::{self, Client, ClientKind};
use super::mint::{self, AccessTokenSpec};
use super::scope::{self, ResolvedScope};
use super::{Issued, TokenRequest, consent, internal};
use crate::error::{OAuthError, OAuthResult};
use crate::own_tokens;
use agentid_claims::facets::TokenKind;
use agentid_claims::jwt::UnverifiedJwt;
use agentid_directory::model::{User, UserKind};
use agentid_directory::secrets::{random_token, sha256_hex};
use agentid_directory::tokens::RefreshRecord;
use serde_json::json;
use uuid::Uuid;

fn app_only_body(m: &mint::Minted, now: i64) -> serde_json::Value {
    json!({"token_type": "Bearer", "expires_in": m.exp - now, "ext_expires_in": m.exp - now, "access_token": m.jwt})
}

// ---- client credentials ----------------------------------------------------------------------

pub async fn client_credentials(req: &TokenRequest<'_>) -> OAuthResult<Issued> {
    let client = client_auth::authenticate(req).await?;
    let scope = req.form.require("scope")?;
    if client.kind == ClientKind::Agent {
        if req.form.has("fmi_path") {
            return Err(OAuthError::agent_protocol(
                "AADSTS82001: An agent identity cannot request a token with 'fmi_path'.",
            ));
        }
        return agent_app(req, &client, scope).await;
    }
    if client.kind == ClientKind::Public {
        return Err(OAuthError::no_credential());
    }
    if let Some(fmi) = req.form.get("fmi_path") {
        return t1(req, &client, scope, fmi).await;
    }
    let param = scope::parse(scope)?;
    if !param.is_default() || !param.oidc.is_empty() {
        return Err(OAuthError::scope_needs_default(scope));
    }
    let resolved = scope::resolve(req.view, req.tenant, param, &client.app_id.to_string()).await?;
    if resolved.resource.is_token_exchange() {
        return Err(OAuthError::agent_protocol(
            "The token-exchange resource can only be requested by a blueprint with 'fmi_path' or by an agent identity.",
        ));
    }
    let blueprint = client.kind == ClientKind::Blueprint;
    let roles = consent::roles(req.view, &resolved.resource, &client.sp_id(), blueprint).await?;
    let kind = if blueprint {
        TokenKind::Blueprint
    } else {
        TokenKind::App
    };
    issue_app_only(req, &client, &resolved, kind, roles).await
}

async fn issue_app_only(
    req: &TokenRequest<'_>,
    client: &Client,
    resolved: &ResolvedScope,
    kind: TokenKind,
    roles: Vec<String>,
) -> OAuthResult<Issued> {
    let now = req.ctx.now;
    let spec = AccessTokenSpec {
        kind,
        tenant: req.tenant,
        client,
        audience: resolved.audience.clone(),
        version: resolved.resource.token_version,
        user: None,
        scp: None,
        roles: roles.clone(),
        amr: vec![],
        lifetime: mint::lifetime(req.sts, resolved.resource.is_token_exchange()),
        alg: crate::keys::SigningAlg::for_resource(&resolved.resource.signing_alg),
    };
    let m = mint::access_token(req.sts, &spec, now)
        .await
        .map_err(internal)?;
    req.audit_issued(resolved, None, &roles, &m, None);
    Ok(Issued {
        body: app_only_body(&m, now),
        refresh: None,
        supersede: None,
    })
}

/// T1 (§7.2).
async fn t1(
    req: &TokenRequest<'_>,
    client: &Client,
    scope: &str,
    fmi_path: &str,
) -> OAuthResult<Issued> {
    if client.kind != ClientKind::Blueprint {
        return Err(OAuthError::agent_protocol(
            "Only an agent identity blueprint can request a token with 'fmi_path'.",
        ));
    }
    let agent_id = agentid_claims::guid::parse(fmi_path)
        .ok_or_else(|| OAuthError::unknown_client(fmi_path, req.tenant.name()))?;
    // The agent identity through the request's view (cached, docs/performance.md §3.1).
    let agent = match req
        .view
        .client(&req.tenant.id, &agent_id)
        .await
        .map_err(internal)?
    {
        Some(agentid_directory::queries::ClientRecord::Agent { agent, .. }) => agent,
        _ => return Err(OAuthError::unknown_client(fmi_path, req.tenant.name())),
    };
    req.audit_agent(&agent.app_id, Some(&client.app_id));
    if agent.blueprint_app_id != Some(client.app_id) {
        return Err(OAuthError::agent_protocol(format!(
            "The agent identity '{fmi_path}' does not belong to the blueprint '{}'.",
            client.app_id
        )));
    }
    if !agent.account_enabled {
        return Err(OAuthError::disabled(fmi_path, &agent.display_name));
    }
    let param = scope::parse(scope)?;
    let is_exchange = param.is_default()
        && param.oidc.is_empty()
        && agentid_directory::builtin::by_app_id(agentid_claims::wellknown::TOKEN_EXCHANGE_APP_ID)
            .expect("built in")
            .identifier_uris
            .iter()
            .chain(std::iter::once(
                &agentid_claims::wellknown::TOKEN_EXCHANGE_APP_ID,
            ))
            .any(|u| u.eq_ignore_ascii_case(&param.resource));
    if !is_exchange {
        return Err(OAuthError::invalid_scope(
            "A request with 'fmi_path' must ask for 'api://AzureADTokenExchange/.default'.",
        ));
    }
    let now = req.ctx.now;
    let m = mint::t1(req.sts, req.tenant, client, &agent_id.to_string(), now)
        .await
        .map_err(internal)?;
    req.audit_t1(&m, scope);
    Ok(Issued {
        body: app_only_body(&m, now),
        refresh: None,
        supersede: None,
    })
}

/// T2 and T2′ (sts.md §7.3): the agent acting as itself.
async fn agent_app(req: &TokenRequest<'_>, client: &Client, scope: &str) -> OAuthResult<Issued> {
    let param = scope::parse(scope)?;
    if !param.is_default() || !param.oidc.is_empty() {
        return Err(OAuthError::scope_needs_default(scope));
    }
    let resolved = scope::resolve(req.view, req.tenant, param, &client.app_id.to_string()).await?;
    let roles = consent::roles(req.view, &resolved.resource, &client.sp_id(), false).await?;
    issue_app_only(req, client, &resolved, TokenKind::AgentApp, roles).await
}

// ---- user-subject tokens -----------------------------------------------------------------------

/// What a user-subject issuance needs besides the client and the resolved scope.
pub(super) struct UserGrant<'a> {
    pub(super) user: &'a User,
    pub(super) kind: TokenKind,
    pub(super) amr: Vec<String>,
    /// Refresh family to continue (refresh grant), or `None` to start one if offline_access is honoured.
    pub(super) family: Option<String>,
    pub(super) supersede: Option<String>,
    /// The scope string recorded on a new refresh token, when not the request's `scope`.
    pub(super) scope_override: Option<&'a str>,
    /// `nonce` and `auth_time` for the ID token of interactive grants.
    pub(super) id_extras: mint::IdExtras,
}

pub(super) async fn issue_user(
    req: &TokenRequest<'_>,
    client: &Client,
    resolved: &ResolvedScope,
    g: UserGrant<'_>,
) -> OAuthResult<Issued> {
    let store = &req.sts.store;
    let granted = consent::granted(store, client, &resolved.resource, &g.user.id).await?;
    let covered = if resolved.param.is_default() {
        !granted.is_empty()
    } else {
        resolved
            .param
            .values
            .iter()
            .all(|v| granted.iter().any(|s| s.eq_ignore_ascii_case(v)))
    };
    if !covered {
        return Err(OAuthError::consent_required(
            &client.app_id.to_string(),
            &client.display_name,
        ));
    }
    let keep_oidc = resolved.resource.is_graph();
    let scp: Vec<&str> = granted
        .iter()
        .map(String::as_str)
        .filter(|s| !s.eq_ignore_ascii_case("offline_access"))
        .filter(|s| keep_oidc || !scope::OIDC_SCOPES.iter().any(|o| o.eq_ignore_ascii_case(s)))
        .collect();
    let roles = consent::roles(req.view, &resolved.resource, &g.user.id, false).await?;
    let now = req.ctx.now;
    let spec = AccessTokenSpec {
        kind: g.kind,
        tenant: req.tenant,
        client,
        audience: resolved.audience.clone(),
        version: resolved.resource.token_version,
        user: Some(g.user),
        scp: Some(scp.join(" ")),
        roles: roles.clone(),
        amr: g.amr.clone(),
        lifetime: mint::lifetime(req.sts, false),
        alg: crate::keys::SigningAlg::for_resource(&resolved.resource.signing_alg),
    };
    let m = mint::access_token(req.sts, &spec, now)
        .await
        .map_err(internal)?;

    let p = &resolved.param;
    let offline = match &g.family {
        Some(_) => true,
        None => {
            p.has_oidc("offline_access")
                && consent::offline_access_granted(
                    store,
                    &req.tenant.id,
                    client,
                    &resolved.resource,
                    &g.user.id,
                    &granted,
                )
                .await?
        }
    };
    let mut oidc: Vec<&str> = ["openid", "profile", "email"]
        .into_iter()
        .filter(|s| p.has_oidc(s))
        .collect();
    if offline && p.has_oidc("offline_access") {
        oidc.push("offline_access");
    }
    let mut body = json!({
        "token_type": "Bearer",
        "scope": resolved.echo(&granted, &oidc),
        "expires_in": m.exp - now,
        "ext_expires_in": m.exp - now,
        "access_token": m.jwt,
    });
    let mut refresh = None;
    if offline {
        let token = random_token();
        let family = g
            .family
            .clone()
            .unwrap_or_else(|| Uuid::new_v4().to_string());
        let scope_param = g
            .scope_override
            .or(req.form.get("scope"))
            .unwrap_or_default()
            .to_string();
        refresh = Some(RefreshRecord {
            token_sha256: sha256_hex(&token),
            tenant_id: req.tenant.id.to_string(),
            family_id: family,
            client_id: client.app_id.to_string(),
            user_id: g.user.id.to_string(),
            scope: scope_param,
            amr: serde_json::to_string(&g.amr).expect("json"),
            issued_at: now,
            last_used_at: now,
            superseded_at: None,
            revoked: 0,
        });
        body["refresh_token"] = json!(token);
    }
    if p.has_oidc("openid") {
        let extras = mint::IdExtras {
            profile: p.has_oidc("profile"),
            email: p.has_oidc("email"),
            ..g.id_extras.clone()
        };
        let id = mint::id_token(req.sts, req.tenant, client, g.user, &extras, now)
            .await
            .map_err(internal)?;
        body["id_token"] = json!(id);
    }
    if req.form.get("client_info") == Some("1") {
        body["client_info"] = json!(mint::client_info(g.user, req.tenant));
    }
    req.audit_issued(
        resolved,
        Some(&scp.join(" ")),
        &roles,
        &m,
        refresh.as_ref().map(|r| r.family_id.as_str()),
    );
    Ok(Issued {
        body,
        refresh,
        supersede: g.supersede,
    })
}

fn user_token_kind(client: &Client, user: &User, obo: bool) -> TokenKind {
    match (client.kind, user.kind, obo) {
        (ClientKind::Agent, UserKind::AgentUser, _) => TokenKind::AgentUser,
        (ClientKind::Agent, _, _) => TokenKind::AgentObo,
        (_, _, true) => TokenKind::AppObo,
        _ => TokenKind::User,
    }
}

/// Loads the user of a user-subject grant and checks it may still get tokens.
pub(super) async fn live_user(
    req: &TokenRequest<'_>,
    id: &Uuid,
    issued_at: Option<i64>,
) -> OAuthResult<User> {
    let user = req
        .sts
        .store
        .user_by_id(&req.tenant.id, id)
        .await
        .map_err(internal)?
        .ok_or_else(OAuthError::user_not_found)?;
    req.audit_user(&user);
    if !user.account_enabled {
        return Err(OAuthError::user_disabled());
    }
    if let (Some(revoked), Some(iat)) = (user.sessions_revoked_at, issued_at)
        && revoked >= iat
    {
        return Err(OAuthError::sessions_revoked());
    }
    Ok(user)
}

// ---- on-behalf-of -------------------------------------------------------------------------------

/// AADSTS500133 when a user assertion is outside its lifetime, else AADSTS50013.
fn user_assertion_refusal(e: agentid_claims::verify::VerifyError) -> OAuthError {
    if own_tokens::is_lifetime(&e) {
        OAuthError::assertion_expired()
    } else {
        OAuthError::assertion_signature()
    }
}

pub async fn on_behalf_of(req: &TokenRequest<'_>) -> OAuthResult<Issued> {
    match req.form.require("requested_token_use")? {
        "on_behalf_of" => {}
        other => {
            return Err(OAuthError::malformed(format!(
                "requested_token_use '{other}' is not supported; use 'on_behalf_of'."
            )));
        }
    }
    let assertion = req.form.require("assertion")?;
    let scope = req.form.require("scope")?;
    let client = client_auth::authenticate(req).await?;
    if client.kind == ClientKind::Public {
        return Err(OAuthError::no_credential());
    }
    let tc =
        UnverifiedJwt::parse(assertion).map_err(|e| OAuthError::unparseable_jwt(&e.to_string()))?;
    // A user's access token of this tenant, signed by it, within its lifetime.
    let tenant = &req.tenant.id;
    let verifier = own_tokens::verifier(
        req.sts,
        vec![req.sts.issuer_v1(tenant), req.sts.issuer_v2(tenant)],
    );
    own_tokens::verify(req.sts, tenant, &tc, &verifier, req.ctx.now)
        .await
        .map_err(user_assertion_refusal)?;
    let user_id = tc.str_claim("oid").and_then(agentid_claims::guid::parse);
    let Some(user_id) =
        user_id.filter(|_| tc.str_claim("idtyp") == Some("user") && tc.claims.contains_key("scp"))
    else {
        return Err(OAuthError::assertion_not_user_token("not a user token"));
    };
    req.audit_parent("user_assertion", tc.str_claim("uti"));
    // Audience: the client itself, or for agents the parent blueprint (appId or an identifier URI).
    let target = match client.kind {
        ClientKind::Agent => client.blueprint.as_ref().map(|(a, _)| a.clone()),
        _ => client.app.clone(),
    };
    let aud = tc
        .audiences()
        .first()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let expected = target
        .as_ref()
        .map(|a| a.app_id.to_string())
        .unwrap_or_default();
    let aud_ok = target.as_ref().is_some_and(|a| {
        aud.eq_ignore_ascii_case(&a.app_id.to_string())
            || a.identifier_uris.iter().any(|u| {
                agentid_directory::model::normalize_uri(u)
                    == agentid_directory::model::normalize_uri(&aud)
            })
    });
    if !aud_ok {
        return Err(OAuthError::assertion_audience(&aud, &expected));
    }
    let user = live_user(req, &user_id, tc.time_claim("iat")).await?;
    if user.kind == UserKind::AgentUser {
        return Err(OAuthError::assertion_not_user_token(
            "agent users get tokens only through user_fic",
        ));
    }
    let resolved = scope::resolve(
        req.view,
        req.tenant,
        scope::parse(scope)?,
        &client.app_id.to_string(),
    )
    .await?;
    if resolved.resource.is_token_exchange() {
        return Err(OAuthError::agent_protocol(
            "The token-exchange resource cannot be requested on behalf of a user.",
        ));
    }
    let amr: Vec<String> = tc
        .claims
        .get("amr")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_else(|| vec!["pwd".to_string()]);
    let kind = user_token_kind(&client, &user, true);
    issue_user(
        req,
        &client,
        &resolved,
        UserGrant {
            user: &user,
            kind,
            amr,
            family: None,
            supersede: None,
            scope_override: None,
            id_extras: mint::IdExtras::default(),
        },
    )
    .await
}

// ---- refresh token ----------------------------------------------------------------------------

pub async fn refresh_token(req: &TokenRequest<'_>) -> OAuthResult<Issued> {
    let presented = req.form.require("refresh_token")?;
    let client = client_auth::authenticate(req).await?;
    let hash = sha256_hex(presented);
    let rec = req
        .sts
        .store
        .refresh_token(&hash)
        .await
        .map_err(internal)?
        .ok_or_else(OAuthError::bad_refresh_token)?;
    if rec.revoked != 0
        || rec.tenant_id != req.tenant.id.to_string()
        || !rec
            .client_id
            .eq_ignore_ascii_case(&client.app_id.to_string())
    {
        return Err(OAuthError::bad_refresh_token());
    }
    req.audit_refresh_family(&rec.family_id);
    let now = req.ctx.now;
    if rec.last_used_at + req.sts.settings.refresh_inactivity < now {
        return Err(OAuthError::refresh_inactive());
    }
    if let Some(sup) = rec.superseded_at
        && sup + req.sts.settings.refresh_reuse_grace < now
    {
        // Reuse of a rotated token: treat the family as stolen.
        req.sts
            .store
            .revoke_refresh_family(&rec.family_id)
            .await
            .map_err(internal)?;
        return Err(OAuthError::bad_refresh_token());
    }
    let user_id = uuid::Uuid::parse_str(&rec.user_id).map_err(internal)?;
    let user = live_user(req, &user_id, Some(rec.issued_at)).await?;
    let scope = match req.form.get("resource") {
        // RFC 8707: a refresh for a resource stays with that resource (docs/sts.md §16.2).
        Some(resource) => {
            let s = crate::mcp::resource::scope_for(
                &req.sts.store,
                req.tenant,
                resource,
                Some(req.form.get("scope").unwrap_or(&rec.scope)),
            )
            .await?;
            crate::mcp::resource::check_scope(&req.sts.store, req.tenant, resource, &rec.scope)
                .await?;
            s
        }
        None => req.form.get("scope").unwrap_or(&rec.scope).to_string(),
    };
    let resolved = scope::resolve(
        req.view,
        req.tenant,
        scope::parse(&scope)?,
        &client.app_id.to_string(),
    )
    .await?;
    if resolved.resource.is_token_exchange() {
        return Err(OAuthError::agent_protocol(
            "The token-exchange resource cannot be requested on behalf of a user.",
        ));
    }
    let amr: Vec<String> = serde_json::from_str(&rec.amr).unwrap_or_default();
    let kind = user_token_kind(&client, &user, false);
    issue_user(
        req,
        &client,
        &resolved,
        UserGrant {
            user: &user,
            kind,
            amr,
            family: Some(rec.family_id.clone()),
            supersede: Some(hash),
            scope_override: None,
            id_extras: mint::IdExtras::default(),
        },
    )
    .await
}

// ---- resource-owner password ------------------------------------------------------------------

pub async fn password(req: &TokenRequest<'_>) -> OAuthResult<Issued> {
    let username = req.form.require("username")?;
    let password = req.form.require("password")?;
    let scope = req.form.require("scope")?;
    let client = client_auth::authenticate(req).await?;
    if matches!(client.kind, ClientKind::Agent | ClientKind::Blueprint) {
        return Err(OAuthError::agent_protocol(
            "Agent identities and blueprints cannot sign users in.",
        ));
    }
    if !req.tenant.allow_password_grant {
        return Err(OAuthError::unsupported_grant("password"));
    }
    let user = match crate::password::check_password(
        req.sts,
        req.tenant,
        username,
        password,
        req.ctx.source_ip.as_deref(),
    )
    .await
    {
        Ok(user) => user,
        Err(e) => {
            use crate::password::SignInError as S;
            return Err(match e {
                S::BadCredentials { user } => {
                    if let Some(u) = &user {
                        req.audit_user(u);
                    }
                    OAuthError::bad_credentials()
                }
                S::UserLocked { user } => {
                    if let Some(u) = &user {
                        req.audit_user(u);
                    }
                    OAuthError::account_locked()
                }
                S::AddressLocked { .. } => OAuthError::account_locked(),
                S::Busy(b) => OAuthError::busy(b.retry_after.as_secs()),
                S::Directory(e) => internal(e),
            });
        }
    };
    req.audit_user(&user);
    if !user.account_enabled {
        return Err(OAuthError::user_disabled());
    }
    let resolved = scope::resolve(
        req.view,
        req.tenant,
        scope::parse(scope)?,
        &client.app_id.to_string(),
    )
    .await?;
    if resolved.resource.is_token_exchange() {
        return Err(OAuthError::agent_protocol(
            "The token-exchange resource cannot be requested for a user.",
        ));
    }
    issue_user(
        req,
        &client,
        &resolved,
        UserGrant {
            user: &user,
            kind: TokenKind::User,
            amr: vec!["pwd".into()],
            family: None,
            supersede: None,
            scope_override: None,
            id_extras: mint::IdExtras::default(),
        },
    )
    .await
}

// ---- agent user (user_fic) ---------------------------------------------------------------------

/// §7.7: the agent, authenticated with T1, presents its T2′ and names its agent user.
pub async fn user_fic(req: &TokenRequest<'_>) -> OAuthResult<Issued> {
    let scope = req.form.require("scope")?;
    let client = client_auth::authenticate(req).await?;
    if client.kind != ClientKind::Agent {
        return Err(OAuthError::agent_protocol(
            "Only an agent identity can use the user_fic grant.",
        ));
    }
    let raw = req.form.require("user_federated_identity_credential")?;
    let t2p = UnverifiedJwt::parse(raw).map_err(|e| OAuthError::unparseable_jwt(&e.to_string()))?;
    let tenant = &req.tenant.id;
    let verifier = own_tokens::verifier(req.sts, vec![req.sts.issuer_v2(tenant)]);
    own_tokens::verify(req.sts, tenant, &t2p, &verifier, req.ctx.now)
        .await
        .map_err(user_assertion_refusal)?;
    let agent = client.app_id.to_string();
    let is_t2_prime = t2p.audiences() == [agentid_claims::wellknown::TOKEN_EXCHANGE_APP_ID]
        && t2p.str_claim("idtyp") == Some("app")
        && ["azp", "sub", "oid"].iter().all(|c| {
            t2p.str_claim(c)
                .is_some_and(|v| v.eq_ignore_ascii_case(&agent))
        });
    if !is_t2_prime {
        return Err(OAuthError::assertion_not_user_token(
            "the user_federated_identity_credential is not a T2′ of this agent",
        ));
    }
    req.audit_parent("t2_prime", t2p.str_claim("uti"));
    let user = match (req.form.get("username"), req.form.get("user_id")) {
        (None, None) => return Err(OAuthError::missing_parameter("username")),
        (Some(_), Some(_)) => {
            return Err(OAuthError::malformed(
                "Send either 'username' or 'user_id', not both.",
            ));
        }
        (Some(upn), None) => req
            .sts
            .store
            .user_by_upn(&req.tenant.id, upn)
            .await
            .map_err(internal)?,
        (None, Some(id)) => {
            let id = agentid_claims::guid::parse(id).ok_or_else(OAuthError::user_id_not_guid)?;
            req.sts
                .store
                .user_by_id(&req.tenant.id, &id)
                .await
                .map_err(internal)?
        }
    };
    let user = user.ok_or_else(OAuthError::user_not_found)?;
    req.audit_user(&user);
    let parent_ok = user.kind == UserKind::AgentUser
        && user
            .identity_parent_id
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case(&agent));
    if !parent_ok {
        return Err(OAuthError::agent_protocol(format!(
            "The user '{}' is not the agent user of agent '{agent}'.",
            user.upn
        )));
    }
    if !user.account_enabled {
        return Err(OAuthError::user_disabled());
    }
    let resolved = scope::resolve(req.view, req.tenant, scope::parse(scope)?, &agent).await?;
    if resolved.resource.is_token_exchange() {
        return Err(OAuthError::agent_protocol(
            "The token-exchange resource cannot be requested for an agent user.",
        ));
    }
    issue_user(
        req,
        &client,
        &resolved,
        UserGrant {
            user: &user,
            kind: TokenKind::AgentUser,
            amr: vec![],
            family: None,
            supersede: None,
            scope_override: None,
            id_extras: mint::IdExtras::default(),
        },
    )
    .await
}
