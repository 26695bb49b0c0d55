//! `grant_type=authorization_code` (docs/sts.md §7.8): redeem a code from `/authorize` with PKCE.

use super::client_auth::{self, ClientKind};
use super::grants::{UserGrant, issue_user, live_user};
use super::{Issued, TokenRequest, internal, mint, scope};
use crate::error::{OAuthError, OAuthResult};
use agentid_claims::facets::TokenKind;
use agentid_directory::secrets::{ct_eq, sha256_hex};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

const CODE_LIFETIME: i64 = 600;

pub async fn redeem(req: &TokenRequest<'_>) -> OAuthResult<Issued> {
    let code = req.form.require("code")?;
    let redirect_uri = req.form.require("redirect_uri")?;
    let verifier = req.form.require("code_verifier")?;
    let client = client_auth::authenticate(req).await?;
    if matches!(client.kind, ClientKind::Agent | ClientKind::Blueprint) {
        return Err(OAuthError::agent_protocol(
            "Agent identities and blueprints cannot redeem authorization codes.",
        ));
    }
    let store = &req.sts.store;
    let hash = sha256_hex(code);
    let rec = store
        .auth_code(&hash)
        .await
        .map_err(internal)?
        .ok_or_else(OAuthError::code_invalid)?;
    if rec.tenant_id != req.tenant.id.to_string()
        || !rec
            .client_id
            .eq_ignore_ascii_case(&client.app_id.to_string())
    {
        return Err(OAuthError::code_invalid());
    }
    if rec.redeemed != 0 {
        return Err(OAuthError::code_redeemed());
    }
    if req.ctx.now - rec.created_at > CODE_LIFETIME {
        return Err(OAuthError::code_expired());
    }
    if rec.redirect_uri != redirect_uri {
        return Err(OAuthError::redirect_mismatch());
    }
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if !ct_eq(&challenge, &rec.code_challenge) {
        return Err(OAuthError::pkce_mismatch());
    }
    if let Some(resource) = req.form.get("resource") {
        crate::mcp::resource::check_scope(store, req.tenant, resource, &rec.scope).await?;
    }
    if !store.redeem_auth_code(&hash).await.map_err(internal)? {
        return Err(OAuthError::code_redeemed());
    }
    let user_id = agentid_claims::guid::parse(&rec.user_id).ok_or_else(OAuthError::server_error)?;
    let user = live_user(req, &user_id, None).await?;
    let resolved = scope::resolve(
        req.view,
        req.tenant,
        scope::parse(&rec.scope)?,
        &client.app_id.to_string(),
    )
    .await?;
    let grant = UserGrant {
        user: &user,
        kind: TokenKind::User,
        amr: vec!["pwd".into()],
        family: None,
        supersede: None,
        scope_override: Some(&rec.scope),
        id_extras: mint::IdExtras {
            nonce: rec.nonce.clone(),
            auth_time: Some(rec.auth_time),
            ..Default::default()
        },
    };
    issue_user(req, &client, &resolved, grant).await
}
