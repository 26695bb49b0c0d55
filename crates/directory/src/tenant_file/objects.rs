//! The objects of a tenant file, each made to match its spec through the entity modules
//! (`users`, `applications`, `principals`, `credentials`, `grants`): an object whose spec hash
//! is unchanged is left alone, so a second apply writes nothing.

use super::TenantFileError as E;
use super::check::{roles_of, scopes_of};
use super::spec::*;
use super::tx::{GeneratedSecret, Tx, hash_of};
use crate::applications::{
    self, ApplicationError, ApplicationPatch, IdentifierUri, NewApplication, RedirectPlatform,
    RedirectUri, UriOwner,
};
use crate::credentials::{self, DEFAULT_FIC_AUDIENCE, FicError, NewCertificate, NewPassword};
use crate::grants::{self, GrantRow};
use crate::model::{AppKind, FederatedCredential, InheritablePermission, SpKind, UserKind};
use crate::principals::{self, NewPrincipal, PrincipalError, PrincipalPatch};
use crate::users::{self, NewUser, UserError, UserPatch};
use crate::{builtin, secrets};
use serde::Serialize;
use std::collections::HashMap;
use uuid::Uuid;

/// The parts of an application or blueprint that become an application row.
pub(super) struct AppParts<'a> {
    pub handle: &'a str,
    pub path: String,
    pub kind: AppKind,
    pub display_name: String,
    pub app_id: Option<Uuid>,
    pub identifier_uris: &'a [String],
    pub scopes: &'a [String],
    pub app_roles: &'a [String],
    pub access_token_version: Option<u8>,
    pub public_client: bool,
    pub redirect_uris: &'a [String],
    pub secrets: &'a [SecretSpec],
    pub certificates: &'a [CertificateSpec],
    pub federated_credentials: &'a [FicSpec],
    pub owners: &'a [String],
    pub sponsors: &'a [String],
    pub inheritable: Vec<InheritablePermission>,
    pub signing_alg: String,
    pub enabled: bool,
}

fn upn_error(e: UserError, path: &str) -> E {
    match e {
        UserError::Directory(d) => E::Directory(d),
        other => E::invalid(format!("{path}.upn"), other.to_string()),
    }
}

#[derive(Serialize)]
struct UserHash<'a> {
    spec: UserSpec,
    password_sha256: Option<String>,
    _v: &'a str,
}

pub(super) async fn apply_user(tx: &mut Tx<'_>, u: &UserSpec, path: &str) -> Result<Uuid, E> {
    let mut spec = u.clone();
    let password_sha256 = spec.password.take().map(|p| secrets::sha256_hex(&p));
    let hash = hash_of(&UserHash {
        spec,
        password_sha256,
        _v: "1",
    });
    let tracked = tx.tracked("user", &u.name).await?;
    let existing_id = match (&tracked, u.id) {
        (Some((id, _)), _) => Some(id.clone()),
        (None, Some(id)) if tx.exists("users", &id.to_string()).await? => Some(id.to_string()),
        _ => None,
    };
    if let (Some((id, h)), Some(_)) = (&tracked, &existing_id)
        && *h == hash
    {
        return Ok(Uuid::parse_str(id).expect("stored id"));
    }
    let pw = match (&u.password, &u.password_hash) {
        (Some(p), _) => Some(secrets::hash_password(p)),
        (_, Some(h)) => Some(h.clone()),
        _ => None,
    };
    let display_name = u.display_name.clone().unwrap_or_else(|| u.upn.clone());
    let enabled = u.enabled.unwrap_or(true);
    let id = match existing_id {
        Some(id) => {
            let id = Uuid::parse_str(&id).expect("stored id");
            let patch = UserPatch {
                upn: Some(u.upn.clone()),
                display_name: Some(display_name),
                given_name: Some(u.given_name.clone()),
                surname: Some(u.surname.clone()),
                mail: Some(u.mail.clone()),
                account_enabled: Some(enabled),
                password_hash: Some(pw),
                roles: Some(u.roles.clone()),
            };
            users::update(tx.conn, &id, &patch)
                .await
                .map_err(|e| upn_error(e, path))?;
            tx.count(false);
            id
        }
        None => {
            let new = NewUser {
                id: u.id.unwrap_or_else(Uuid::new_v4),
                kind: UserKind::User,
                upn: &u.upn,
                display_name: &display_name,
                given_name: u.given_name.as_deref(),
                surname: u.surname.as_deref(),
                mail: u.mail.as_deref(),
                enabled,
                password_hash: pw.as_deref(),
                identity_parent_id: None,
                roles: &u.roles,
            };
            users::insert(tx.conn, &tx.tenant, &new)
                .await
                .map_err(|e| upn_error(e, path))?;
            tx.count(true);
            new.id
        }
    };
    tx.track("user", &u.name, &id.to_string(), &hash).await?;
    Ok(id)
}

#[derive(Serialize)]
struct AppHash<'a> {
    kind: &'a str,
    display_name: &'a str,
    app_id: Option<Uuid>,
    identifier_uris: &'a [String],
    scopes: &'a [String],
    app_roles: &'a [String],
    access_token_version: Option<u8>,
    public_client: bool,
    redirect_uris: &'a [String],
    owners: &'a [String],
    sponsors: &'a [String],
    inheritable: &'a [InheritablePermission],
    signing_alg: &'a str,
    enabled: bool,
}

/// Applies an application or blueprint with its principal and credentials; returns (sp id, appId).
pub(super) async fn apply_app(
    tx: &mut Tx<'_>,
    p: &AppParts<'_>,
    owners: &[String],
    sponsors: &[String],
    certs: &HashMap<String, NewCertificate>,
) -> Result<(Uuid, Uuid), E> {
    let kind_key = if p.kind == AppKind::Blueprint {
        "blueprint"
    } else {
        "application"
    };
    let hash = hash_of(&AppHash {
        kind: p.kind.as_str(),
        display_name: &p.display_name,
        app_id: p.app_id,
        identifier_uris: p.identifier_uris,
        scopes: p.scopes,
        app_roles: p.app_roles,
        access_token_version: p.access_token_version,
        public_client: p.public_client,
        redirect_uris: p.redirect_uris,
        owners: p.owners,
        sponsors: p.sponsors,
        inheritable: &p.inheritable,
        signing_alg: &p.signing_alg,
        enabled: p.enabled,
    });
    if let Some(v) = p.access_token_version
        && v != 1
        && v != 2
    {
        return Err(E::invalid(
            format!("{}.accessTokenVersion", p.path),
            "must be 1 or 2",
        ));
    }
    if p.signing_alg != "RS256" && p.signing_alg != "ES256" {
        return Err(E::invalid(
            format!("{}.tokenSigningAlgorithm", p.path),
            "must be RS256 or ES256",
        ));
    }
    let tracked = tx.tracked(kind_key, p.handle).await?;
    // Existing object: tracked handle, or a given appId already in the tenant.
    let existing: Option<(String, String)> = match (&tracked, p.app_id) {
        (Some((obj, _)), _) => {
            sqlx::query_as("SELECT id, app_id FROM applications WHERE id = $1")
                .bind(obj)
                .fetch_optional(&mut *tx.conn)
                .await?
        }
        (None, Some(app_id)) => {
            sqlx::query_as(
                "SELECT id, app_id FROM applications WHERE tenant_id = $1 AND app_id = $2",
            )
            .bind(tx.tenant.to_string())
            .bind(app_id.to_string())
            .fetch_optional(&mut *tx.conn)
            .await?
        }
        _ => None,
    };
    let (object_id, app_id, created) = match &existing {
        Some((o, a)) => (
            Uuid::parse_str(o).expect("id"),
            Uuid::parse_str(a).expect("id"),
            false,
        ),
        None => (Uuid::new_v4(), p.app_id.unwrap_or_else(Uuid::new_v4), true),
    };
    if let Some(given) = p.app_id
        && given != app_id
    {
        return Err(E::invalid(
            format!("{}.appId", p.path),
            format!("appId is immutable (the directory has {app_id})"),
        ));
    }
    let unchanged = matches!(&tracked, Some((_, h)) if *h == hash) && existing.is_some();
    if !unchanged {
        write_application(tx, p, object_id, app_id, created, owners, sponsors).await?;
    }
    // The service principal: always present for file-declared applications.
    let sp_kind = if p.kind == AppKind::Blueprint {
        SpKind::BlueprintPrincipal
    } else {
        SpKind::ServicePrincipal
    };
    let sp: Option<(String, i64, String)> =
        sqlx::query_as("SELECT id, account_enabled, display_name FROM service_principals WHERE tenant_id = $1 AND app_id = $2")
            .bind(tx.tenant.to_string())
            .bind(app_id.to_string())
            .fetch_optional(&mut *tx.conn)
            .await?;
    let sp_id = match sp {
        Some((id, en, dn)) => {
            let id = Uuid::parse_str(&id).expect("id");
            if (en != 0) != p.enabled || dn != p.display_name {
                let patch = PrincipalPatch {
                    display_name: Some(p.display_name.clone()),
                    account_enabled: Some(p.enabled),
                    sponsors: None,
                };
                principals::update(tx.conn, &id, &patch).await?;
                if unchanged {
                    tx.count(false);
                }
            }
            id
        }
        None => {
            let new = NewPrincipal {
                id: Uuid::new_v4(),
                app_id,
                kind: sp_kind,
                display_name: &p.display_name,
                enabled: p.enabled,
                blueprint_app_id: None,
                sponsors: &[],
            };
            principals::insert(tx.conn, &tx.tenant, &new)
                .await
                .map_err(|e| E::Directory(e.into()))?;
            new.id
        }
    };
    tx.track(kind_key, p.handle, &object_id.to_string(), &hash)
        .await?;
    apply_secrets(tx, p, object_id, app_id).await?;
    apply_certificates(tx, p, object_id, certs).await?;
    apply_fics(tx, p, object_id).await?;
    Ok((sp_id, app_id))
}

/// Writes the application row and claims its identifier URIs.
async fn write_application(
    tx: &mut Tx<'_>,
    p: &AppParts<'_>,
    object_id: Uuid,
    app_id: Uuid,
    created: bool,
    owners: &[String],
    sponsors: &[String],
) -> Result<(), E> {
    if builtin::by_app_id(&app_id.to_string()).is_some() {
        return Err(E::invalid(
            format!("{}.appId", p.path),
            "that appId belongs to a Microsoft built-in application",
        ));
    }
    let uris: Vec<String> = p
        .identifier_uris
        .iter()
        .map(|u| {
            u.replace("{appId}", &app_id.to_string())
                .replace("{tenantId}", &tx.tenant.to_string())
        })
        .collect();
    let owner = UriOwner {
        tenant_id: tx.tenant,
        app_id,
        verified_domains: &tx.domains,
    };
    let uris = IdentifierUri::parse_all(&uris, &owner)
        .map_err(|(i, e)| E::invalid(format!("{}.identifierUris[{i}]", p.path), e.to_string()))?;
    let scopes = scopes_of(app_id, p.scopes, &format!("{}.scopes", p.path))?;
    let roles = roles_of(app_id, p.app_roles, &format!("{}.appRoles", p.path))?;
    // Checked before the transaction (`check`); a tenant file keeps one list.
    let platform = if p.public_client {
        RedirectPlatform::PublicClient
    } else {
        RedirectPlatform::Web
    };
    let redirects = RedirectUri::parse_all(p.redirect_uris, platform)
        .map_err(|(i, e)| E::invalid(format!("{}.redirectUris[{i}]", p.path), e.to_string()))?;
    let version = p.access_token_version.map(i64::from);
    let uri_error = |e: ApplicationError| match e {
        ApplicationError::IdentifierUriBuiltIn { index, .. }
        | ApplicationError::IdentifierUriTaken { index, .. } => {
            E::invalid(format!("{}.identifierUris[{index}]", p.path), e.to_string())
        }
        ApplicationError::Directory(d) => E::Directory(d),
        other => E::invalid(p.path.clone(), other.to_string()),
    };
    if created {
        let new = NewApplication {
            id: object_id,
            app_id,
            kind: p.kind,
            display_name: &p.display_name,
            scopes: &scopes,
            app_roles: &roles,
            access_token_version: version,
            is_public_client: p.public_client,
            redirect_uris: &redirects,
            inheritable_permissions: &p.inheritable,
            owners,
            sponsors,
            signing_alg: &p.signing_alg,
        };
        applications::insert(tx.conn, &tx.tenant, &new)
            .await
            .map_err(uri_error)?;
        applications::claim_identifier_uris(tx.conn, &tx.tenant, &object_id, &app_id, &uris)
            .await
            .map_err(uri_error)?;
    } else {
        let patch = ApplicationPatch {
            display_name: Some(p.display_name.clone()),
            identifier_uris: Some(uris),
            scopes: Some(scopes),
            app_roles: Some(roles),
            access_token_version: Some(version),
            is_public_client: Some(p.public_client),
            redirect_uris: Some(redirects),
            inheritable_permissions: Some(p.inheritable.clone()),
            owners: Some(owners.to_vec()),
            sponsors: Some(sponsors.to_vec()),
            signing_alg: Some(p.signing_alg.clone()),
            ..Default::default()
        };
        applications::update(tx.conn, &tx.tenant, &object_id, &app_id, &patch)
            .await
            .map_err(uri_error)?;
    }
    tx.count(created);
    Ok(())
}

/// Client secrets, matched by display name (or position). A secret without a value is
/// generated once and reported; later applies keep it.
async fn apply_secrets(
    tx: &mut Tx<'_>,
    p: &AppParts<'_>,
    object_id: Uuid,
    app_id: Uuid,
) -> Result<(), E> {
    for (i, s) in p.secrets.iter().enumerate() {
        let label = s
            .display_name
            .clone()
            .unwrap_or_else(|| format!("secret-{i}"));
        let handle = format!("{}/{label}", p.handle);
        let tracked = tx.tracked("secret", &handle).await?;
        let (value, generated) = match (&s.value, &tracked) {
            (Some(v), _) => (v.clone(), false),
            (None, Some(_)) => continue, // generated earlier; kept
            (None, None) => (secrets::random_client_secret(), true),
        };
        if value.is_empty() {
            return Err(E::invalid(
                format!("{}.secrets[{i}].value", p.path),
                "must not be empty",
            ));
        }
        let h = secrets::sha256_hex(&value);
        if let Some((_, old)) = &tracked
            && *old == h
        {
            continue;
        }
        let key_id = match &tracked {
            Some((k, _)) => {
                Uuid::parse_str(k).map_err(|e| crate::DirectoryError::corrupt("keyId", e))?
            }
            None => Uuid::new_v4(),
        };
        credentials::delete_password(tx.conn, None, &key_id.to_string()).await?;
        let cred = NewPassword::for_secret(&value, key_id, Some(label.clone()), None);
        credentials::insert_password(tx.conn, &tx.tenant, &object_id, &cred, &value).await?;
        tx.count(tracked.is_none());
        tx.track("secret", &handle, &key_id.to_string(), &h).await?;
        if generated {
            tx.report.generated_secrets.push(GeneratedSecret {
                application: p.handle.to_string(),
                app_id,
                display_name: label,
                value,
            });
        }
    }
    Ok(())
}

/// Certificates, by position; replaced when the certificate changes.
async fn apply_certificates(
    tx: &mut Tx<'_>,
    p: &AppParts<'_>,
    object_id: Uuid,
    certs: &HashMap<String, NewCertificate>,
) -> Result<(), E> {
    for (i, spec) in p.certificates.iter().enumerate() {
        let cert = &certs[&format!("{}/{i}", p.handle)];
        let handle = format!("{}/cert-{i}", p.handle);
        let tracked = tx.tracked("certificate", &handle).await?;
        if matches!(&tracked, Some((_, h)) if *h == cert.sha256) {
            continue;
        }
        let key_id = tracked
            .as_ref()
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| Uuid::new_v4().to_string());
        credentials::put_certificate(
            tx.conn,
            &tx.tenant,
            &object_id,
            &key_id,
            spec.display_name.as_deref(),
            cert,
        )
        .await?;
        tx.count(tracked.is_none());
        tx.track("certificate", &handle, &key_id, &cert.sha256)
            .await?;
    }
    Ok(())
}

/// Federated credentials, matched by name.
async fn apply_fics(tx: &mut Tx<'_>, p: &AppParts<'_>, object_id: Uuid) -> Result<(), E> {
    for (i, f) in p.federated_credentials.iter().enumerate() {
        let audience = f
            .audiences
            .first()
            .cloned()
            .unwrap_or_else(|| DEFAULT_FIC_AUDIENCE.to_string());
        let existing: Option<(String, String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT id, issuer, subject, audience, description FROM federated_credentials WHERE application_id = $1 AND name_lower = $2",
        )
        .bind(object_id.to_string())
        .bind(f.name.to_lowercase())
        .fetch_optional(&mut *tx.conn)
        .await?;
        let dup = |e: FicError| match e {
            FicError::Directory(d) => E::Directory(d),
            other => E::invalid(
                format!("{}.federatedCredentials[{i}]", p.path),
                other.to_string(),
            ),
        };
        let fic = |id: Uuid| FederatedCredential {
            id,
            name: f.name.clone(),
            issuer: f.issuer.clone(),
            subject: f.subject.clone(),
            audience: audience.clone(),
        };
        match existing {
            Some((_, is, su, au, de))
                if is == f.issuer && su == f.subject && au == audience && de == f.description => {}
            Some((id, ..)) => {
                let id = Uuid::parse_str(&id).expect("stored id");
                credentials::update_fic(tx.conn, &fic(id), f.description.as_deref())
                    .await
                    .map_err(dup)?;
                tx.count(false);
            }
            None => {
                credentials::insert_fic(
                    tx.conn,
                    &tx.tenant,
                    &object_id,
                    &fic(Uuid::new_v4()),
                    f.description.as_deref(),
                )
                .await
                .map_err(dup)?;
                tx.count(true);
            }
        }
    }
    Ok(())
}

pub(super) async fn apply_agent(
    tx: &mut Tx<'_>,
    a: &AgentSpec,
    blueprint: Uuid,
    sponsors: &[String],
    path: &str,
) -> Result<Uuid, E> {
    let display_name = a.display_name.clone().unwrap_or_else(|| a.name.clone());
    let enabled = a.enabled.unwrap_or(true);
    let hash = hash_of(&(&display_name, a.id, sponsors, enabled, blueprint));
    let tracked = tx.tracked("agent", &a.name).await?;
    let id = match (&tracked, a.id) {
        (Some((id, _)), Some(given)) if *id != given.to_string() => {
            return Err(E::invalid(
                format!("{path}.id"),
                format!("the agent's id is immutable (the directory has {id})"),
            ));
        }
        (Some((id, _)), _) => Uuid::parse_str(id).expect("id"),
        (None, Some(given)) => given,
        (None, None) => Uuid::new_v4(),
    };
    let taken = || {
        E::invalid(
            format!("{path}.id"),
            format!("{id} is already used by another object"),
        )
    };
    let row: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT kind, blueprint_app_id FROM service_principals WHERE tenant_id = $1 AND app_id = $2")
            .bind(tx.tenant.to_string())
            .bind(id.to_string())
            .fetch_optional(&mut *tx.conn)
            .await?;
    match row {
        Some((kind, bp))
            if kind != SpKind::AgentIdentity.as_str()
                || bp.as_deref() != Some(&blueprint.to_string()) =>
        {
            return Err(taken());
        }
        Some(_) if matches!(&tracked, Some((_, h)) if *h == hash) => {}
        Some(_) => {
            let patch = PrincipalPatch {
                display_name: Some(display_name),
                account_enabled: Some(enabled),
                sponsors: Some(sponsors.to_vec()),
            };
            principals::update(tx.conn, &id, &patch).await?;
            tx.count(false);
        }
        None => {
            if builtin::by_app_id(&id.to_string()).is_some() {
                return Err(E::invalid(
                    format!("{path}.id"),
                    "that id belongs to a Microsoft built-in application",
                ));
            }
            let new = NewPrincipal {
                id,
                app_id: id,
                kind: SpKind::AgentIdentity,
                display_name: &display_name,
                enabled,
                blueprint_app_id: Some(blueprint),
                sponsors,
            };
            principals::insert(tx.conn, &tx.tenant, &new)
                .await
                .map_err(|e| match e {
                    PrincipalError::Directory(d) => E::Directory(d),
                    _ => taken(),
                })?;
            tx.count(true);
        }
    }
    tx.track("agent", &a.name, &id.to_string(), &hash).await?;
    Ok(id)
}

pub(super) async fn apply_agent_user(
    tx: &mut Tx<'_>,
    agent_handle: &str,
    au: &AgentUserSpec,
    agent: Uuid,
    path: &str,
) -> Result<Uuid, E> {
    let display_name = au.display_name.clone().unwrap_or_else(|| au.upn.clone());
    let hash = hash_of(&(&au.upn, &display_name, au.id, agent));
    let tracked = tx.tracked("agentUser", agent_handle).await?;
    if let Some((id, h)) = &tracked
        && *h == hash
    {
        return Ok(Uuid::parse_str(id).expect("id"));
    }
    let id = match &tracked {
        Some((id, _)) => {
            let id = Uuid::parse_str(id).expect("id");
            let patch = UserPatch {
                upn: Some(au.upn.clone()),
                display_name: Some(display_name),
                ..Default::default()
            };
            users::update(tx.conn, &id, &patch)
                .await
                .map_err(|e| upn_error(e, path))?;
            tx.count(false);
            id
        }
        None => {
            let new = NewUser {
                id: au.id.unwrap_or_else(Uuid::new_v4),
                kind: UserKind::AgentUser,
                upn: &au.upn,
                display_name: &display_name,
                given_name: None,
                surname: None,
                mail: None,
                enabled: true,
                password_hash: None,
                identity_parent_id: Some(agent),
                roles: &[],
            };
            users::insert(tx.conn, &tx.tenant, &new)
                .await
                .map_err(|e| upn_error(e, path))?;
            tx.count(true);
            new.id
        }
    };
    tx.track("agentUser", agent_handle, &id.to_string(), &hash)
        .await?;
    Ok(id)
}

/// Makes the (client, resource, consent type, principal) grant hold exactly `scope`.
pub(super) async fn apply_grant(
    tx: &mut Tx<'_>,
    client: Uuid,
    resource: Uuid,
    consent_type: &str,
    principal_key: &str,
    scope: &str,
) -> Result<(), E> {
    let existing = grants::find(
        tx.conn,
        &client.to_string(),
        &resource.to_string(),
        consent_type,
        principal_key,
    )
    .await?;
    match existing {
        Some(g) if g.scope == scope => {}
        Some(g) => {
            grants::set_scope(tx.conn, &g.id, scope).await?;
            tx.count(false);
        }
        None => {
            let g = GrantRow {
                id: grants::new_grant_id(),
                client_id: client.to_string(),
                consent_type: consent_type.to_string(),
                principal_key: principal_key.to_string(),
                resource_id: resource.to_string(),
                scope: scope.to_string(),
            };
            grants::insert(tx.conn, &tx.tenant, &g)
                .await
                .map_err(|e| E::Directory(e.into()))?;
            tx.count(true);
        }
    }
    Ok(())
}
