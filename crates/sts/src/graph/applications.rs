//! Applications and agent identity blueprints (docs/directory.md §5.2): list, read, create, update
//! and delete. Validation and writes are the directory's (`agentid_directory::applications`).

use super::caller::Caller;
use super::odata::bind_target;
use super::odata::{GraphError, matches};
use super::reply::{GResult, Out, created, iso, ok};
use super::request::Req;
use agentid_directory::applications::{
    ApplicationError, ApplicationPatch, IdentifierUri, IdentifierUriError, RedirectPlatform,
    RedirectUri, UriOwner, check_enabled_scopes_kept, check_permission_values,
};
use agentid_directory::model::{AppKind, Application, PermissionScope, UserKind};
use axum::http::StatusCode;
use serde_json::{Map, Value, json};
use uuid::Uuid;

pub(super) async fn find_app(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Application> {
    let lk = key.to_ascii_lowercase();
    let app = if let Some(inner) = lk
        .strip_prefix("(appid='")
        .and_then(|s| s.strip_suffix("')"))
        .or_else(|| {
            key.strip_prefix("applications(appId='")
                .and_then(|s| s.strip_suffix("')"))
        }) {
        match Uuid::parse_str(inner) {
            Ok(a) => {
                req.sts
                    .store
                    .application_by_app_id(&c.tenant.id, &a)
                    .await?
            }
            Err(_) => None,
        }
    } else {
        match Uuid::parse_str(key) {
            Ok(id) => {
                req.sts
                    .store
                    .application_by_object_id(&c.tenant.id, &id)
                    .await?
            }
            Err(_) => None,
        }
    };
    app.ok_or_else(|| GraphError::not_found(key))
}

pub(super) fn owners_of(extras: &agentid_directory::applications::AppExtras) -> Vec<String> {
    serde_json::from_str(&extras.owners).unwrap_or_default()
}

pub(super) async fn application_json(req: &Req<'_>, app: &Application) -> GResult<Value> {
    let ex = req.sts.store.application_extras(&app.id).await?;
    let passwords: Vec<Value> = req
        .sts
        .store
        .password_credential_list(&app.id)
        .await?
        .into_iter()
        .map(|(k, d, h, s, e)| json!({"keyId": k, "displayName": d, "hint": h, "startDateTime": iso(s), "endDateTime": iso(e), "customKeyIdentifier": null, "secretText": null}))
        .collect();
    let keys: Vec<Value> = req
        .sts
        .store
        .key_credentials(&app.id)
        .await?
        .into_iter()
        .map(|k| json!({"keyId": k.key_id.to_string(), "type": "AsymmetricX509Cert", "usage": "Verify", "key": null, "startDateTime": iso(k.start_at), "endDateTime": iso(k.end_at)}))
        .collect();
    let t = if app.kind == AppKind::Blueprint {
        "#microsoft.graph.agentIdentityBlueprint"
    } else {
        "#microsoft.graph.application"
    };
    let redirects = if app.is_public_client {
        json!([])
    } else {
        json!(app.redirect_uris)
    };
    Ok(json!({
        "@odata.type": t, "id": app.id.to_string(), "appId": app.app_id.to_string(), "displayName": app.display_name,
        "description": ex.description, "signInAudience": "AzureADMyOrg", "identifierUris": app.identifier_uris,
        "api": {"requestedAccessTokenVersion": app.access_token_version, "oauth2PermissionScopes": app.scopes},
        "appRoles": app.app_roles, "passwordCredentials": passwords, "keyCredentials": keys,
        "requiredResourceAccess": serde_json::from_str::<Value>(&ex.required_resource_access).unwrap_or(json!([])),
        "optionalClaims": ex.optional_claims.as_deref().and_then(|o| serde_json::from_str::<Value>(o).ok()),
        "web": {"redirectUris": redirects}, "spa": {"redirectUris": []},
        "publicClient": {"redirectUris": if app.is_public_client { json!(app.redirect_uris) } else { json!([]) }},
        "isFallbackPublicClient": app.is_public_client, "tags": [], "createdDateTime": iso(ex.created_at),
    }))
}

pub(super) async fn list_applications(req: &Req<'_>, c: &Caller, blueprints: bool) -> GResult<Out> {
    if !(c.read_apps() || (blueprints && c.read_blueprints())) {
        return Err(GraphError::denied());
    }
    let filter = req.filter()?;
    let mut items = Vec::new();
    for app in req.sts.store.applications(&c.tenant.id, blueprints).await? {
        if let Some(f) = &filter
            && !matches(f, |p| match p {
                "id" => Some(app.id.to_string()),
                "appId" => Some(app.app_id.to_string()),
                "displayName" => Some(app.display_name.clone()),
                _ => None,
            })?
        {
            continue;
        }
        items.push(application_json(req, &app).await?);
    }
    ok(req.collection(
        if blueprints {
            "applications/microsoft.graph.agentIdentityBlueprint"
        } else {
            "applications"
        },
        items,
    )?)
}

pub(super) async fn get_application(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Out> {
    let app = find_app(req, c, key).await?;
    if !(c.read_apps() || (app.kind == AppKind::Blueprint && c.read_blueprints())) {
        return Err(GraphError::denied());
    }
    let mut v = application_json(req, &app).await?;
    v["@odata.context"] = json!(req.context("applications/$entity"));
    ok(v)
}

/// `sponsors@odata.bind` / `owners@odata.bind`: user (or, for owners, service principal) ids.
pub(super) async fn binds(
    req: &Req<'_>,
    c: &Caller,
    b: &Map<String, Value>,
    key: &str,
    users_only: bool,
) -> GResult<Vec<String>> {
    let Some(v) = b.get(key) else {
        return Ok(vec![]);
    };
    let urls = v
        .as_array()
        .ok_or_else(|| GraphError::bad_request(format!("{key} must be an array of URLs.")))?;
    let mut out = Vec::new();
    for u in urls {
        let url = u
            .as_str()
            .ok_or_else(|| GraphError::bad_request(format!("{key} must be an array of URLs.")))?;
        let (_, id) = bind_target(url).ok_or_else(|| GraphError::not_found(url))?;
        let is_user = req
            .sts
            .store
            .user_by_id(&c.tenant.id, &id)
            .await?
            .is_some_and(|u| u.kind == UserKind::User);
        let is_sp = !users_only
            && req
                .sts
                .store
                .principal_by_object_id(&c.tenant.id, &id)
                .await?
                .is_some();
        if !is_user && !is_sp {
            return Err(GraphError::not_found(&id.to_string()));
        }
        out.push(id.to_string());
    }
    Ok(out)
}

pub(super) async fn create_application(req: &Req<'_>, c: &Caller, blueprint: bool) -> GResult<Out> {
    let type_name = if blueprint {
        "agentIdentityBlueprint"
    } else {
        "application"
    };
    let b = req.body_object(
        type_name,
        &[
            "displayName",
            "signInAudience",
            "description",
            "sponsors@odata.bind",
            "owners@odata.bind",
            "tags",
        ],
        &["id", "appId", "createdDateTime"],
    )?;
    let display = b
        .get("displayName")
        .and_then(Value::as_str)
        .filter(|d| !d.trim().is_empty())
        .ok_or_else(|| GraphError::bad_request("displayName is required."))?;
    if blueprint {
        c.create_blueprint()?;
    } else if !(c.has(
        &["Application.ReadWrite.All"],
        &["Application.ReadWrite.All", "Application.ReadWrite.OwnedBy"],
    )) {
        return Err(GraphError::denied());
    }
    let mut owners = binds(req, c, &b, "owners@odata.bind", false).await?;
    let sponsors = binds(req, c, &b, "sponsors@odata.bind", true).await?;
    // The creator becomes an owner (delegated: the user; app-only: the calling principal).
    let me = c
        .user
        .as_ref()
        .map(|u| u.id.to_string())
        .unwrap_or_else(|| c.client_sp_id.to_string());
    if !owners.contains(&me) {
        owners.push(me);
    }
    let kind = if blueprint {
        AppKind::Blueprint
    } else {
        AppKind::Application
    };
    let app = req
        .sts
        .store
        .create_application(&c.tenant.id, kind, display, &owners, &sponsors)
        .await
        .map_err(application_error)?;
    let mut v = application_json(req, &app).await?;
    v["@odata.context"] = json!(req.context("applications/$entity"));
    created(v)
}

pub(super) fn parse_scopes(v: &Value) -> GResult<Vec<PermissionScope>> {
    let scopes: Vec<PermissionScope> = serde_json::from_value(v.clone())
        .map_err(|e| GraphError::bad_request(format!("Invalid oauth2PermissionScopes: {e}.")))?;
    check_permission_values(scopes.iter().map(|s| s.value.as_str()))
        .map_err(|(_, e)| GraphError::bad_request(e.to_string()))?;
    if scopes.iter().any(|s| s.kind != "User" && s.kind != "Admin") {
        return Err(GraphError::bad_request(
            "Permission type must be User or Admin.",
        ));
    }
    Ok(scopes)
}

pub(super) async fn patch_application(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Out> {
    let app = find_app(req, c, key).await?;
    let ex = req.sts.store.application_extras(&app.id).await?;
    let owners = owners_of(&ex);
    let allowed = if app.kind == AppKind::Blueprint {
        c.write_blueprint(&owners)
    } else {
        c.write_apps(&owners)
    };
    if !allowed {
        return Err(GraphError::denied());
    }
    let b = req.body_object(
        if app.kind == AppKind::Blueprint {
            "agentIdentityBlueprint"
        } else {
            "application"
        },
        &[
            "displayName",
            "identifierUris",
            "api",
            "optionalClaims",
            "requiredResourceAccess",
            "web",
            "spa",
            "publicClient",
            "isFallbackPublicClient",
            "signInAudience",
            "description",
            "tags",
            "appRoles",
        ],
        &[
            "id",
            "appId",
            "createdDateTime",
            "passwordCredentials",
            "keyCredentials",
        ],
    )?;
    if app.kind == AppKind::Blueprint {
        let has_redirects = ["web", "spa", "publicClient"].iter().any(|k| {
            b.get(*k)
                .and_then(|v| v["redirectUris"].as_array())
                .is_some_and(|a| !a.is_empty())
        });
        if has_redirects || b.get("isFallbackPublicClient").and_then(Value::as_bool) == Some(true) {
            return Err(GraphError::new(
                StatusCode::BAD_REQUEST,
                "AgentBlueprint_IncompatibleProperty",
                "Agent identity blueprints cannot have redirect URIs or be public clients.",
            ));
        }
    }
    let uris: Option<Vec<IdentifierUri>> = match b.get("identifierUris") {
        Some(v) => {
            let u: Vec<String> = serde_json::from_value(v.clone()).map_err(|_| {
                GraphError::bad_request("identifierUris must be an array of strings.")
            })?;
            let owner = UriOwner {
                tenant_id: c.tenant.id,
                app_id: app.app_id,
                verified_domains: &c.tenant.domains,
            };
            Some(IdentifierUri::parse_all(&u, &owner).map_err(|(_, e)| identifier_uri_error(e))?)
        }
        None => None,
    };
    // Redirect URIs: agentid keeps one list for web, spa and public client platforms; each is
    // checked by the rules of the platform it is registered under. All checks happen before
    // anything is written.
    let mut redirects: Option<Vec<RedirectUri>> = None;
    for platform in [
        RedirectPlatform::Web,
        RedirectPlatform::Spa,
        RedirectPlatform::PublicClient,
    ] {
        if let Some(list) = b
            .get(platform.property())
            .and_then(|v| v.get("redirectUris"))
        {
            let uris: Vec<String> = serde_json::from_value(list.clone()).map_err(|_| {
                GraphError::bad_request("redirectUris must be an array of strings.")
            })?;
            let parsed = RedirectUri::parse_all(&uris, platform).map_err(|(_, e)| {
                GraphError::bad_request(format!(
                    "Invalid value specified for property '{}' of resource 'Application'. {e}.",
                    platform.property()
                ))
            })?;
            redirects.get_or_insert_with(Vec::new).extend(parsed);
        }
    }
    let (scopes, version) = match b.get("api") {
        Some(api) => {
            let scopes = api
                .get("oauth2PermissionScopes")
                .map(parse_scopes)
                .transpose()?;
            if let Some(new) = &scopes {
                check_enabled_scopes_kept(&app.scopes, new)
                    .map_err(|e| GraphError::bad_request(e.to_string()))?;
            }
            let version = match api.get("requestedAccessTokenVersion") {
                None => None,
                Some(Value::Null) => Some(None),
                Some(v) => match v.as_i64() {
                    Some(n @ (1 | 2)) => Some(Some(n)),
                    _ => {
                        return Err(GraphError::bad_request(
                            "requestedAccessTokenVersion must be null, 1 or 2.",
                        ));
                    }
                },
            };
            (scopes, version)
        }
        None => (None, None),
    };
    let patch = ApplicationPatch {
        display_name: b
            .get("displayName")
            .and_then(Value::as_str)
            .map(str::to_string),
        identifier_uris: uris,
        scopes,
        access_token_version: version,
        optional_claims: b
            .get("optionalClaims")
            .map(|v| if v.is_null() { None } else { Some(v.clone()) }),
        required_resource_access: b.get("requiredResourceAccess").cloned(),
        is_public_client: b.get("isFallbackPublicClient").and_then(Value::as_bool),
        redirect_uris: redirects,
        ..Default::default()
    };
    req.sts.store.update_application(&app, &patch).await?;
    Ok((StatusCode::NO_CONTENT, None))
}

/// Graph's answer to a refused application write.
pub(super) fn application_error(e: ApplicationError) -> GraphError {
    match e {
        ApplicationError::BlueprintLimit => GraphError::new(
            StatusCode::BAD_REQUEST,
            "AgentBlueprint_LimitExceeded",
            e.to_string(),
        ),
        ApplicationError::Directory(d) => d.into(),
        other => GraphError::conflict(other.to_string()),
    }
}

/// Graph's answer to an identifier URI the application may not claim (Entra's code and text).
pub(super) fn identifier_uri_error(e: IdentifierUriError) -> GraphError {
    match e {
        IdentifierUriError::NotOnVerifiedDomain(_) => GraphError::new(
            StatusCode::BAD_REQUEST,
            "HostNameNotOnVerifiedDomain",
            e.to_string(),
        ),
        other => GraphError::bad_request(format!("{other}.")),
    }
}

pub(super) async fn delete_application(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Out> {
    let app = find_app(req, c, key).await?;
    let owners = owners_of(&req.sts.store.application_extras(&app.id).await?);
    let allowed = if app.kind == AppKind::Blueprint {
        c.delete_blueprint(&owners)
    } else {
        c.write_apps(&owners)
    };
    if !allowed {
        return Err(GraphError::denied());
    }
    req.sts.store.delete_application(&app).await?;
    Ok((StatusCode::NO_CONTENT, None))
}
