//! The console's actions (docs/console.md §5): a confirmation page (GET) and the form it posts
//! (POST, CSRF-checked). Each action is one or more Graph requests run in process by
//! [`crate::graph::console::call`], so it takes the directory write path `agentid admin` and
//! Graph clients take, and is audited the same way with the administrator as actor.

use super::gate::{self, Admin};
use super::page::{self, Confirm, Reply};
use crate::form::Form;
use crate::graph::console::{Acting, call};
use crate::state::Sts;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use uuid::Uuid;

/// The longest display name the console accepts.
const MAX_NAME: usize = 256;

/// A confirmation page; `name_field` adds the display-name input (with the message of a
/// rejected value) of the create actions.
fn confirm(
    a: &Admin,
    title: &str,
    lines: Vec<String>,
    action: String,
    button: &str,
    back: String,
    name_field: Option<Option<String>>,
) -> Response {
    let field = name_field.as_ref().map(|_| ("Display name", "displayName"));
    let error = name_field.flatten();
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    page::html(
        status,
        &Confirm {
            title,
            chrome: Some(a.chrome()),
            lines,
            action,
            button,
            back,
            field,
            error,
        },
    )
}

/// The form of a post, and the administrator if the session and its CSRF token check out.
async fn posted(sts: &Sts, headers: &HeaderMap, body: &Bytes) -> Result<(Admin, Form), Response> {
    let form = Form::parse(body).map_err(|_| page::bad_form())?;
    let a = gate::admin_post(sts, headers, &form).await?;
    Ok((a, form))
}

/// The page after a change through Graph: back to `done` when it was made, the refusal otherwise.
fn outcome<T>(
    a: &Admin,
    result: Result<T, crate::graph::odata::GraphError>,
    what: &str,
    done: &str,
) -> Response {
    match result {
        Ok(_) => page::redirect_to(done),
        Err(e) => refused(a, what, e),
    }
}

/// A Graph refusal, shown on the page (escaped by the template).
fn refused(a: &Admin, what: &str, e: crate::graph::odata::GraphError) -> Response {
    let msg = format!("{what}: {} ({})", e.message, e.code);
    page::html(
        e.status,
        &page::Notice {
            title: "The directory refused the change",
            chrome: Some(a.chrome()),
            paragraphs: &[&msg],
            signout_csrf: None,
        },
    )
}

fn display_name(form: &Form) -> Option<String> {
    form.get("displayName")
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.chars().count() <= MAX_NAME)
        .map(str::to_string)
}

fn user_bind(sts: &Sts, id: &Uuid) -> String {
    let _ = sts;
    format!("https://graph.microsoft.com/v1.0/users/{id}")
}

// ---- create a blueprint ----

pub async fn new_blueprint(State(sts): State<Sts>, headers: HeaderMap) -> Reply {
    let a = gate::admin(&sts, &headers).await?;
    let lines = vec![format!(
        "Creates an agent identity blueprint with its principal and an access_as_user scope; you ({}) become its owner and sponsor.",
        a.user.upn
    )];
    Ok(confirm(
        &a,
        "Create a blueprint",
        lines,
        "/console/blueprints/new".into(),
        "Create blueprint",
        "/console/blueprints".into(),
        Some(None),
    ))
}

pub async fn create_blueprint(State(sts): State<Sts>, headers: HeaderMap, body: Bytes) -> Reply {
    let (a, form) = posted(&sts, &headers, &body).await?;
    let Some(name) = display_name(&form) else {
        return Ok(confirm(
            &a,
            "Create a blueprint",
            vec![],
            "/console/blueprints/new".into(),
            "Create blueprint",
            "/console/blueprints".into(),
            Some(Some(format!(
                "Enter a display name of 1 to {MAX_NAME} characters."
            ))),
        ));
    };
    let me = user_bind(&sts, &a.user.id);
    // The same three requests as `agentid admin blueprint create` (graphclient's create_blueprint).
    let app = match call(&sts, &a.tenant, &a.user, Acting::Admin, Method::POST, "applications",
        Some(json!({"@odata.type": "Microsoft.Graph.AgentIdentityBlueprint", "displayName": name, "sponsors@odata.bind": [me], "owners@odata.bind": [me]}))).await {
        Ok((_, Some(v))) => v,
        Ok(_) => return Err(page::internal("no blueprint in the response")),
        Err(e) => return Ok(refused(&a, "Creating the blueprint", e)),
    };
    let s = |k: &str| {
        app.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (obj, app_id) = (s("id"), s("appId"));
    if let Err(e) = call(
        &sts,
        &a.tenant,
        &a.user,
        Acting::Admin,
        Method::POST,
        "serviceprincipals/graph.agentIdentityBlueprintPrincipal",
        Some(json!({"appId": app_id})),
    )
    .await
    {
        return Ok(refused(&a, "Creating the blueprint's principal", e));
    }
    let scope = json!({"identifierUris": [format!("api://{app_id}")], "api": {"oauth2PermissionScopes": [{"id": Uuid::new_v4(), "value": "access_as_user", "type": "User", "isEnabled": true,
        "adminConsentDisplayName": format!("Access {name}"), "adminConsentDescription": format!("Lets agents of {name} act for the signed-in user."),
        "userConsentDisplayName": format!("Access {name}"), "userConsentDescription": format!("Lets agents of {name} act for you.")}]}});
    if let Err(e) = call(
        &sts,
        &a.tenant,
        &a.user,
        Acting::Admin,
        Method::PATCH,
        &format!("applications/{obj}"),
        Some(scope),
    )
    .await
    {
        return Ok(refused(&a, "Publishing the blueprint's scope", e));
    }
    Ok(page::redirect_to(&format!("/console/blueprints/{app_id}")))
}

// ---- create an agent identity ----

async fn blueprint_of(
    sts: &Sts,
    a: &Admin,
    app_id: &str,
) -> Result<(agentid_directory::model::Application, Uuid), Response> {
    let not_found = || page::not_found("No blueprint has that app ID.");
    let app_id = agentid_claims::guid::parse(app_id).ok_or_else(not_found)?;
    let app = sts
        .store
        .application_by_app_id(&a.tenant.id, &app_id)
        .await
        .map_err(page::internal)?
        .filter(|app| app.kind == agentid_directory::model::AppKind::Blueprint)
        .ok_or_else(not_found)?;
    let sp = sts
        .store
        .service_principal_by_app_id(&a.tenant.id, &app_id)
        .await
        .map_err(page::internal)?
        .ok_or_else(|| page::not_found("The blueprint has no principal yet."))?;
    Ok((app, sp.id))
}

pub async fn new_agent(
    State(sts): State<Sts>,
    headers: HeaderMap,
    Path(app_id): Path<String>,
) -> Reply {
    let a = gate::admin(&sts, &headers).await?;
    let (app, _) = blueprint_of(&sts, &a, &app_id).await?;
    let lines = vec![format!(
        "Creates an agent identity of the blueprint {}, sponsored by you ({}).",
        app.display_name, a.user.upn
    )];
    Ok(confirm(
        &a,
        "Create an agent identity",
        lines,
        format!("/console/blueprints/{}/agents/new", app.app_id),
        "Create agent identity",
        format!("/console/blueprints/{}", app.app_id),
        Some(None),
    ))
}

pub async fn create_agent(
    State(sts): State<Sts>,
    headers: HeaderMap,
    Path(app_id): Path<String>,
    body: Bytes,
) -> Reply {
    let (a, form) = posted(&sts, &headers, &body).await?;
    let (app, bp_sp) = blueprint_of(&sts, &a, &app_id).await?;
    let back = format!("/console/blueprints/{}", app.app_id);
    let Some(name) = display_name(&form) else {
        return Ok(confirm(
            &a,
            "Create an agent identity",
            vec![],
            format!("{back}/agents/new"),
            "Create agent identity",
            back,
            Some(Some(format!(
                "Enter a display name of 1 to {MAX_NAME} characters."
            ))),
        ));
    };
    let body = json!({"displayName": name, "agentIdentityBlueprintId": app.app_id.to_string(), "sponsors@odata.bind": [user_bind(&sts, &a.user.id)]});
    let result = call(
        &sts,
        &a.tenant,
        &a.user,
        Acting::Blueprint(app.app_id, bp_sp),
        Method::POST,
        "serviceprincipals/Microsoft.Graph.AgentIdentity",
        Some(body),
    )
    .await;
    Ok(outcome(&a, result, "Creating the agent identity", &back))
}

// ---- disable or enable an agent identity ----

async fn agent_of(
    sts: &Sts,
    a: &Admin,
    id: &str,
) -> Result<agentid_directory::model::ServicePrincipal, Response> {
    let not_found = || page::not_found("No agent identity has that ID.");
    let id = agentid_claims::guid::parse(id).ok_or_else(not_found)?;
    sts.store
        .principal_by_object_id(&a.tenant.id, &id)
        .await
        .map_err(page::internal)?
        .filter(|sp| sp.kind == agentid_directory::model::SpKind::AgentIdentity)
        .ok_or_else(not_found)
}

fn enable_flag(op: &str) -> Option<bool> {
    match op {
        "enable" => Some(true),
        "disable" => Some(false),
        _ => None,
    }
}

pub async fn confirm_agent(
    State(sts): State<Sts>,
    headers: HeaderMap,
    Path((id, op)): Path<(String, String)>,
) -> Reply {
    let a = gate::admin(&sts, &headers).await?;
    let Some(enable) = enable_flag(&op) else {
        return Err(page::not_found("No such action."));
    };
    let sp = agent_of(&sts, &a, &id).await?;
    let (title, button, line) = if enable {
        (
            "Enable an agent identity",
            "Enable agent",
            format!("Enables {}: it can get tokens again.", sp.display_name),
        )
    } else {
        (
            "Disable an agent identity",
            "Disable agent",
            format!(
                "Disables {}: the STS issues it no more tokens, and gateways that follow the revocation feed refuse the tokens it holds.",
                sp.display_name
            ),
        )
    };
    let back = sp
        .blueprint_app_id
        .map(|b| format!("/console/blueprints/{b}"))
        .unwrap_or_else(|| "/console/blueprints".into());
    Ok(confirm(
        &a,
        title,
        vec![line],
        format!("/console/agents/{}/{op}", sp.id),
        button,
        back,
        None,
    ))
}

pub async fn agent_action(
    State(sts): State<Sts>,
    headers: HeaderMap,
    Path((id, op)): Path<(String, String)>,
    body: Bytes,
) -> Reply {
    let (a, _) = posted(&sts, &headers, &body).await?;
    let Some(enable) = enable_flag(&op) else {
        return Err(page::not_found("No such action."));
    };
    let sp = agent_of(&sts, &a, &id).await?;
    let result = call(
        &sts,
        &a.tenant,
        &a.user,
        Acting::Admin,
        Method::PATCH,
        &format!("servicePrincipals/{}", sp.id),
        Some(json!({"accountEnabled": enable})),
    )
    .await;
    Ok(outcome(
        &a,
        result,
        "Changing the agent identity",
        &sp.blueprint_app_id
            .map(|b| format!("/console/blueprints/{b}"))
            .unwrap_or_else(|| "/console/blueprints".into()),
    ))
}

// ---- revoke a consent ----

async fn grant_of(
    sts: &Sts,
    a: &Admin,
    id: &str,
) -> Result<agentid_directory::grants::GrantRow, Response> {
    if id.is_empty() || id.len() > 128 {
        return Err(page::not_found("No consent has that ID."));
    }
    sts.store
        .grant(&a.tenant.id, id)
        .await
        .map_err(page::internal)?
        .ok_or_else(|| page::not_found("No consent has that ID."))
}

pub async fn confirm_revoke_consent(
    State(sts): State<Sts>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    let a = gate::admin(&sts, &headers).await?;
    let g = grant_of(&sts, &a, &id).await?;
    let names = super::views::principal_names(&sts, &a.tenant.id)
        .await
        .map_err(page::internal)?;
    let n = |k: &str| names.get(k).cloned().unwrap_or_else(|| k.to_string());
    let line = format!(
        "Revokes the consent that lets {} use {} with the scopes '{}'.",
        n(&g.client_id),
        n(&g.resource_id),
        g.scope
    );
    Ok(confirm(
        &a,
        "Revoke a consent",
        vec![line],
        format!("/console/consents/{}/revoke", g.id),
        "Revoke consent",
        "/console/consents".into(),
        None,
    ))
}

pub async fn revoke_consent(
    State(sts): State<Sts>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Reply {
    let (a, _) = posted(&sts, &headers, &body).await?;
    let g = grant_of(&sts, &a, &id).await?;
    let result = call(
        &sts,
        &a.tenant,
        &a.user,
        Acting::Admin,
        Method::DELETE,
        &format!("oauth2PermissionGrants/{}", g.id),
        None,
    )
    .await;
    Ok(outcome(
        &a,
        result,
        "Revoking the consent",
        "/console/consents",
    ))
}

// ---- revoke a user's sessions ----

async fn user_of(
    sts: &Sts,
    a: &Admin,
    id: &str,
) -> Result<agentid_directory::model::User, Response> {
    let not_found = || page::not_found("No user has that ID.");
    let id = agentid_claims::guid::parse(id).ok_or_else(not_found)?;
    sts.store
        .user_by_id(&a.tenant.id, &id)
        .await
        .map_err(page::internal)?
        .ok_or_else(not_found)
}

pub async fn confirm_revoke_sessions(
    State(sts): State<Sts>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    let a = gate::admin(&sts, &headers).await?;
    let u = user_of(&sts, &a, &id).await?;
    let line = format!(
        "Revokes every session and refresh token of {} ({}): they must sign in again, and tokens issued before now are refused where the revocation feed is followed.",
        u.display_name, u.upn
    );
    Ok(confirm(
        &a,
        "Revoke a user's sessions",
        vec![line],
        format!("/console/users/{}/revoke-sessions", u.id),
        "Revoke sessions",
        "/console/users".into(),
        None,
    ))
}

pub async fn revoke_sessions(
    State(sts): State<Sts>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Reply {
    let (a, _) = posted(&sts, &headers, &body).await?;
    let u = user_of(&sts, &a, &id).await?;
    let result = call(
        &sts,
        &a.tenant,
        &a.user,
        Acting::Admin,
        Method::POST,
        &format!("users/{}/revokeSignInSessions", u.id),
        None,
    )
    .await;
    Ok(outcome(
        &a,
        result,
        "Revoking the sessions",
        "/console/users",
    ))
}

// ---- remove a secret ----

pub async fn confirm_remove_secret(
    State(sts): State<Sts>,
    headers: HeaderMap,
    Path((app_id, key_id)): Path<(String, String)>,
) -> Reply {
    let a = gate::admin(&sts, &headers).await?;
    let (app, _) = blueprint_of(&sts, &a, &app_id).await?;
    let Some(key) = agentid_claims::guid::parse(&key_id) else {
        return Err(page::not_found("No secret has that key ID."));
    };
    let line = format!(
        "Removes the secret {key} of {}: workloads using it can no longer get tokens.",
        app.display_name
    );
    Ok(confirm(
        &a,
        "Remove a secret",
        vec![line],
        format!("/console/blueprints/{}/secrets/{key}/remove", app.app_id),
        "Remove secret",
        format!("/console/blueprints/{}", app.app_id),
        None,
    ))
}

pub async fn remove_secret(
    State(sts): State<Sts>,
    headers: HeaderMap,
    Path((app_id, key_id)): Path<(String, String)>,
    body: Bytes,
) -> Reply {
    let (a, _) = posted(&sts, &headers, &body).await?;
    let (app, _) = blueprint_of(&sts, &a, &app_id).await?;
    let Some(key) = agentid_claims::guid::parse(&key_id) else {
        return Err(page::not_found("No secret has that key ID."));
    };
    let result = call(
        &sts,
        &a.tenant,
        &a.user,
        Acting::Admin,
        Method::POST,
        &format!("applications/{}/removePassword", app.id),
        Some(json!({"keyId": key.to_string()})),
    )
    .await;
    Ok(outcome(
        &a,
        result,
        "Removing the secret",
        &format!("/console/blueprints/{}", app.app_id),
    ))
}
