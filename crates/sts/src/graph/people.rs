//! Owners and sponsors (docs/directory.md §5.2, §5.4): list, add with `$ref`, remove with `$ref`.

use super::applications::{find_app, owners_of};
use super::caller::Caller;
use super::odata::{GraphError, bind_target};
use super::principals::{find_principal, manage_principal, principal_json};
use super::reply::{GResult, Out, method_not_allowed, ok};
use super::request::Req;
use super::users::user_json;
use agentid_directory::applications::People;
use agentid_directory::model::{AppKind, SpKind, UserKind};
use agentid_directory::principals::PrincipalPatch;
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// Renders directory objects by id: users, or (owners) service principals.
async fn objects(req: &Req<'_>, c: &Caller, ids: &[String]) -> GResult<Vec<Value>> {
    let mut out = Vec::new();
    for id in ids {
        let Ok(uid) = Uuid::parse_str(id) else {
            continue;
        };
        if let Some(u) = req.sts.store.user_by_id(&c.tenant.id, &uid).await? {
            out.push(user_json(req, &u));
        } else if let Some(r) = req
            .sts
            .store
            .service_principal_record(&c.tenant.id, &uid)
            .await?
        {
            out.push(principal_json(req, &r, None));
        }
    }
    Ok(out)
}

/// The object id named by a `$ref` body, checked to be a user (or, for owners, a principal).
async fn referenced(req: &Req<'_>, c: &Caller, users_only: bool) -> GResult<String> {
    let v: Value = serde_json::from_slice(&req.body)
        .map_err(|e| GraphError::bad_request(format!("Invalid JSON body: {e}.")))?;
    let url = v.get("@odata.id").and_then(Value::as_str).ok_or_else(|| {
        GraphError::bad_request("The body must be {\"@odata.id\": \"…/users/{id}\"}.")
    })?;
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
    if is_user || is_sp {
        Ok(id.to_string())
    } else {
        Err(GraphError::not_found(&id.to_string()))
    }
}

/// `/applications/{id}/owners|sponsors[/$ref | /{objectId}/$ref]`.
pub(super) async fn app_people(
    req: &Req<'_>,
    c: &Caller,
    key: &str,
    which: People,
    rest: &[&str],
) -> GResult<Out> {
    let app = find_app(req, c, key).await?;
    let extras = req.sts.store.application_extras(&app.id).await?;
    let owners = owners_of(&extras);
    let mut list: Vec<String> = serde_json::from_str(if which == People::Owners {
        &extras.owners
    } else {
        &extras.sponsors
    })
    .unwrap_or_default();
    let may_write = if app.kind == AppKind::Blueprint {
        c.write_blueprint(&owners)
    } else {
        c.write_apps(&owners)
    };
    match (req.method.clone(), rest) {
        (Method::GET, []) => {
            if !(c.read_apps() || c.read_blueprints() || may_write) {
                return Err(GraphError::denied());
            }
            ok(req.collection("directoryObjects", objects(req, c, &list).await?)?)
        }
        (Method::POST, ["$ref"]) => {
            if !may_write {
                return Err(GraphError::denied());
            }
            let id = referenced(req, c, which == People::Sponsors).await?;
            if list.contains(&id) {
                return Err(GraphError::bad_request(
                    "One or more added object references already exist for the following modified properties.",
                ));
            }
            list.push(id);
            req.sts.store.set_app_people(&app, which, &list).await?;
            Ok((StatusCode::NO_CONTENT, None))
        }
        (Method::DELETE, [id, "$ref"]) => {
            if !may_write {
                return Err(GraphError::denied());
            }
            let before = list.len();
            list.retain(|x| !x.eq_ignore_ascii_case(id));
            if list.len() == before {
                return Err(GraphError::not_found(id));
            }
            req.sts.store.set_app_people(&app, which, &list).await?;
            Ok((StatusCode::NO_CONTENT, None))
        }
        _ => Err(method_not_allowed()),
    }
}

/// `/servicePrincipals/{agent}/sponsors[/$ref | /{userId}/$ref]`.
pub(super) async fn agent_sponsors(
    req: &Req<'_>,
    c: &Caller,
    key: &str,
    rest: &[&str],
) -> GResult<Out> {
    let r = find_principal(req, c, key).await?;
    if r.sp.kind != SpKind::AgentIdentity {
        return Err(GraphError::not_found(key));
    }
    let mut list = r.sponsors.clone();
    let may_write = manage_principal(req, c, &r.sp).await.is_ok();
    match (req.method.clone(), rest) {
        (Method::GET, []) => {
            if !(c.read_apps() || may_write) {
                return Err(GraphError::denied());
            }
            ok(
                json!({"@odata.context": req.context("directoryObjects"), "value": objects(req, c, &list).await?}),
            )
        }
        (Method::POST, ["$ref"]) if may_write => {
            let id = referenced(req, c, true).await?;
            if !list.contains(&id) {
                list.push(id);
                req.sts
                    .store
                    .update_principal(&r.sp.id, &sponsors_patch(&list))
                    .await?;
            }
            Ok((StatusCode::NO_CONTENT, None))
        }
        (Method::DELETE, [id, "$ref"]) if may_write => {
            list.retain(|x| !x.eq_ignore_ascii_case(id));
            if list.is_empty() {
                return Err(GraphError::bad_request(
                    "An agent identity needs at least one sponsor.",
                ));
            }
            req.sts
                .store
                .update_principal(&r.sp.id, &sponsors_patch(&list))
                .await?;
            Ok((StatusCode::NO_CONTENT, None))
        }
        (Method::POST | Method::DELETE, _) => Err(GraphError::denied()),
        _ => Err(method_not_allowed()),
    }
}

fn sponsors_patch(ids: &[String]) -> PrincipalPatch {
    PrincipalPatch {
        sponsors: Some(ids.to_vec()),
        ..Default::default()
    }
}
