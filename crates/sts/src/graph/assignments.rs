//! App role assignments: `appRoleAssignments` and `appRoleAssignedTo` (docs/directory.md §5.5).

use super::caller::Caller;
use super::odata::GraphError;
use super::principals::find_principal;
use super::reply::{GResult, Out, created, iso, method_not_allowed, ok};
use super::request::Req;
use super::users::find_user;
use agentid_directory::assignments::{AssignmentError, AssignmentRow, assignable_role};
use agentid_directory::grants::new_grant_id;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Side {
    Principal,
    Resource,
    User,
}

pub(super) fn manage_assignments(c: &Caller) -> bool {
    if c.delegated() {
        c.has(&["AppRoleAssignment.ReadWrite.All"], &[]) && c.admin()
    } else {
        c.has(&[], &["AppRoleAssignment.ReadWrite.All"])
    }
}

pub(super) async fn assignment_json(
    req: &Req<'_>,
    c: &Caller,
    a: &AssignmentRow,
) -> GResult<Value> {
    let resource = req
        .sts
        .store
        .principal_by_object_id(
            &c.tenant.id,
            &Uuid::parse_str(&a.resource_id).map_err(GraphError::internal)?,
        )
        .await?;
    let pid = Uuid::parse_str(&a.principal_id).map_err(GraphError::internal)?;
    let principal_name = match a.principal_type.as_str() {
        "User" => req
            .sts
            .store
            .user_by_id(&c.tenant.id, &pid)
            .await?
            .map(|u| u.display_name),
        _ => req
            .sts
            .store
            .principal_by_object_id(&c.tenant.id, &pid)
            .await?
            .map(|s| s.display_name),
    };
    Ok(
        json!({"id": a.id, "principalId": a.principal_id, "principalType": a.principal_type, "principalDisplayName": principal_name,
        "resourceId": a.resource_id, "resourceDisplayName": resource.map(|r| r.display_name), "appRoleId": a.app_role_id, "createdDateTime": iso(a.created_at)}),
    )
}

pub(super) async fn assignments(
    req: &Req<'_>,
    c: &Caller,
    m: Method,
    key: &str,
    side: Side,
) -> GResult<Out> {
    let anchor = match side {
        Side::User => find_user(req, c, key).await?.id,
        _ => find_principal(req, c, key).await?.sp.id,
    };
    match m {
        Method::GET => {
            if !(c.read_apps() || manage_assignments(c)) {
                return Err(GraphError::denied());
            }
            let mut items = Vec::new();
            for a in req
                .sts
                .store
                .assignments(&c.tenant.id, &anchor, side == Side::Resource)
                .await?
            {
                items.push(assignment_json(req, c, &a).await?);
            }
            ok(req.collection("appRoleAssignments", items)?)
        }
        Method::POST => {
            if !manage_assignments(c) {
                return Err(GraphError::denied());
            }
            let b = req.body_object(
                "appRoleAssignment",
                &["principalId", "resourceId", "appRoleId"],
                &[
                    "id",
                    "createdDateTime",
                    "principalType",
                    "principalDisplayName",
                    "resourceDisplayName",
                ],
            )?;
            let field = |k: &str| {
                b.get(k)
                    .and_then(Value::as_str)
                    .and_then(|v| Uuid::parse_str(v).ok())
                    .ok_or_else(|| GraphError::bad_request(format!("{k} must be a GUID.")))
            };
            let (principal, resource, role) = (
                field("principalId")?,
                field("resourceId")?,
                field("appRoleId")?,
            );
            let expected_anchor = if side == Side::Resource {
                resource
            } else {
                principal
            };
            if expected_anchor != anchor {
                return Err(GraphError::bad_request(
                    "The principalId (or resourceId) in the body must match the object in the URL.",
                ));
            }
            let user = req.sts.store.user_by_id(&c.tenant.id, &principal).await?;
            let principal_type = match (
                &user,
                req.sts
                    .store
                    .principal_by_object_id(&c.tenant.id, &principal)
                    .await?,
            ) {
                (Some(_), _) => "User",
                (None, Some(_)) => "ServicePrincipal",
                (None, None) => return Err(GraphError::not_found(&principal.to_string())),
            };
            let res_sp = req
                .sts
                .store
                .principal_by_object_id(&c.tenant.id, &resource)
                .await?
                .ok_or_else(|| GraphError::not_found(&resource.to_string()))?;
            let res = req
                .sts
                .store
                .resource(&c.tenant.id, &res_sp.app_id.to_string())
                .await?
                .ok_or_else(|| GraphError::not_found(&resource.to_string()))?;
            let member = if principal_type == "User" {
                "User"
            } else {
                "Application"
            };
            // The nil role is the default access role, which every resource has.
            if !role.is_nil() {
                assignable_role(&res, Some(member), |r| r.id == role).map_err(|_| {
                    GraphError::bad_request(AssignmentError::RoleNotFound.to_string())
                })?;
            }
            let a = AssignmentRow {
                id: new_grant_id(),
                principal_id: principal.to_string(),
                principal_type: principal_type.into(),
                resource_id: resource.to_string(),
                app_role_id: role.to_string(),
                created_at: chrono::Utc::now().timestamp(),
            };
            req.sts.store.create_assignment(&c.tenant.id, &a).await?;
            let mut v = assignment_json(req, c, &a).await?;
            v["@odata.context"] = json!(req.context("appRoleAssignments/$entity"));
            created(v)
        }
        _ => Err(method_not_allowed()),
    }
}

pub(super) async fn delete_assignment(c: &Caller, req: &Req<'_>, id: &str) -> GResult<Out> {
    if !manage_assignments(c) {
        return Err(GraphError::denied());
    }
    if !req.sts.store.delete_assignment(&c.tenant.id, id).await? {
        return Err(GraphError::not_found(id));
    }
    Ok((StatusCode::NO_CONTENT, None))
}
