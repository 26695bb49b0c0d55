//! Delegated permission grants, `oauth2PermissionGrants` (docs/directory.md §5.5).

use super::caller::Caller;
use super::odata::{GraphError, matches};
use super::reply::{GResult, Out, created, method_not_allowed, ok};
use super::request::Req;
use agentid_directory::grants::{GrantRow, new_grant_id, normalize_scope};
use agentid_directory::model::ServicePrincipal;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

pub(super) fn grant_json(g: &GrantRow) -> Value {
    let principal = if g.principal_key.is_empty() {
        Value::Null
    } else {
        json!(g.principal_key)
    };
    json!({"id": g.id, "clientId": g.client_id, "consentType": g.consent_type, "principalId": principal, "resourceId": g.resource_id, "scope": g.scope})
}

pub(super) async fn list_grants(req: &Req<'_>, c: &Caller, client: Option<&str>) -> GResult<Out> {
    if !c.read_grants() {
        return Err(GraphError::denied());
    }
    let filter = req.filter()?;
    let mut items = Vec::new();
    for g in req.sts.store.grants(&c.tenant.id).await? {
        if client.is_some_and(|cl| !cl.eq_ignore_ascii_case(&g.client_id)) {
            continue;
        }
        if let Some(f) = &filter
            && !matches(f, |p| match p {
                "clientId" => Some(g.client_id.clone()),
                "resourceId" => Some(g.resource_id.clone()),
                "consentType" => Some(g.consent_type.clone()),
                "principalId" => Some(g.principal_key.clone()),
                _ => None,
            })?
        {
            continue;
        }
        items.push(grant_json(&g));
    }
    ok(req.collection("oauth2PermissionGrants", items)?)
}

/// Checks a grant's scope string against the resource: enabled scopes (and OIDC scopes on Graph).
pub(super) async fn checked_scope(
    req: &Req<'_>,
    c: &Caller,
    resource: &ServicePrincipal,
    scope: &str,
) -> GResult<String> {
    let res = req
        .sts
        .store
        .resource(&c.tenant.id, &resource.app_id.to_string())
        .await?
        .ok_or_else(|| GraphError::not_found(&resource.id.to_string()))?;
    normalize_scope(&res, scope.split(' ').filter(|s| !s.is_empty()))
        .map_err(|e| GraphError::bad_request(e.to_string()))
}

pub(super) async fn create_grant(req: &Req<'_>, c: &Caller) -> GResult<Out> {
    if !c.manage_grants() {
        return Err(GraphError::denied());
    }
    let b = req.body_object(
        "oAuth2PermissionGrant",
        &[
            "clientId",
            "consentType",
            "principalId",
            "resourceId",
            "scope",
            "startTime",
            "expiryTime",
        ],
        &["id"],
    )?;
    let uuid_field = |k: &str| {
        b.get(k)
            .and_then(Value::as_str)
            .and_then(|v| Uuid::parse_str(v).ok())
    };
    let client = uuid_field("clientId").ok_or_else(|| {
        GraphError::bad_request("clientId must be the id of a service principal.")
    })?;
    let resource = uuid_field("resourceId").ok_or_else(|| {
        GraphError::bad_request("resourceId must be the id of a service principal.")
    })?;
    let client_sp = req
        .sts
        .store
        .principal_by_object_id(&c.tenant.id, &client)
        .await?
        .ok_or_else(|| GraphError::not_found(&client.to_string()))?;
    let resource_sp = req
        .sts
        .store
        .principal_by_object_id(&c.tenant.id, &resource)
        .await?
        .ok_or_else(|| GraphError::not_found(&resource.to_string()))?;
    let consent_type = b.get("consentType").and_then(Value::as_str).unwrap_or("");
    let principal_key = match (consent_type, b.get("principalId")) {
        ("AllPrincipals", None | Some(Value::Null)) => String::new(),
        ("Principal", Some(Value::String(p))) => {
            let id = Uuid::parse_str(p)
                .map_err(|_| GraphError::bad_request("principalId must be a user id."))?;
            req.sts
                .store
                .user_by_id(&c.tenant.id, &id)
                .await?
                .ok_or_else(|| GraphError::not_found(p))?;
            id.to_string()
        }
        ("Principal", _) => {
            return Err(GraphError::bad_request(
                "principalId is required when consentType is Principal.",
            ));
        }
        ("AllPrincipals", _) => {
            return Err(GraphError::bad_request(
                "principalId must be null when consentType is AllPrincipals.",
            ));
        }
        _ => {
            return Err(GraphError::bad_request(
                "consentType must be AllPrincipals or Principal.",
            ));
        }
    };
    let scope = checked_scope(
        req,
        c,
        &resource_sp,
        b.get("scope").and_then(Value::as_str).unwrap_or(""),
    )
    .await?;
    let g = GrantRow {
        id: new_grant_id(),
        client_id: client_sp.id.to_string(),
        consent_type: consent_type.to_string(),
        principal_key,
        resource_id: resource_sp.id.to_string(),
        scope,
    };
    req.sts.store.create_grant(&c.tenant.id, &g).await?;
    let mut v = grant_json(&g);
    v["@odata.context"] = json!(req.context("oauth2PermissionGrants/$entity"));
    created(v)
}

pub(super) async fn grant_item(req: &Req<'_>, c: &Caller, m: Method, id: &str) -> GResult<Out> {
    let g = req
        .sts
        .store
        .grant(&c.tenant.id, id)
        .await?
        .ok_or_else(|| GraphError::not_found(id))?;
    match m {
        Method::GET => {
            if !c.read_grants() {
                return Err(GraphError::denied());
            }
            ok(grant_json(&g))
        }
        Method::PATCH => {
            if !c.manage_grants() {
                return Err(GraphError::denied());
            }
            let b = req.body_object(
                "oAuth2PermissionGrant",
                &["scope"],
                &["id", "clientId", "consentType", "principalId", "resourceId"],
            )?;
            let resource_sp = req
                .sts
                .store
                .principal_by_object_id(
                    &c.tenant.id,
                    &Uuid::parse_str(&g.resource_id).map_err(GraphError::internal)?,
                )
                .await?
                .ok_or_else(|| GraphError::not_found(&g.resource_id))?;
            if let Some(s) = b.get("scope").and_then(Value::as_str) {
                let scope = checked_scope(req, c, &resource_sp, s).await?;
                req.sts.store.set_grant_scope(&g.id, &scope).await?;
            }
            Ok((StatusCode::NO_CONTENT, None))
        }
        Method::DELETE => {
            if !c.manage_grants() {
                return Err(GraphError::denied());
            }
            req.sts.store.delete_grant(&g.id).await?;
            Ok((StatusCode::NO_CONTENT, None))
        }
        _ => Err(method_not_allowed()),
    }
}
