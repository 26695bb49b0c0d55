//! Device authorization (docs/sts.md §7.5): the devicecode endpoint, user codes, and redemption of
//! approved device codes at the token endpoint. The browser side is the `/devicelogin` pages
//! (docs/sts.md §11.2).

use super::client_auth::{self, ClientKind};
use super::grants::{UserGrant, issue_user, live_user};
use super::{Issued, TokenRequest, internal, mint, scope};
use crate::error::{OAuthError, OAuthResult};
use agentid_claims::facets::TokenKind;
use agentid_directory::device::DeviceCode;
use agentid_directory::model::Tenant;
use agentid_directory::secrets::{random_token, sha256_hex};
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::json;
use sha2::Sha256;

pub const LIFETIME: i64 = 900;
pub const INTERVAL: i64 = 5;
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// A new user code: 9 characters that are hard to confuse when read aloud or typed.
pub fn new_user_code() -> String {
    let mut rng = rand::rngs::OsRng;
    (0..9)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// How a user code is stored and looked up: HMAC under the tenant's secret of the code,
/// uppercased without spaces or hyphens.
pub fn user_code_hmac(tenant: &Tenant, code: &str) -> String {
    let norm: String = code
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&tenant.user_code_secret).expect("HMAC takes any key");
    mac.update(norm.as_bytes());
    agentid_claims::jwt::hex(&mac.finalize().into_bytes())
}

/// `POST /{tenant}/oauth2/v2.0/devicecode`.
pub async fn authorize(req: &TokenRequest<'_>) -> OAuthResult<Issued> {
    let client_id = req.form.require("client_id")?;
    client_auth::document_client_may_use(client_id, "device_code")?;
    let client = client_auth::lookup(req.view, req.tenant, client_id).await?;
    req.audit_client(&client);
    if matches!(client.kind, ClientKind::Agent | ClientKind::Blueprint) {
        return Err(OAuthError::agent_protocol(
            "Agent identities and blueprints cannot sign users in with a device code.",
        ));
    }
    let scope = req.form.require("scope")?;
    let resolved = scope::resolve(req.view, req.tenant, scope::parse(scope)?, client_id).await?;
    if resolved.resource.is_token_exchange() {
        return Err(OAuthError::agent_protocol(
            "The token-exchange resource cannot be requested for a user.",
        ));
    }
    let device_code = random_token();
    let user_code = new_user_code();
    let now = req.ctx.now;
    let record = DeviceCode {
        device_code_sha256: sha256_hex(&device_code),
        tenant_id: req.tenant.id.to_string(),
        client_id: client.app_id.to_string(),
        scope: scope.to_string(),
        user_code_hmac: user_code_hmac(req.tenant, &user_code),
        created_at: now,
        expires_at: now + LIFETIME,
        interval_secs: INTERVAL,
        last_poll_at: None,
        status: "pending".into(),
        user_id: None,
        auth_time: None,
    };
    req.sts
        .store
        .insert_device_code(&record)
        .await
        .map_err(internal)?;
    let uri = format!("{}/devicelogin", req.sts.base);
    let body = json!({
        "user_code": user_code,
        "device_code": device_code,
        "verification_uri": uri,
        "expires_in": LIFETIME,
        "interval": INTERVAL,
        "message": format!("To sign in, use a web browser to open the page {uri} and enter the code {user_code} to authenticate."),
    });
    Ok(Issued {
        body,
        refresh: None,
        supersede: None,
    })
}

/// Token endpoint, `grant_type=…device_code`: poll, and redeem once approved.
pub async fn redeem(req: &TokenRequest<'_>) -> OAuthResult<Issued> {
    let code = req
        .form
        .get("device_code")
        .or(req.form.get("code"))
        .ok_or_else(|| OAuthError::missing_parameter("device_code"))?;
    let client = client_auth::authenticate(req).await?;
    if matches!(client.kind, ClientKind::Agent | ClientKind::Blueprint) {
        return Err(OAuthError::agent_protocol(
            "Agent identities and blueprints cannot redeem device codes.",
        ));
    }
    let hash = sha256_hex(code);
    let store = &req.sts.store;
    let rec = store
        .device_code(&hash)
        .await
        .map_err(internal)?
        .ok_or_else(OAuthError::bad_verification_code)?;
    if rec.tenant_id != req.tenant.id.to_string() {
        return Err(OAuthError::bad_verification_code());
    }
    if !rec
        .client_id
        .eq_ignore_ascii_case(&client.app_id.to_string())
    {
        return Err(OAuthError::device_code_used());
    }
    let now = req.ctx.now;
    match rec.status.as_str() {
        "redeemed" => return Err(OAuthError::device_code_used()),
        "declined" => return Err(OAuthError::authorization_declined()),
        _ if now >= rec.expires_at => return Err(OAuthError::device_code_expired()),
        "pending" => {
            store
                .touch_device_poll(&hash, now)
                .await
                .map_err(internal)?;
            let too_fast = rec
                .last_poll_at
                .is_some_and(|last| now - last < rec.interval_secs);
            return Err(if too_fast {
                OAuthError::slow_down()
            } else {
                OAuthError::authorization_pending()
            });
        }
        _ => {}
    }
    // Approved: redeem exactly once, whichever replica gets here first.
    if !store
        .transition_device_code(&hash, "approved", "redeemed", None, None)
        .await
        .map_err(internal)?
    {
        return Err(OAuthError::device_code_used());
    }
    let user_id = rec
        .user_id
        .as_deref()
        .and_then(agentid_claims::guid::parse)
        .ok_or_else(OAuthError::server_error)?;
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
        id_extras: mint::IdExtras::default(),
    };
    issue_user(req, &client, &resolved, grant).await
}
