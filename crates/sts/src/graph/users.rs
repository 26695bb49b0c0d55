//! Writes to people in the directory (directory.md §5.1): create, update, delete, revoke sessions.

use super::caller::Caller;
use super::odata::GraphError;
use super::{GResult, Out, Req, created, find_user, ok, user_json};
use agentid_directory::model::UserKind;
use agentid_directory::objects::UserPatch;
use axum::http::StatusCode;
use serde_json::{Map, Value, json};

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
    if pw.chars().count() < 8 {
        return Err(GraphError::bad_request(
            "The password must be at least 8 characters.",
        ));
    }
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
        password_hash: None,
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
    if !upn
        .rsplit_once('@')
        .is_some_and(|(_, d)| c.tenant.domains.iter().any(|x| x.eq_ignore_ascii_case(d)))
    {
        return Err(GraphError::bad_request(
            "The domain portion of the userPrincipalName property is invalid. You must use one of the verified domain names in your organization.",
        ));
    }
    let hash = password_hash(req, &b)
        .await?
        .ok_or_else(|| GraphError::bad_request("passwordProfile is required."))?;
    let enabled = b
        .get("accountEnabled")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let u = req
        .sts
        .store
        .create_user(&c.tenant.id, upn, display, &hash, enabled, &patch_of(&b)?)
        .await?;
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
    p.password_hash = password_hash(req, &b).await?;
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
