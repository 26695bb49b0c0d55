//! Client secrets and federated identity credentials of applications and blueprints
//! (docs/directory.md §5.3). What a credential may hold is checked by `agentid_directory::credentials`.

use super::applications::{find_app, owners_of};
use super::caller::Caller;
use super::odata::{GraphError, matches};
use super::reply::{GResult, Out, created, iso, method_not_allowed, ok};
use super::request::Req;
use agentid_directory::credentials::{
    DEFAULT_FIC_AUDIENCE, FicError, check_fic_audiences, check_fic_issuer, check_fic_name,
    check_fic_subject,
};
use agentid_directory::model::{Application, FederatedCredential};
use axum::http::{Method, StatusCode};
use serde_json::{Map, Value, json};
use uuid::Uuid;

impl From<FicError> for GraphError {
    fn from(e: FicError) -> Self {
        match e {
            FicError::Exists | FicError::IssuerSubjectTaken => GraphError::conflict(e.to_string()),
            FicError::Directory(d) => d.into(),
            other => GraphError::bad_request(other.to_string()),
        }
    }
}

pub(super) async fn credentials_target(
    req: &Req<'_>,
    c: &Caller,
    key: &str,
) -> GResult<Application> {
    let app = find_app(req, c, key).await?;
    let owners = owners_of(&req.sts.store.application_extras(&app.id).await?);
    if !c.manage_credentials(&app, &owners) {
        return Err(GraphError::denied());
    }
    Ok(app)
}

pub(super) async fn add_password(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Out> {
    let app = credentials_target(req, c, key).await?;
    let b = if req.body.is_empty() {
        Map::new()
    } else {
        req.body_object("passwordCredential", &["passwordCredential"], &[])?
    };
    let pc = b.get("passwordCredential").cloned().unwrap_or(json!({}));
    let display = pc.get("displayName").and_then(Value::as_str);
    let end = match pc.get("endDateTime").and_then(Value::as_str) {
        Some(e) => Some(
            chrono::DateTime::parse_from_rfc3339(e)
                .map_err(|_| GraphError::bad_request("endDateTime is not an ISO 8601 time."))?
                .timestamp(),
        ),
        None => None,
    };
    let (p, secret) = req
        .sts
        .store
        .add_password(&c.tenant.id, &app, display, end)
        .await?;
    ok(
        json!({"@odata.context": req.context("microsoft.graph.passwordCredential"), "customKeyIdentifier": null, "displayName": p.display_name,
        "endDateTime": iso(p.end_at), "hint": p.hint, "keyId": p.key_id.to_string(), "secretText": secret.0, "startDateTime": iso(p.start_at)}),
    )
}

pub(super) async fn remove_password(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Out> {
    let app = credentials_target(req, c, key).await?;
    let b = req.body_object("passwordCredential", &["keyId"], &[])?;
    let key_id = b
        .get("keyId")
        .and_then(Value::as_str)
        .and_then(|k| Uuid::parse_str(k).ok())
        .ok_or_else(|| GraphError::bad_request("keyId is required."))?;
    if !req.sts.store.remove_password(&app.id, &key_id).await? {
        return Err(GraphError::not_found(&key_id.to_string()));
    }
    Ok((StatusCode::NO_CONTENT, None))
}

pub(super) fn fic_json(f: &FederatedCredential, description: Option<String>) -> Value {
    json!({"id": f.id.to_string(), "name": f.name, "issuer": f.issuer, "subject": f.subject, "audiences": [f.audience], "description": description})
}

pub(super) async fn list_fics(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Out> {
    let app = find_app(req, c, key).await?;
    if !(c.read_apps()
        || c.read_blueprints()
        || c.manage_credentials(
            &app,
            &owners_of(&req.sts.store.application_extras(&app.id).await?),
        ))
    {
        return Err(GraphError::denied());
    }
    let filter = req.filter()?;
    let mut items = Vec::new();
    for f in req.sts.store.federated_credentials(&app.id).await? {
        if let Some(t) = &filter
            && !matches(t, |p| match p {
                "name" => Some(f.name.clone()),
                "issuer" => Some(f.issuer.clone()),
                "subject" => Some(f.subject.clone()),
                _ => None,
            })?
        {
            continue;
        }
        items.push(fic_json(&f, req.sts.store.fic_description(&f.id).await?));
    }
    ok(req.collection(
        &format!("applications('{}')/federatedIdentityCredentials", app.id),
        items,
    )?)
}

/// Checks the properties present in a create or update body (`credentials::check_fic_*`).
pub(super) fn validate_fic(b: &Map<String, Value>, http_ok: bool) -> GResult<()> {
    if let Some(n) = b.get("name").and_then(Value::as_str) {
        check_fic_name(n)?;
    }
    if let Some(i) = b.get("issuer") {
        check_fic_issuer(i.as_str().unwrap_or(""), http_ok)?;
    }
    if let Some(s) = b.get("subject") {
        check_fic_subject(s.as_str().unwrap_or(""))?;
    }
    if let Some(a) = b.get("audiences") {
        let a = a
            .as_array()
            .ok_or_else(|| GraphError::bad_request("audiences must be an array."))?;
        let a: Vec<&str> = a
            .iter()
            .map(|x| x.as_str().ok_or(FicError::Audiences))
            .collect::<Result<_, _>>()?;
        check_fic_audiences(&a)?;
    }
    if b.contains_key("claimsMatchingExpression") {
        return Err(FicError::ClaimsMatchingExpression.into());
    }
    Ok(())
}

pub(super) const FIC_PROPS: [&str; 6] = [
    "name",
    "issuer",
    "subject",
    "audiences",
    "description",
    "claimsMatchingExpression",
];

pub(super) async fn create_fic(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Out> {
    let app = credentials_target(req, c, key).await?;
    let b = req.body_object("federatedIdentityCredential", &FIC_PROPS, &["id"])?;
    let issuer = b
        .get("issuer")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let http_ok = req
        .sts
        .store
        .trusted_issuer(&c.tenant.id, &issuer)
        .await?
        .is_some();
    validate_fic(&b, http_ok)?;
    for k in ["name", "issuer", "subject"] {
        if b.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(GraphError::bad_request(format!("{k} is required.")));
        }
    }
    let f = FederatedCredential {
        id: Uuid::new_v4(),
        name: b["name"].as_str().unwrap_or_default().to_string(),
        issuer,
        subject: b["subject"].as_str().unwrap_or_default().to_string(),
        audience: b
            .get("audiences")
            .and_then(|a| a[0].as_str())
            .unwrap_or(DEFAULT_FIC_AUDIENCE)
            .to_string(),
    };
    let description = b.get("description").and_then(Value::as_str);
    req.sts
        .store
        .create_fic(&c.tenant.id, &app.id, &f, description)
        .await?;
    let mut v = fic_json(&f, description.map(str::to_string));
    v["@odata.context"] = json!(req.context(&format!(
        "applications('{}')/federatedIdentityCredentials/$entity",
        app.id
    )));
    created(v)
}

pub(super) async fn fic_item(
    req: &Req<'_>,
    c: &Caller,
    m: Method,
    key: &str,
    item: &str,
) -> GResult<Out> {
    let app = find_app(req, c, key).await?;
    let fics = req.sts.store.federated_credentials(&app.id).await?;
    let f = fics
        .into_iter()
        .find(|f| f.id.to_string().eq_ignore_ascii_case(item) || f.name.eq_ignore_ascii_case(item))
        .ok_or_else(|| GraphError::not_found(item))?;
    let owners = owners_of(&req.sts.store.application_extras(&app.id).await?);
    match m {
        Method::GET => {
            if !(c.read_apps() || c.read_blueprints() || c.manage_credentials(&app, &owners)) {
                return Err(GraphError::denied());
            }
            ok(fic_json(&f, req.sts.store.fic_description(&f.id).await?))
        }
        Method::PATCH => {
            if !c.manage_credentials(&app, &owners) {
                return Err(GraphError::denied());
            }
            let b = req.body_object("federatedIdentityCredential", &FIC_PROPS, &["id"])?;
            if b.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n != f.name)
            {
                return Err(GraphError::bad_request(
                    "The name of a federated identity credential cannot be changed.",
                ));
            }
            let issuer = b
                .get("issuer")
                .and_then(Value::as_str)
                .unwrap_or(&f.issuer)
                .to_string();
            validate_fic(
                &b,
                req.sts
                    .store
                    .trusted_issuer(&c.tenant.id, &issuer)
                    .await?
                    .is_some(),
            )?;
            let updated = FederatedCredential {
                issuer,
                subject: b
                    .get("subject")
                    .and_then(Value::as_str)
                    .unwrap_or(&f.subject)
                    .to_string(),
                audience: b
                    .get("audiences")
                    .and_then(|a| a[0].as_str())
                    .unwrap_or(&f.audience)
                    .to_string(),
                ..f.clone()
            };
            let description = match b.get("description") {
                Some(d) => d.as_str().map(str::to_string),
                None => req.sts.store.fic_description(&f.id).await?,
            };
            req.sts
                .store
                .update_fic(&updated, description.as_deref())
                .await?;
            Ok((StatusCode::NO_CONTENT, None))
        }
        Method::DELETE => {
            if !c.manage_credentials(&app, &owners) {
                return Err(GraphError::denied());
            }
            req.sts.store.delete_fic(&f.id).await?;
            Ok((StatusCode::NO_CONTENT, None))
        }
        _ => Err(method_not_allowed()),
    }
}
