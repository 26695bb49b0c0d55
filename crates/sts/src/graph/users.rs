//! Users and agent users (docs/directory.md §5.1): `/me`, list, read, create, update, delete,
//! revoke sessions. Validation and writes are the directory's (`agentid_directory::users`).

use super::caller::Caller;
use super::odata::{GraphError, matches};
use super::reply::{GResult, Out, created, ok};
use super::request::Req;
use agentid_directory::model::{SpKind, User, UserKind};
use agentid_directory::users::{self, NewUser, UserPatch};
use axum::http::StatusCode;
use serde_json::{Map, Value, json};
use uuid::Uuid;

const PROFILE: [&str; 10] = [
    "displayName",
    "givenName",
    "surname",
    "mail",
    "accountEnabled",
    "passwordProfile",
    "mailNickname",
    "userPrincipalName",
    "jobTitle",
    "usageLocation",
];

fn write_users(c: &Caller) -> bool {
    if c.delegated() {
        c.has(&["User.ReadWrite.All"], &[]) && c.admin()
    } else {
        c.has(&[], &["User.ReadWrite.All"])
    }
}

fn opt_string(b: &Map<String, Value>, k: &str) -> GResult<Option<Option<String>>> {
    match b.get(k) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(_) => Err(GraphError::bad_request(format!("{k} must be a string."))),
    }
}

async fn password_hash(req: &Req<'_>, b: &Map<String, Value>) -> GResult<Option<String>> {
    let Some(pp) = b.get("passwordProfile") else {
        return Ok(None);
    };
    let pw = pp
        .get("password")
        .and_then(Value::as_str)
        .ok_or_else(|| GraphError::bad_request("passwordProfile.password is required."))?;
    users::check_new_password(pw).map_err(|e| GraphError::bad_request(e.to_string()))?;
    // Argon2 holds ~19 MiB: hashing goes through the same bounded gate as verification.
    let permit = req.sts.passwords.acquire().await.map_err(|_| {
        GraphError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests are in progress. Retry in a moment.",
        )
    })?;
    permit
        .hash(pw.to_string())
        .await
        .map(Some)
        .ok_or_else(|| GraphError::internal("password hashing failed"))
}

fn patch_of(b: &Map<String, Value>) -> GResult<UserPatch> {
    Ok(UserPatch {
        display_name: b
            .get("displayName")
            .and_then(Value::as_str)
            .map(str::to_string),
        given_name: opt_string(b, "givenName")?,
        surname: opt_string(b, "surname")?,
        mail: opt_string(b, "mail")?,
        account_enabled: match b.get("accountEnabled") {
            None => None,
            Some(v) => Some(
                v.as_bool()
                    .ok_or_else(|| GraphError::bad_request("accountEnabled must be a boolean."))?,
            ),
        },
        ..Default::default()
    })
}

pub(super) async fn create_person(req: &Req<'_>, c: &Caller) -> GResult<Out> {
    if !write_users(c) {
        return Err(GraphError::denied());
    }
    let b = req.body_object("user", &PROFILE, &["id", "createdDateTime"])?;
    let upn = b
        .get("userPrincipalName")
        .and_then(Value::as_str)
        .ok_or_else(|| GraphError::bad_request("userPrincipalName is required."))?;
    let display = b
        .get("displayName")
        .and_then(Value::as_str)
        .ok_or_else(|| GraphError::bad_request("displayName is required."))?;
    users::check_upn_domain(upn, &c.tenant.domains)
        .map_err(|e| GraphError::bad_request(e.to_string()))?;
    let hash = password_hash(req, &b)
        .await?
        .ok_or_else(|| GraphError::bad_request("passwordProfile is required."))?;
    let enabled = b
        .get("accountEnabled")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let profile = patch_of(&b)?;
    let new = NewUser {
        id: Uuid::new_v4(),
        kind: UserKind::User,
        upn,
        display_name: display,
        given_name: profile.given_name.as_ref().and_then(|v| v.as_deref()),
        surname: profile.surname.as_ref().and_then(|v| v.as_deref()),
        mail: profile.mail.as_ref().and_then(|v| v.as_deref()),
        enabled,
        password_hash: Some(&hash),
        identity_parent_id: None,
        roles: &[],
    };
    let u = req.sts.store.create_user(&c.tenant.id, &new).await?;
    let mut v = user_json(req, &u);
    v["@odata.context"] = json!(req.context("users/$entity"));
    created(v)
}

pub(super) async fn patch_user(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Out> {
    let u = find_user(req, c, key).await?;
    let allowed = match u.kind {
        UserKind::User => write_users(c),
        UserKind::AgentUser => {
            if c.delegated() {
                c.has(&["AgentIdUser.ReadWrite.All"], &[]) && c.admin()
            } else {
                c.has(&[], &["AgentIdUser.ReadWrite.All"])
            }
        }
    };
    if !allowed {
        return Err(GraphError::denied());
    }
    let b = req.body_object(
        "user",
        &PROFILE,
        &[
            "id",
            "createdDateTime",
            "userPrincipalName",
            "identityParentId",
        ],
    )?;
    let mut p = patch_of(&b)?;
    if u.kind == UserKind::AgentUser && b.contains_key("passwordProfile") {
        return Err(GraphError::bad_request("Agent users have no password."));
    }
    p.password_hash = password_hash(req, &b).await?.map(Some);
    req.sts.store.update_user(&u, &p).await?;
    Ok((StatusCode::NO_CONTENT, None))
}

pub(super) async fn delete_user(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Out> {
    let u = find_user(req, c, key).await?;
    if !write_users(c) {
        return Err(GraphError::denied());
    }
    req.sts.store.delete_user(&u).await?;
    Ok((StatusCode::NO_CONTENT, None))
}

pub(super) async fn revoke_sessions(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Out> {
    let u = find_user(req, c, key).await?;
    let own = c.user.as_ref().is_some_and(|me| me.id == u.id) && c.has(&["User.ReadWrite"], &[]);
    if !(own || write_users(c)) {
        return Err(GraphError::denied());
    }
    req.sts.store.revoke_sessions(&u.id).await?;
    ok(json!({"@odata.context": req.context("Edm.Boolean"), "value": true}))
}

pub(super) fn user_json(req: &Req<'_>, u: &User) -> Value {
    let t = if u.kind == UserKind::AgentUser {
        "#microsoft.graph.agentUser"
    } else {
        "#microsoft.graph.user"
    };
    let mut v = json!({"@odata.type": t, "id": u.id.to_string(), "userPrincipalName": u.upn, "displayName": u.display_name,
        "givenName": u.given_name, "surname": u.surname, "mail": u.mail, "jobTitle": null, "mobilePhone": null,
        "officeLocation": null, "preferredLanguage": null, "businessPhones": [], "accountEnabled": u.account_enabled, "userType": "Member"});
    if let Some(p) = &u.identity_parent_id {
        v["identityParentId"] = json!(p);
    }
    let _ = req;
    v
}

pub(super) fn me(req: &Req<'_>, c: &Caller) -> GResult<Out> {
    let Some(u) = &c.user else {
        return Err(GraphError::bad_request(
            "/me request is only valid with delegated authentication flow.",
        ));
    };
    if !c.has(
        &[
            "User.Read",
            "User.ReadWrite",
            "User.ReadBasic.All",
            "User.Read.All",
            "Directory.Read.All",
        ],
        &[],
    ) {
        return Err(GraphError::denied());
    }
    let mut v = user_json(req, u);
    v["@odata.context"] = json!(req.context("users/$entity"));
    ok(v)
}

pub(super) async fn list_users(req: &Req<'_>, c: &Caller) -> GResult<Out> {
    if !c.read_users() {
        return Err(GraphError::denied());
    }
    let filter = req.filter()?;
    let mut items = Vec::new();
    for u in req.sts.store.users(&c.tenant.id).await? {
        let v = user_json(req, &u);
        if let Some(f) = &filter
            && !matches(f, |p| match p {
                "id" => Some(u.id.to_string()),
                "userPrincipalName" => Some(u.upn.clone()),
                "displayName" => Some(u.display_name.clone()),
                "mail" => Some(u.mail.clone().unwrap_or_default()),
                _ => None,
            })?
        {
            continue;
        }
        items.push(v);
    }
    ok(req.collection("users", items)?)
}

pub(super) async fn find_user(req: &Req<'_>, c: &Caller, key: &str) -> GResult<User> {
    let u = match Uuid::parse_str(key) {
        Ok(id) => req.sts.store.user_by_id(&c.tenant.id, &id).await?,
        Err(_) => req.sts.store.user_by_upn(&c.tenant.id, key).await?,
    };
    u.ok_or_else(|| GraphError::not_found(key))
}

pub(super) async fn get_user(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Out> {
    let u = find_user(req, c, key).await?;
    let own = c.user.as_ref().is_some_and(|me| me.id == u.id)
        && c.has(&["User.Read", "User.ReadWrite"], &[]);
    if !own && !c.read_users() {
        return Err(GraphError::denied());
    }
    let mut v = user_json(req, &u);
    v["@odata.context"] = json!(req.context("users/$entity"));
    ok(v)
}

pub(super) async fn create_user(req: &Req<'_>, c: &Caller) -> GResult<Out> {
    if req.odata_type().as_deref() != Some("agentuser") {
        return create_person(req, c).await;
    }
    let b = req.body_object(
        "agentUser",
        &[
            "displayName",
            "userPrincipalName",
            "identityParentId",
            "mailNickname",
            "accountEnabled",
        ],
        &["id", "createdDateTime"],
    )?;
    let get = |k: &str| b.get(k).and_then(Value::as_str).map(str::to_string);
    let upn = get("userPrincipalName")
        .ok_or_else(|| GraphError::bad_request("userPrincipalName is required."))?;
    let display =
        get("displayName").ok_or_else(|| GraphError::bad_request("displayName is required."))?;
    let parent = get("identityParentId")
        .and_then(|p| Uuid::parse_str(&p).ok())
        .ok_or_else(|| {
            GraphError::bad_request("identityParentId must be the id of an agent identity.")
        })?;
    let agent = req
        .sts
        .store
        .service_principal_by_app_id(&c.tenant.id, &parent)
        .await?
        .filter(|a| a.kind == SpKind::AgentIdentity)
        .ok_or_else(|| GraphError::not_found(&parent.to_string()))?;
    users::check_upn_domain(&upn, &c.tenant.domains)
        .map_err(|e| GraphError::bad_request(e.to_string()))?;
    let allowed = if c.delegated() {
        c.has(&["AgentIdUser.ReadWrite.All"], &[]) && c.admin()
    } else {
        c.has(&[], &["AgentIdUser.ReadWrite.All"])
            || (c.has(&[], &["AgentIdUser.ReadWrite.IdentityParentedBy"])
                && agent.blueprint_app_id == Some(c.client_app_id))
    };
    if !allowed {
        return Err(GraphError::denied());
    }
    let enabled = b
        .get("accountEnabled")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let new = NewUser {
        id: Uuid::new_v4(),
        kind: UserKind::AgentUser,
        upn: &upn,
        display_name: &display,
        given_name: None,
        surname: None,
        mail: None,
        enabled,
        password_hash: None,
        identity_parent_id: Some(parent),
        roles: &[],
    };
    let u = req.sts.store.create_agent_user(&c.tenant.id, &new).await?;
    let mut v = user_json(req, &u);
    v["@odata.context"] = json!(req.context("users/$entity"));
    created(v)
}
