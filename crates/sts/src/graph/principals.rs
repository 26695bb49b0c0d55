//! Service principals, blueprint principals and agent identities (docs/directory.md §5.4).

use super::applications::{binds, owners_of};
use super::caller::Caller;
use super::odata::{GraphError, matches};
use super::reply::{GResult, Out, created, iso, ok};
use super::request::Req;
use agentid_directory::model::{AppKind, Application, ServicePrincipal, SpKind};
use agentid_directory::principals::{PrincipalError, PrincipalPatch, SpRecord};
use axum::http::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

pub(super) fn principal_json(req: &Req<'_>, r: &SpRecord, app: Option<&Application>) -> Value {
    let sp = &r.sp;
    let (t, names) = match sp.kind {
        SpKind::AgentIdentity => (
            "#microsoft.graph.agentIdentity",
            json!([sp.app_id.to_string()]),
        ),
        SpKind::BlueprintPrincipal => (
            "#microsoft.graph.agentIdentityBlueprintPrincipal",
            json!([sp.app_id.to_string()]),
        ),
        _ => ("#microsoft.graph.servicePrincipal", {
            let mut n = vec![sp.app_id.to_string()];
            if let Some(a) = app {
                n.extend(a.identifier_uris.iter().cloned());
            } else if let Some(b) = agentid_directory::builtin::by_app_id(&sp.app_id.to_string()) {
                n.extend(b.identifier_uris.iter().map(|s| s.to_string()));
            }
            json!(n)
        }),
    };
    let owner_org = if sp.kind == SpKind::BuiltIn {
        agentid_claims::wellknown::MICROSOFT_TENANT_ID.to_string()
    } else {
        sp.tenant_id.to_string()
    };
    let (scopes, roles) = match (
        app,
        agentid_directory::builtin::by_app_id(&sp.app_id.to_string()),
    ) {
        (Some(a), _) => (json!(a.scopes), json!(a.app_roles)),
        (None, Some(b)) => (json!(b.scopes()), json!(b.roles())),
        _ => (json!([]), json!([])),
    };
    let mut v = json!({"@odata.type": t, "id": sp.id.to_string(), "appId": sp.app_id.to_string(), "displayName": sp.display_name,
        "accountEnabled": sp.account_enabled, "servicePrincipalType": "Application", "servicePrincipalNames": names,
        "appOwnerOrganizationId": owner_org, "tags": r.tags, "createdDateTime": iso(r.created_at)});
    if sp.kind == SpKind::AgentIdentity {
        let bp = sp.blueprint_app_id.map(|b| b.to_string());
        v["agentIdentityBlueprintId"] = json!(bp);
        v["createdByAppId"] = json!(bp);
    } else {
        v["oauth2PermissionScopes"] = scopes;
        v["appRoles"] = roles;
    }
    let _ = req;
    v
}

pub(super) async fn find_principal(req: &Req<'_>, c: &Caller, key: &str) -> GResult<SpRecord> {
    let lk = key.to_ascii_lowercase();
    let id = if let Some(inner) = lk
        .strip_prefix("(appid='")
        .and_then(|s| s.strip_suffix("')"))
    {
        let app_id = Uuid::parse_str(inner).map_err(|_| GraphError::not_found(key))?;
        req.sts
            .store
            .service_principal_by_app_id(&c.tenant.id, &app_id)
            .await?
            .map(|s| s.id)
    } else {
        Uuid::parse_str(key).ok()
    };
    match id {
        Some(id) => req
            .sts
            .store
            .service_principal_record(&c.tenant.id, &id)
            .await?
            .ok_or_else(|| GraphError::not_found(key)),
        None => Err(GraphError::not_found(key)),
    }
}

pub(super) async fn list_principals(
    req: &Req<'_>,
    c: &Caller,
    kind: Option<SpKind>,
) -> GResult<Out> {
    // A blueprint's own token (CreateAsManager) may list its agents.
    let own_agents =
        kind == Some(SpKind::AgentIdentity) && c.has(&[], &["AgentIdentity.CreateAsManager"]);
    if !(c.read_apps()
        || own_agents
        || (kind == Some(SpKind::BlueprintPrincipal) && c.read_blueprints()))
    {
        return Err(GraphError::denied());
    }
    let filter = req.filter()?;
    let mut items = Vec::new();
    for r in req.sts.store.service_principals(&c.tenant.id, kind).await? {
        if own_agents && !c.read_apps() && r.sp.blueprint_app_id != Some(c.client_app_id) {
            continue;
        }
        if let Some(f) = &filter
            && !matches(f, |p| match p {
                "id" => Some(r.sp.id.to_string()),
                "appId" => Some(r.sp.app_id.to_string()),
                "displayName" => Some(r.sp.display_name.clone()),
                "agentIdentityBlueprintId" => Some(
                    r.sp.blueprint_app_id
                        .map(|b| b.to_string())
                        .unwrap_or_default(),
                ),
                _ => None,
            })?
        {
            continue;
        }
        let app = req
            .sts
            .store
            .application_by_app_id(&c.tenant.id, &r.sp.app_id)
            .await?;
        items.push(principal_json(req, &r, app.as_ref()));
    }
    let what = match kind {
        Some(SpKind::AgentIdentity) => "servicePrincipals/microsoft.graph.agentIdentity",
        Some(SpKind::BlueprintPrincipal) => {
            "servicePrincipals/microsoft.graph.agentIdentityBlueprintPrincipal"
        }
        _ => "servicePrincipals",
    };
    ok(req.collection(what, items)?)
}

pub(super) async fn get_principal(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Out> {
    let r = find_principal(req, c, key).await?;
    let own_agent = r.sp.blueprint_app_id == Some(c.client_app_id);
    if !(c.read_apps() || own_agent) {
        return Err(GraphError::denied());
    }
    let app = req
        .sts
        .store
        .application_by_app_id(&c.tenant.id, &r.sp.app_id)
        .await?;
    let mut v = principal_json(req, &r, app.as_ref());
    v["@odata.context"] = json!(req.context("servicePrincipals/$entity"));
    ok(v)
}

pub(super) async fn create_principal(
    req: &Req<'_>,
    c: &Caller,
    blueprint_cast: bool,
) -> GResult<Out> {
    let b = req.body_object(
        "servicePrincipal",
        &["appId", "accountEnabled", "tags"],
        &["id"],
    )?;
    let app_id = b
        .get("appId")
        .and_then(Value::as_str)
        .and_then(|a| Uuid::parse_str(a).ok())
        .ok_or_else(|| GraphError::bad_request("appId is required."))?;
    let app = req
        .sts
        .store
        .application_by_app_id(&c.tenant.id, &app_id)
        .await?
        .ok_or_else(|| GraphError::not_found(&app_id.to_string()))?;
    if blueprint_cast && app.kind != AppKind::Blueprint {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "AgentBlueprintPrincipal_requireAgentBlueprint",
            "The application is not an agent identity blueprint.",
        ));
    }
    let owners = owners_of(&req.sts.store.application_extras(&app.id).await?);
    let allowed = if app.kind == AppKind::Blueprint {
        c.create_blueprint_principal(&owners)
    } else {
        c.write_apps(&owners)
    };
    if !allowed {
        return Err(GraphError::denied());
    }
    let sp = req.sts.store.create_service_principal(&app).await?;
    let r = req
        .sts
        .store
        .service_principal_record(&c.tenant.id, &sp.id)
        .await?
        .ok_or_else(|| GraphError::not_found("servicePrincipal"))?;
    let mut v = principal_json(req, &r, Some(&app));
    v["@odata.context"] = json!(req.context("servicePrincipals/$entity"));
    created(v)
}

pub(super) async fn create_agent(req: &Req<'_>, c: &Caller) -> GResult<Out> {
    if c.delegated() {
        return Err(GraphError::wrong_identity_type());
    }
    if c.client_kind == SpKind::AgentIdentity {
        return Err(GraphError::new(
            StatusCode::FORBIDDEN,
            "Error_AgentIdentitiesCreatingAgentIdentitiesNotAllowed",
            "Agent identities cannot create agent identities.",
        ));
    }
    let b = req.body_object(
        "agentIdentity",
        &[
            "displayName",
            "agentIdentityBlueprintId",
            "sponsors@odata.bind",
            "tags",
            "accountEnabled",
        ],
        &["id", "appId", "createdDateTime"],
    )?;
    let display = b
        .get("displayName")
        .and_then(Value::as_str)
        .filter(|d| !d.trim().is_empty())
        .ok_or_else(|| GraphError::bad_request("displayName is required."))?;
    let bp = b
        .get("agentIdentityBlueprintId")
        .and_then(Value::as_str)
        .and_then(|a| Uuid::parse_str(a).ok())
        .ok_or_else(|| GraphError::bad_request("agentIdentityBlueprintId is required."))?;
    if !(c.has(&[], &["AgentIdentity.CreateAsManager"]) && c.client_app_id == bp) {
        return Err(GraphError::denied());
    }
    let app = req
        .sts
        .store
        .application_by_app_id(&c.tenant.id, &bp)
        .await?
        .ok_or_else(|| GraphError::not_found(&bp.to_string()))?;
    if app.kind != AppKind::Blueprint {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "AgentIdentity_IncompatibleParentType",
            "agentIdentityBlueprintId is not an agent identity blueprint.",
        ));
    }
    if req
        .sts
        .store
        .service_principal_by_app_id(&c.tenant.id, &bp)
        .await?
        .is_none()
    {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "AgentIdentity_AgentBlueprintPrincipalDoesNotExist",
            "Create the blueprint's principal before its agent identities.",
        ));
    }
    let sponsors = binds(req, c, &b, "sponsors@odata.bind", true).await?;
    if sponsors.is_empty() {
        return Err(GraphError::bad_request(
            "An agent identity needs at least one sponsor (sponsors@odata.bind).",
        ));
    }
    let sp = req
        .sts
        .store
        .create_agent_identity(&c.tenant.id, display, &bp, &sponsors)
        .await
        .map_err(|e| match e {
            PrincipalError::AgentLimit => GraphError::new(
                StatusCode::BAD_REQUEST,
                "AgentIdentity_LimitExceeded",
                e.to_string(),
            ),
            PrincipalError::Directory(d) => d.into(),
            other => GraphError::conflict(other.to_string()),
        })?;
    let r = req
        .sts
        .store
        .service_principal_record(&c.tenant.id, &sp.id)
        .await?
        .ok_or_else(|| GraphError::not_found("agentIdentity"))?;
    let mut v = principal_json(req, &r, None);
    v["@odata.context"] =
        json!(req.context("servicePrincipals/microsoft.graph.agentIdentity/$entity"));
    created(v)
}

/// May the caller manage this principal (PATCH/DELETE)?
pub(super) async fn manage_principal(
    req: &Req<'_>,
    c: &Caller,
    sp: &ServicePrincipal,
) -> GResult<()> {
    if sp.kind == SpKind::BuiltIn {
        return Err(GraphError::denied());
    }
    let owning_app = match sp.kind {
        SpKind::AgentIdentity => sp.blueprint_app_id,
        _ => Some(sp.app_id),
    };
    let owners = match owning_app {
        Some(a) => match req
            .sts
            .store
            .application_by_app_id(&c.tenant.id, &a)
            .await?
        {
            Some(app) => owners_of(&req.sts.store.application_extras(&app.id).await?),
            None => vec![],
        },
        None => vec![],
    };
    let parent_blueprint = sp.kind == SpKind::AgentIdentity
        && sp.blueprint_app_id == Some(c.client_app_id)
        && c.has(&[], &["AgentIdentity.CreateAsManager"]);
    if c.write_apps(&owners) || parent_blueprint {
        Ok(())
    } else {
        Err(GraphError::denied())
    }
}

pub(super) async fn patch_principal(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Out> {
    let r = find_principal(req, c, key).await?;
    manage_principal(req, c, &r.sp).await?;
    let b = req.body_object(
        "servicePrincipal",
        &["accountEnabled", "displayName", "tags"],
        &["id", "appId"],
    )?;
    if let Some(e) = b.get("accountEnabled") {
        let e = e
            .as_bool()
            .ok_or_else(|| GraphError::bad_request("accountEnabled must be a boolean."))?;
        let patch = PrincipalPatch {
            account_enabled: Some(e),
            ..Default::default()
        };
        req.sts.store.update_principal(&r.sp.id, &patch).await?;
    }
    Ok((StatusCode::NO_CONTENT, None))
}

pub(super) async fn delete_principal(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Out> {
    let r = find_principal(req, c, key).await?;
    manage_principal(req, c, &r.sp).await?;
    req.sts.store.delete_service_principal(&r.sp).await?;
    Ok((StatusCode::NO_CONTENT, None))
}
