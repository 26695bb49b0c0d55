//! A blueprint's inheritable permissions: which delegated scopes its agent
//! identities inherit (docs/directory.md §5.2).

use super::applications::{find_app, owners_of};
use super::caller::Caller;
use super::odata::GraphError;
use super::odata::cast;
use super::reply::{GResult, Out, created, method_not_allowed, ok};
use super::request::Req;
use agentid_directory::applications::ApplicationPatch;
use agentid_directory::model::{AppKind, InheritablePermission};
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

pub(super) fn inheritable_json(p: &InheritablePermission) -> Value {
    use agentid_directory::model::InheritableScopes as S;
    let scopes = match &p.inheritable_scopes {
        S::AllAllowed => {
            json!({"@odata.type": "#microsoft.graph.allAllowedScopes", "kind": "allAllowed"})
        }
        S::Enumerated { scopes } => {
            json!({"@odata.type": "#microsoft.graph.enumeratedScopes", "kind": "enumerated", "scopes": scopes})
        }
        S::NoScopes => json!({"@odata.type": "#microsoft.graph.noScopes", "kind": "none"}),
    };
    json!({"resourceAppId": p.resource_app_id, "inheritableScopes": scopes})
}

pub(super) fn parse_inheritable(v: &Value) -> GResult<agentid_directory::model::InheritableScopes> {
    use agentid_directory::model::InheritableScopes as S;
    let from_type = v
        .get("@odata.type")
        .and_then(Value::as_str)
        .map(|t| cast(t.trim_start_matches('#')));
    let kind = v
        .get("kind")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
        .or(from_type.map(|t| t.trim_end_matches("scopes").to_string()));
    match kind.as_deref() {
        Some("allallowed") => Ok(S::AllAllowed),
        Some("none" | "no") => Ok(S::NoScopes),
        Some("enumerated") => {
            let scopes: Vec<String> = v
                .get("scopes")
                .and_then(|s| serde_json::from_value(s.clone()).ok())
                .unwrap_or_default();
            let mut seen = std::collections::HashSet::new();
            if scopes.is_empty() || !scopes.iter().all(|s| seen.insert(s.to_lowercase())) {
                return Err(GraphError::bad_request(
                    "enumerated inheritableScopes need a non-empty list of distinct scopes.",
                ));
            }
            Ok(S::Enumerated { scopes })
        }
        _ => Err(GraphError::bad_request(
            "inheritableScopes must be allAllowedScopes, enumeratedScopes or noScopes.",
        )),
    }
}

pub(super) async fn inheritable(
    req: &Req<'_>,
    c: &Caller,
    m: Method,
    key: &str,
    resource: Option<&str>,
) -> GResult<Out> {
    let app = find_app(req, c, key).await?;
    if app.kind != AppKind::Blueprint {
        return Err(GraphError::not_found(key));
    }
    let owners = owners_of(&req.sts.store.application_extras(&app.id).await?);
    let mut perms = app.inheritable_permissions.clone();
    let pos = |perms: &[InheritablePermission], r: &str| {
        perms
            .iter()
            .position(|p| p.resource_app_id.eq_ignore_ascii_case(r))
    };
    if m == Method::GET {
        if !(c.read_blueprints() || c.write_blueprint(&owners)) {
            return Err(GraphError::denied());
        }
        return match resource {
            None => ok(req.collection(
                "inheritablePermissions",
                perms.iter().map(inheritable_json).collect(),
            )?),
            Some(r) => ok(inheritable_json(
                &perms[pos(&perms, r).ok_or_else(|| GraphError::not_found(r))?],
            )),
        };
    }
    if !c.write_blueprint(&owners) {
        return Err(GraphError::denied());
    }
    match (m, resource) {
        (Method::POST, None) => {
            let b = req.body_object(
                "inheritablePermission",
                &["resourceAppId", "inheritableScopes"],
                &[],
            )?;
            let r = b
                .get("resourceAppId")
                .and_then(Value::as_str)
                .filter(|r| Uuid::parse_str(r).is_ok())
                .ok_or_else(|| GraphError::bad_request("resourceAppId must be an appId."))?;
            if pos(&perms, r).is_some() {
                return Err(GraphError::conflict(
                    "An inheritable permission for this resource already exists.",
                ));
            }
            let p = InheritablePermission {
                resource_app_id: r.to_lowercase(),
                inheritable_scopes: parse_inheritable(
                    b.get("inheritableScopes").unwrap_or(&Value::Null),
                )?,
            };
            perms.push(p.clone());
            req.sts
                .store
                .update_application(&app, &inheritable_patch(perms))
                .await?;
            created(inheritable_json(&p))
        }
        (Method::PATCH, Some(r)) => {
            let i = pos(&perms, r).ok_or_else(|| GraphError::not_found(r))?;
            let b = req.body_object(
                "inheritablePermission",
                &["inheritableScopes"],
                &["resourceAppId"],
            )?;
            perms[i].inheritable_scopes =
                parse_inheritable(b.get("inheritableScopes").unwrap_or(&Value::Null))?;
            req.sts
                .store
                .update_application(&app, &inheritable_patch(perms))
                .await?;
            Ok((StatusCode::NO_CONTENT, None))
        }
        (Method::DELETE, Some(r)) => {
            let i = pos(&perms, r).ok_or_else(|| GraphError::not_found(r))?;
            perms.remove(i);
            req.sts
                .store
                .update_application(&app, &inheritable_patch(perms))
                .await?;
            Ok((StatusCode::NO_CONTENT, None))
        }
        _ => Err(method_not_allowed()),
    }
}

fn inheritable_patch(perms: Vec<InheritablePermission>) -> ApplicationPatch {
    ApplicationPatch {
        inheritable_permissions: Some(perms),
        ..Default::default()
    }
}
