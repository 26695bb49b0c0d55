//! Token contents (docs/sts.md §8): one function builds the claims of every access-token kind from
//! the table in §8.2, another the ID token.

use super::client_auth::Client;
use crate::settings::AccessLifetime;
use crate::state::StsState;
use agentid_claims::facets::TokenKind;
use agentid_claims::guid::FmiPath;
use agentid_claims::wellknown::GLOBAL_ADMIN_ROLE_ID;
use agentid_directory::model::{Tenant, User};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::{Rng, RngCore};
use serde_json::{Map, Value, json};
use sha2::Sha256;

/// What a new access token says. Built by the grants; turned into claims by [`access_token`].
pub struct AccessTokenSpec<'a> {
    pub kind: TokenKind,
    pub tenant: &'a Tenant,
    pub client: &'a Client,
    pub audience: String,
    /// v1 or v2 format (the resource decides).
    pub version: u8,
    pub user: Option<&'a User>,
    pub scp: Option<String>,
    pub roles: Vec<String>,
    pub amr: Vec<String>,
    /// Lifetime in seconds.
    pub lifetime: i64,
    /// RS256, or ES256 when the resource opted in.
    pub alg: crate::keys::SigningAlg,
}

pub struct Minted {
    pub jwt: String,
    pub uti: String,
    pub exp: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyError),
    #[error("signing failed: {0}")]
    Sign(#[from] crate::jws::SignError),
}

pub fn new_uti() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// Pairwise `sub`: base64url(HMAC-SHA256(tenant secret, lower(oid) ":" lower(client appId))).
pub fn pairwise_sub(tenant: &Tenant, oid: &str, client_app_id: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&tenant.pairwise_secret).expect("HMAC takes any key");
    mac.update(format!("{}:{}", oid.to_lowercase(), client_app_id.to_lowercase()).as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

pub fn lifetime(sts: &StsState, token_exchange: bool) -> i64 {
    if token_exchange {
        return sts.settings.exchange_lifetime;
    }
    match sts.settings.access_lifetime {
        AccessLifetime::Random => rand::thread_rng().gen_range(3600..=5399),
        AccessLifetime::Fixed(s) => s,
    }
}

async fn sign(
    sts: &StsState,
    tenant: &Tenant,
    claims: &Map<String, Value>,
    alg: crate::keys::SigningAlg,
    now: i64,
) -> Result<String, MintError> {
    let key = sts.keys.signer_for(&tenant.id, alg, now).await?;
    let mut header = jsonwebtoken::Header::new(alg.jwt());
    header.typ = Some("JWT".into());
    header.x5t = Some(key.kid.clone());
    header.kid = Some(key.kid.clone());
    Ok(key.sign(&header, claims)?)
}

pub async fn access_token(
    sts: &StsState,
    spec: &AccessTokenSpec<'_>,
    now: i64,
) -> Result<Minted, MintError> {
    let t = spec.tenant;
    let tid = t.id.to_string();
    let c = spec.client;
    let v1 = spec.version == 1;
    let uti = new_uti();
    let exp = now + spec.lifetime;
    let mut m = Map::new();
    m.insert("aud".into(), json!(spec.audience));
    m.insert(
        "iss".into(),
        json!(if v1 {
            sts.issuer_v1(&t.id)
        } else {
            sts.issuer_v2(&t.id)
        }),
    );
    m.insert("iat".into(), json!(now));
    m.insert("nbf".into(), json!(now));
    m.insert("exp".into(), json!(exp));
    // `amr` is a v1 claim of user tokens; agent-user tokens have no interactive method.
    if v1 && spec.user.is_some() && !spec.amr.is_empty() && spec.kind != TokenKind::AgentUser {
        m.insert("amr".into(), json!(spec.amr));
    }
    let client_id = c.app_id.to_string();
    let acr = c.credential.acr();
    if v1 {
        m.insert("appid".into(), json!(client_id));
        m.insert("appidacr".into(), json!(acr));
    } else {
        m.insert("azp".into(), json!(client_id));
        m.insert("azpacr".into(), json!(acr));
    }
    m.insert("app_displayname".into(), json!(c.display_name));
    if let Some(u) = spec.user {
        if v1 {
            if let Some(f) = &u.surname {
                m.insert("family_name".into(), json!(f));
            }
            if let Some(g) = &u.given_name {
                m.insert("given_name".into(), json!(g));
            }
        }
        m.insert("name".into(), json!(u.display_name));
    }
    m.insert(
        "idtyp".into(),
        json!(if spec.kind.is_user() { "user" } else { "app" }),
    );
    let (oid, sub) = match (spec.kind, spec.user) {
        (k, Some(u)) if k.is_user() => (
            u.id.to_string(),
            pairwise_sub(t, &u.id.to_string(), &client_id),
        ),
        _ => {
            let oid = c.sp_id().to_string();
            (oid.clone(), oid)
        }
    };
    m.insert("oid".into(), json!(oid));
    if !spec.roles.is_empty() {
        m.insert("roles".into(), json!(spec.roles));
    }
    if let Some(scp) = &spec.scp {
        m.insert("scp".into(), json!(scp));
    }
    m.insert("sub".into(), json!(sub));
    m.insert("tid".into(), json!(tid));
    if let Some(u) = spec.user {
        if v1 {
            m.insert("unique_name".into(), json!(u.upn));
            m.insert("upn".into(), json!(u.upn));
        } else {
            m.insert("preferred_username".into(), json!(u.upn));
        }
    }
    m.insert("uti".into(), json!(uti));
    m.insert("ver".into(), json!(if v1 { "1.0" } else { "2.0" }));
    if let Some(u) = spec.user
        && u.is_global_admin()
        && matches!(
            spec.kind,
            TokenKind::AgentObo | TokenKind::User | TokenKind::AppObo
        )
    {
        m.insert("wids".into(), json!([GLOBAL_ADMIN_ROLE_ID]));
    }
    let f = spec.kind.facets();
    m.insert("xms_act_fct".into(), json!(f.act));
    m.insert("xms_idrel".into(), json!(f.idrel));
    if spec.kind.is_agent()
        && let Some(bp) = c.blueprint_app_id()
    {
        m.insert("xms_par_app_azp".into(), json!(bp.to_string()));
    }
    m.insert("xms_sub_fct".into(), json!(f.sub));
    if let Some(tnt) = f.tnt {
        m.insert("xms_tnt_fct".into(), json!(tnt));
    }
    let jwt = sign(sts, t, &m, spec.alg, now).await?;
    Ok(Minted { jwt, uti, exp })
}

/// T1: the blueprint's exchange token for one agent (docs/sts.md §7.2, §8.5).
pub async fn t1(
    sts: &StsState,
    tenant: &Tenant,
    blueprint: &Client,
    agent: &str,
    now: i64,
) -> Result<Minted, MintError> {
    let uti = new_uti();
    let exp = now + sts.settings.exchange_lifetime;
    let f = TokenKind::T1.facets();
    let sub = FmiPath {
        tenant: tenant.id,
        blueprint_app: blueprint.app_id,
        agent: agent.to_lowercase(),
    }
    .render();
    let claims = json!({
        "aud": agentid_claims::wellknown::TOKEN_EXCHANGE_APP_ID,
        "iss": sts.issuer_v2(&tenant.id),
        "iat": now, "nbf": now, "exp": exp,
        "azp": blueprint.app_id.to_string(),
        "azpacr": blueprint.credential.acr(),
        "app_displayname": blueprint.display_name,
        "idtyp": "app",
        "oid": blueprint.sp_id().to_string(),
        "sub": sub,
        "tid": tenant.id.to_string(),
        "uti": uti,
        "ver": "2.0",
        "xms_act_fct": f.act, "xms_sub_fct": f.sub, "xms_idrel": f.idrel,
    });
    let Value::Object(m) = claims else {
        unreachable!("json! object")
    };
    let jwt = sign(sts, tenant, &m, crate::keys::SigningAlg::RS256, now).await?;
    Ok(Minted { jwt, uti, exp })
}

/// What interactive grants add to the ID token.
#[derive(Debug, Clone, Default)]
pub struct IdExtras {
    pub nonce: Option<String>,
    pub auth_time: Option<i64>,
    /// Set from the honoured OIDC scopes by the issuer, not by the grants.
    pub profile: bool,
    pub email: bool,
}

/// ID token (docs/sts.md §8.4): always v2 and RS256.
pub async fn id_token(
    sts: &StsState,
    tenant: &Tenant,
    client: &Client,
    user: &User,
    extras: &IdExtras,
    now: i64,
) -> Result<String, MintError> {
    let client_id = client.app_id.to_string();
    let mut m = Map::new();
    m.insert("aud".into(), json!(client_id));
    m.insert("iss".into(), json!(sts.issuer_v2(&tenant.id)));
    m.insert("iat".into(), json!(now));
    m.insert("nbf".into(), json!(now));
    m.insert("exp".into(), json!(now + 3600));
    if extras.profile {
        m.insert("name".into(), json!(user.display_name));
        m.insert("preferred_username".into(), json!(user.upn));
    }
    if extras.email
        && let Some(mail) = &user.mail
    {
        m.insert("email".into(), json!(mail));
    }
    m.insert("oid".into(), json!(user.id.to_string()));
    m.insert(
        "sub".into(),
        json!(pairwise_sub(tenant, &user.id.to_string(), &client_id)),
    );
    m.insert("tid".into(), json!(tenant.id.to_string()));
    m.insert("uti".into(), json!(new_uti()));
    m.insert("ver".into(), json!("2.0"));
    if let Some(n) = &extras.nonce {
        m.insert("nonce".into(), json!(n));
    }
    if let Some(t) = extras.auth_time {
        m.insert("auth_time".into(), json!(t));
    }
    sign(sts, tenant, &m, crate::keys::SigningAlg::RS256, now).await
}

/// `client_info`: base64url of `{"uid": oid, "utid": tid}`.
pub fn client_info(user: &User, tenant: &Tenant) -> String {
    URL_SAFE_NO_PAD
        .encode(json!({"uid": user.id.to_string(), "utid": tenant.id.to_string()}).to_string())
}
