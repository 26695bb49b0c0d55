//! Client identification and authentication (docs/sts.md §6.3): who is calling, and with which
//! credential — a secret, a registered certificate, a federated assertion, or (agents) a T1.

use super::TokenRequest;
use crate::error::{OAuthError, OAuthResult};
use agentid_claims::guid::FmiPath;
use agentid_claims::jwt::UnverifiedJwt;
use agentid_claims::verify::{Alg, Curve, Typ, VerificationKey, Verifier, VerifyError};
use agentid_claims::wellknown::{JWT_BEARER_ASSERTION_TYPE, TOKEN_EXCHANGE_APP_ID};
use agentid_directory::model::{AppKind, Application, KeyCredential, ServicePrincipal};
use agentid_directory::queries::ClientRecord;
use agentid_directory::secrets::{ct_eq, sha256_hex};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use std::sync::Arc;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    Public,
    Confidential,
    Blueprint,
    Agent,
}

impl ClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Public => "public",
            ClientKind::Confidential => "app",
            ClientKind::Blueprint => "blueprint",
            ClientKind::Agent => "agent",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Credential {
    None,
    Secret {
        key_id: Uuid,
    },
    PrivateKeyJwt {
        key_id: Uuid,
    },
    Federated {
        fic_id: Uuid,
        issuer: String,
        subject: String,
    },
    T1 {
        uti: String,
    },
}

impl Credential {
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::None => "none",
            Credential::Secret { .. } => "secret",
            Credential::PrivateKeyJwt { .. } => "private_key_jwt",
            Credential::Federated { .. } => "federated",
            Credential::T1 { .. } => "t1",
        }
    }
    pub fn id(&self) -> Option<String> {
        match self {
            Credential::None => None,
            Credential::Secret { key_id } | Credential::PrivateKeyJwt { key_id } => {
                Some(key_id.to_string())
            }
            Credential::Federated { fic_id, .. } => Some(fic_id.to_string()),
            Credential::T1 { uti } => Some(uti.clone()),
        }
    }
    /// `appidacr`/`azpacr`: 0 none, 1 secret, 2 certificate or assertion.
    pub fn acr(&self) -> &'static str {
        match self {
            Credential::None => "0",
            Credential::Secret { .. } => "1",
            _ => "2",
        }
    }
}

/// The calling client after lookup (and, via [`authenticate`], authentication).
#[derive(Debug, Clone)]
pub struct Client {
    pub kind: ClientKind,
    pub app_id: Uuid,
    pub display_name: String,
    /// The client's service principal (for agents: the agent identity). `None` only for an
    /// application without a principal, which is refused after authentication.
    pub sp: Option<ServicePrincipal>,
    pub app: Option<Application>,
    /// For agents: the parent blueprint's application and principal.
    pub blueprint: Option<(Application, ServicePrincipal)>,
    pub credential: Credential,
}

impl Client {
    pub fn sp_id(&self) -> Uuid {
        self.sp.as_ref().map(|s| s.id).unwrap_or(self.app_id)
    }
    pub fn blueprint_app_id(&self) -> Option<Uuid> {
        self.blueprint.as_ref().map(|(a, _)| a.app_id)
    }
}

/// `client_id` from the body or the Basic header, and the Basic secret if any.
fn client_id_and_basic(req: &TokenRequest<'_>) -> OAuthResult<(String, Option<String>)> {
    let basic = match req
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(h) if h.len() > 6 && h[..6].eq_ignore_ascii_case("basic ") => {
            let raw = STANDARD.decode(h[6..].trim()).map_err(|_| {
                OAuthError::malformed("The Authorization header is not valid Basic credentials.")
            })?;
            let raw = String::from_utf8(raw)
                .map_err(|_| OAuthError::malformed("The Authorization header is not UTF-8."))?;
            let (id, secret) = raw.split_once(':').ok_or_else(|| {
                OAuthError::malformed("The Authorization header is not valid Basic credentials.")
            })?;
            let dec = |s: &str| {
                form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_default()
            };
            Some((dec(id), dec(secret)))
        }
        _ => None,
    };
    match (req.form.get("client_id"), basic) {
        (Some(body), Some((basic_id, _))) if !body.eq_ignore_ascii_case(&basic_id) => {
            Err(OAuthError::malformed(
                "The client_id in the body differs from the one in the Authorization header.",
            ))
        }
        (_, Some((id, secret))) => Ok((id, Some(secret))),
        (Some(body), None) => Ok((body.to_string(), None)),
        (None, None) => Err(OAuthError::missing_parameter("client_id")),
    }
}

/// Refuses a client ID metadata document client (docs/sts.md §16.4) any grant but
/// `authorization_code` and `refresh_token` (`devicecode` for the device authorization
/// endpoint): its document can declare no other, and nothing but its redirect URIs binds it.
pub fn document_client_may_use(client_id: &str, grant: &str) -> OAuthResult<()> {
    let document_client = agentid_claims::guid::parse(client_id).is_none()
        && crate::mcp::client_metadata::client_url(client_id).is_ok();
    if document_client && !matches!(grant, "authorization_code" | "refresh_token") {
        return Err(OAuthError::document_client_grant(grant));
    }
    Ok(())
}

/// Finds a client by `client_id` in a tenant, without authenticating it.
pub async fn lookup(
    store: &agentid_directory::hot::View<'_>,
    tenant: &agentid_directory::model::Tenant,
    client_id: &str,
) -> OAuthResult<Client> {
    let tenant_name = tenant.name().to_string();
    let app_id = match agentid_claims::guid::parse(client_id) {
        Some(id) => id,
        // A client ID metadata document URL: the application made for it at /authorize
        // (docs/sts.md §16.4).
        None => crate::mcp::client_metadata::token_client(store.store(), tenant, client_id)
            .await
            .map_err(super::internal)?
            .ok_or_else(|| OAuthError::unknown_client(client_id, &tenant_name))?,
    };
    let record = store
        .client(&tenant.id, &app_id)
        .await
        .map_err(super::internal)?;
    Ok(match record {
        None => return Err(OAuthError::unknown_client(client_id, &tenant_name)),
        Some(ClientRecord::App { app, sp }) => Client {
            kind: if app.kind == AppKind::Blueprint {
                ClientKind::Blueprint
            } else if app.is_public_client {
                ClientKind::Public
            } else {
                ClientKind::Confidential
            },
            app_id,
            display_name: sp
                .as_ref()
                .map(|s| s.display_name.clone())
                .unwrap_or_else(|| app.display_name.clone()),
            sp,
            app: Some(app),
            blueprint: None,
            credential: Credential::None,
        },
        Some(ClientRecord::Agent {
            agent,
            blueprint,
            blueprint_sp,
        }) => Client {
            kind: ClientKind::Agent,
            app_id,
            display_name: agent.display_name.clone(),
            sp: Some(agent),
            app: None,
            blueprint: blueprint.zip(blueprint_sp),
            credential: Credential::None,
        },
        Some(ClientRecord::BuiltIn { def, sp }) if def.public_client => Client {
            kind: ClientKind::Public,
            app_id,
            display_name: def.display_name.to_string(),
            sp: Some(sp),
            app: None,
            blueprint: None,
            credential: Credential::None,
        },
        Some(ClientRecord::BuiltIn { .. }) => {
            return Err(OAuthError::unknown_client(client_id, &tenant_name));
        }
    })
}

/// Steps 4–7 of docs/sts.md §6.2: identify the client, authenticate it, check it is usable.
pub async fn authenticate(req: &TokenRequest<'_>) -> OAuthResult<Client> {
    let (client_id, basic_secret) = client_id_and_basic(req)?;
    document_client_may_use(&client_id, req.form.get("grant_type").unwrap_or_default())?;
    let mut client = lookup(req.view, req.tenant, &client_id).await?;
    req.audit_client(&client);

    // Credential precedence (§6.3 table).
    let form = &req.form;
    let credential = if let Some(t) = form.get("client_assertion_type") {
        if t != JWT_BEARER_ASSERTION_TYPE {
            return Err(OAuthError::malformed(format!(
                "The client_assertion_type '{t}' is not supported."
            )));
        }
        let raw = form.require("client_assertion")?;
        if form.has("client_secret") || basic_secret.is_some() {
            return Err(OAuthError::malformed(
                "Only one client authentication method may be used.",
            ));
        }
        let jwt =
            UnverifiedJwt::parse(raw).map_err(|e| OAuthError::unparseable_jwt(&e.to_string()))?;
        if client.kind == ClientKind::Public {
            return Err(OAuthError::public_client_credential());
        }
        if client.kind == ClientKind::Agent {
            verify_t1(req, &client, &jwt).await?
        } else if jwt
            .str_claim("iss")
            .is_some_and(|i| req.sts.is_own_issuer(i))
        {
            return Err(OAuthError::own_token_as_federated());
        } else if jwt.str_claim("iss") == Some(client_id.as_str())
            || ["x5t", "x5t#S256", "x5c"]
                .iter()
                .any(|h| jwt.header.contains_key(*h))
        {
            verify_private_key_jwt(req, &client, &jwt, &client_id).await?
        } else {
            verify_federated(req, &client, &jwt).await?
        }
    } else if let Some(secret) = basic_secret.as_deref().or(form.get("client_secret")) {
        match client.kind {
            ClientKind::Public => return Err(OAuthError::public_client_credential()),
            ClientKind::Agent => return Err(OAuthError::bad_secret(&client_id)),
            _ => verify_secret(req, &client, secret).await?,
        }
    } else {
        match client.kind {
            ClientKind::Public => Credential::None,
            _ => return Err(OAuthError::no_credential()),
        }
    };
    client.credential = credential;
    req.audit_credential(&client.credential);

    // Step 7: usable.
    match client.kind {
        ClientKind::Agent => {} // checked in verify_t1, with the blueprint cascade
        _ => match &client.sp {
            None => return Err(OAuthError::no_service_principal(&client_id)),
            Some(sp) if !sp.account_enabled => {
                return Err(OAuthError::disabled(&client_id, &sp.display_name));
            }
            Some(_) => {}
        },
    }
    Ok(client)
}

async fn verify_secret(
    req: &TokenRequest<'_>,
    client: &Client,
    secret: &str,
) -> OAuthResult<Credential> {
    let app = client.app.as_ref().ok_or_else(OAuthError::server_error)?;
    let creds = req
        .view
        .password_credentials(&app.id)
        .await
        .map_err(super::internal)?;
    let hash = sha256_hex(secret);
    // Compare against every credential, in constant time each.
    let matched = creds
        .iter()
        .filter(|c| ct_eq(&c.secret_sha256, &hash))
        .max_by_key(|c| c.end_at);
    match matched {
        Some(c) if c.end_at <= req.ctx.now => {
            Err(OAuthError::secret_expired(&client.app_id.to_string()))
        }
        Some(c) => Ok(Credential::Secret { key_id: c.key_id }),
        None => Err(OAuthError::bad_secret(&client.app_id.to_string())),
    }
}

/// Decodes an `x5t`-style thumbprint in any of the encodings clients use (base64url with or
/// without padding, standard base64, hex).
fn thumbprint_hex(v: &str) -> Option<String> {
    let t = v.trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .or_else(|| STANDARD.decode(v).ok())
        .map(|b| agentid_claims::jwt::hex(&b))
}

/// The public key of a registered certificate (RSA, or EC on P-256/P-384).
fn cert_key(der: &[u8]) -> Option<VerificationKey> {
    use x509_parser::public_key::PublicKey;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let spki = cert.public_key();
    match spki.parsed().ok()? {
        PublicKey::RSA(rsa) => VerificationKey::rsa(rsa.modulus, rsa.exponent).ok(),
        PublicKey::EC(point) => {
            let curve = match spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .as_deref()
            {
                Some("1.2.840.10045.3.1.7") => Curve::P256,
                Some("1.3.132.0.34") => Curve::P384,
                _ => return None,
            };
            VerificationKey::ec_point(curve, point.data()).ok()
        }
        _ => None,
    }
}

/// Client assertions: the algorithms accepted, `typ` JWT or client-authentication+jwt, and the
/// configured skew on `exp`, `nbf` and `iat`. Claims are matched by each kind of assertion.
fn assertion_verifier(req: &TokenRequest<'_>, algorithms: &[Alg]) -> Verifier {
    Verifier::new(algorithms)
        .skew(req.sts.settings.clock_skew)
        .required_claims(&[])
        .typ(Typ::Assertion)
        .check_iat(true)
}

/// AADSTS700024 for lifetime refusals, else AADSTS700027 with the reason.
fn assertion_refusal(e: VerifyError) -> OAuthError {
    if crate::own_tokens::is_lifetime(&e) {
        return OAuthError::assertion_time();
    }
    match e {
        VerifyError::AlgNotAllowed(alg) => {
            OAuthError::assertion_invalid(&format!("algorithm '{alg}' is not accepted"))
        }
        VerifyError::KeysUnavailable { reason, .. } => OAuthError::assertion_invalid(&format!(
            "cannot obtain the issuer's signing keys: {reason}"
        )),
        VerifyError::KeyMismatch { .. } | VerifyError::BadSignature => {
            OAuthError::assertion_invalid("signature is invalid")
        }
        other => OAuthError::assertion_invalid(&other.to_string()),
    }
}

fn locate_key<'a>(jwt: &UnverifiedJwt, keys: &'a [KeyCredential]) -> Vec<&'a KeyCredential> {
    if let Some(h) = jwt.header_str("x5t").and_then(thumbprint_hex) {
        return keys.iter().filter(|k| k.thumbprint_sha1 == h).collect();
    }
    if let Some(h) = jwt.header_str("x5t#S256").and_then(thumbprint_hex) {
        return keys.iter().filter(|k| k.thumbprint_sha256 == h).collect();
    }
    if let Some(kid) = jwt.kid() {
        let kid_l = kid.to_ascii_lowercase();
        return keys
            .iter()
            .filter(|k| k.key_id.to_string() == kid_l || k.thumbprint_sha1 == kid_l)
            .collect();
    }
    if let Some(x5c) = jwt
        .header
        .get("x5c")
        .and_then(|v| v.as_array())
        .and_then(|a| a.first())
        .and_then(|v| v.as_str())
    {
        if let Ok(der) = STANDARD.decode(x5c) {
            use sha1::Digest;
            let h = agentid_claims::jwt::hex(&sha1::Sha1::digest(&der));
            return keys.iter().filter(|k| k.thumbprint_sha1 == h).collect();
        }
        return vec![];
    }
    keys.iter().collect()
}

async fn verify_private_key_jwt(
    req: &TokenRequest<'_>,
    client: &Client,
    jwt: &UnverifiedJwt,
    client_id: &str,
) -> OAuthResult<Credential> {
    let verifier = assertion_verifier(req, &[Alg::RS256, Alg::PS256, Alg::ES256]);
    let alg = verifier.check_header(jwt).map_err(assertion_refusal)?;
    let app = client.app.as_ref().ok_or_else(OAuthError::server_error)?;
    let keys = req
        .sts
        .store
        .key_credentials(&app.id)
        .await
        .map_err(super::internal)?;
    // The header only locates a registered certificate (by thumbprint); its key is the
    // registered one, never one carried in the header.
    let candidates = locate_key(jwt, &keys);
    if candidates.is_empty() {
        let shown = jwt.header_str("x5t").or(jwt.kid()).unwrap_or("(none)");
        return Err(OAuthError::assertion_key_not_found(shown));
    }
    let now = req.ctx.now;
    let current: Vec<&KeyCredential> = candidates
        .into_iter()
        .filter(|k| now >= k.start_at && now <= k.end_at)
        .collect();
    if current.is_empty() {
        return Err(OAuthError::assertion_invalid("key expired"));
    }
    let usable: Vec<(Arc<VerificationKey>, &KeyCredential)> = current
        .into_iter()
        .filter_map(|k| Some((Arc::new(cert_key(&k.cert_der)?), k)))
        .collect();
    let key_list: Vec<Arc<VerificationKey>> = usable.iter().map(|(v, _)| v.clone()).collect();
    let matched = verifier
        .verify_signature(jwt, alg, jwt.kid(), &key_list)
        .map_err(assertion_refusal)?;
    let key = usable
        .iter()
        .find(|(v, _)| Arc::ptr_eq(v, &matched))
        .map(|(_, k)| *k)
        .ok_or_else(OAuthError::server_error)?;
    for c in ["iss", "sub", "exp", "jti"] {
        if !jwt.claims.contains_key(c) {
            return Err(OAuthError::missing_claim(c));
        }
    }
    if jwt.str_claim("iss") != Some(client_id) || jwt.str_claim("sub") != Some(client_id) {
        return Err(OAuthError::assertion_subject(client_id));
    }
    if !jwt
        .audiences()
        .iter()
        .any(|a| req.sts.is_token_endpoint(a, req.tenant))
    {
        return Err(OAuthError::assertion_invalid("invalid audience"));
    }
    verifier
        .check_claims(&jwt.claims, now, &[])
        .map_err(assertion_refusal)?;
    let jti = jwt
        .str_claim("jti")
        .ok_or_else(|| OAuthError::missing_claim("jti"))?;
    let exp = jwt.time_claim("exp").unwrap_or(now);
    // Recording the jti cannot be taken back if the request were decided again: establish the
    // directory generation first (docs/performance.md §3.1).
    if !req.view.confirm().await.map_err(super::internal)? {
        return Err(OAuthError::server_error());
    }
    let fresh = req
        .sts
        .store
        .record_assertion(
            &req.tenant.id,
            client_id,
            jti,
            &jwt.sha256_hex(),
            exp.saturating_add(req.sts.settings.clock_skew),
            req.sts.settings.single_use_assertions,
        )
        .await
        .map_err(super::internal)?;
    if !fresh {
        return Err(OAuthError::assertion_invalid("assertion identifier reused"));
    }
    Ok(Credential::PrivateKeyJwt { key_id: key.key_id })
}

async fn verify_federated(
    req: &TokenRequest<'_>,
    client: &Client,
    jwt: &UnverifiedJwt,
) -> OAuthResult<Credential> {
    for c in ["iss", "sub", "aud", "exp"] {
        if !jwt.claims.contains_key(c) {
            return Err(OAuthError::missing_claim(c));
        }
    }
    let iss = jwt
        .str_claim("iss")
        .ok_or_else(|| OAuthError::missing_claim("iss"))?;
    let sub = jwt
        .str_claim("sub")
        .ok_or_else(|| OAuthError::missing_claim("sub"))?;
    req.audit_federated(iss, sub);
    let app = client.app.as_ref().ok_or_else(OAuthError::server_error)?;
    let fics = req
        .sts
        .store
        .federated_credentials(&app.id)
        .await
        .map_err(super::internal)?;
    let by_issuer: Vec<_> = fics.iter().filter(|f| f.issuer == iss).collect();
    if by_issuer.is_empty() {
        return Err(OAuthError::fic_issuer(iss));
    }
    let by_subject: Vec<_> = by_issuer.into_iter().filter(|f| f.subject == sub).collect();
    if by_subject.is_empty() {
        return Err(OAuthError::fic_subject(sub));
    }
    let auds = jwt.audiences();
    let fic = by_subject
        .into_iter()
        .find(|f| auds.contains(&f.audience.as_str()))
        .ok_or_else(|| OAuthError::fic_audience(iss, sub, &auds.join(",")))?;
    let trusted = req
        .sts
        .store
        .trusted_issuer(&req.tenant.id, iss)
        .await
        .map_err(super::internal)?;
    if req.sts.settings.require_trusted_issuer && trusted.is_none() {
        return Err(OAuthError::fic_issuer(iss));
    }
    let verifier = assertion_verifier(req, &[Alg::RS256, Alg::ES256]);
    verifier.check_header(jwt).map_err(assertion_refusal)?;
    let keys = req
        .sts
        .federation
        .keys(iss, trusted.as_ref())
        .await
        .map_err(|e| {
            OAuthError::assertion_invalid(&format!("cannot obtain the issuer's signing keys: {e}"))
        })?;
    let now = req.ctx.now;
    let verified = match &keys {
        crate::federation::IssuerKeys::Stored(set) => verifier.verify(jwt, set, now).await,
        crate::federation::IssuerKeys::Discovered(cache) => verifier.verify(jwt, cache, now).await,
    };
    verified.map_err(|e| match e {
        VerifyError::KidUnknown(kid) => OAuthError::assertion_key_not_found(&kid),
        other => assertion_refusal(other),
    })?;
    Ok(Credential::Federated {
        fic_id: fic.id,
        issuer: iss.to_string(),
        subject: sub.to_string(),
    })
}

async fn verify_t1(
    req: &TokenRequest<'_>,
    client: &Client,
    jwt: &UnverifiedJwt,
) -> OAuthResult<Credential> {
    let iss = jwt.str_claim("iss").unwrap_or("");
    if !req.sts.is_own_issuer(iss) {
        // An agent has no federated credentials of its own.
        return Err(OAuthError::fic_issuer(iss));
    }
    let v2 = req.sts.issuer_v2(&req.tenant.id);
    if iss != v2 {
        return Err(OAuthError::assertion_invalid("signature is invalid"));
    }
    let verifier = crate::own_tokens::verifier(req.sts, vec![v2])
        .typ(Typ::Assertion)
        .check_iat(true);
    crate::own_tokens::verify(req.sts, &req.tenant.id, jwt, &verifier, req.ctx.now)
        .await
        .map_err(|e| {
            if crate::own_tokens::is_lifetime(&e) {
                OAuthError::assertion_time()
            } else {
                OAuthError::assertion_invalid("signature is invalid")
            }
        })?;
    let sub = jwt.str_claim("sub").unwrap_or("");
    let fmi = FmiPath::parse(sub);
    let is_t1 = jwt.audiences() == [TOKEN_EXCHANGE_APP_ID]
        && jwt.str_claim("idtyp") == Some("app")
        && fmi.is_some();
    let Some(fmi) = fmi.filter(|_| is_t1) else {
        return Err(OAuthError::own_token_as_federated());
    };
    let bp = client.blueprint.as_ref();
    let matches = fmi.tenant == req.tenant.id
        && fmi.agent.eq_ignore_ascii_case(&client.app_id.to_string())
        && bp.is_some_and(|(app, _)| app.app_id == fmi.blueprint_app)
        && jwt.str_claim("azp").and_then(agentid_claims::guid::parse) == Some(fmi.blueprint_app);
    if !matches {
        return Err(OAuthError::fic_subject(sub));
    }
    let agent = client.sp.as_ref().ok_or_else(OAuthError::server_error)?;
    let (bp_app, bp_sp) = bp.ok_or_else(OAuthError::server_error)?;
    if !bp_sp.account_enabled {
        return Err(OAuthError::disabled(
            &bp_app.app_id.to_string(),
            &bp_sp.display_name,
        ));
    }
    if !agent.account_enabled {
        return Err(OAuthError::disabled(
            &client.app_id.to_string(),
            &agent.display_name,
        ));
    }
    Ok(Credential::T1 { uti: jwt.log_id() })
}
