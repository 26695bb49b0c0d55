//! The Graph-compatible directory API (directory.md), under `/v1.0` and `/beta` with identical
//! behaviour. This first cut serves the guide's provisioning calls: `/me`, users and agent
//! users, applications and blueprints, passwords, federated credentials, service principals,
//! blueprint principals, agent identities and delegated grants.

mod caller;
mod extensions;
pub mod odata;
mod people;
mod users;

use crate::state::Sts;
use agentid_directory::applications::{
    IdentifierUri, IdentifierUriError, RedirectPlatform, RedirectUri, UriOwner,
};
use agentid_directory::model::{
    AppKind, Application, FederatedCredential, PermissionScope, ServicePrincipal, SpKind, User,
    UserKind,
};
use agentid_directory::objects::{GrantRow, SpRecord};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use caller::Caller;
use odata::{GraphCtx, GraphError, Term, bind_target, matches, parse_filter};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use uuid::Uuid;

pub(super) type GResult<T> = Result<T, GraphError>;

pub(super) fn iso(t: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(t, 0)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// A segment with any Graph type-cast prefix removed and lowercased (`Microsoft.Graph.AgentIdentity` → `agentidentity`).
fn cast(seg: &str) -> String {
    let l = seg.to_ascii_lowercase();
    l.strip_prefix("microsoft.graph.")
        .or_else(|| l.strip_prefix("graph."))
        .map(str::to_string)
        .unwrap_or(l)
}

pub(super) struct Req<'a> {
    sts: &'a crate::state::StsState,
    base: String,
    version: &'a str,
    method: Method,
    query: HashMap<String, String>,
    headers: &'a HeaderMap,
    body: Bytes,
    /// The path after the version, for `@odata.nextLink`.
    path: String,
}

impl Req<'_> {
    fn context(&self, what: &str) -> String {
        format!("{}/{}/$metadata#{what}", self.base, self.version)
    }

    /// The JSON body as an object whose keys are all in `allowed` (read-only ones are dropped).
    fn body_object(
        &self,
        type_name: &str,
        allowed: &[&str],
        read_only: &[&str],
    ) -> GResult<Map<String, Value>> {
        let v: Value = serde_json::from_slice(&self.body)
            .map_err(|e| GraphError::bad_request(format!("Invalid JSON body: {e}.")))?;
        let Value::Object(mut m) = v else {
            return Err(GraphError::bad_request(
                "The request body must be a JSON object.",
            ));
        };
        m.retain(|k, _| {
            !read_only.iter().any(|r| r.eq_ignore_ascii_case(k))
                && !k.eq_ignore_ascii_case("@odata.type")
        });
        for k in m.keys() {
            if !allowed.iter().any(|a| a.eq_ignore_ascii_case(k)) {
                return Err(GraphError::bad_request(format!(
                    "Property '{k}' does not exist on type 'microsoft.graph.{type_name}'."
                )));
            }
        }
        Ok(m)
    }

    fn odata_type(&self) -> Option<String> {
        let v: Value = serde_json::from_slice(&self.body).ok()?;
        v.get("@odata.type")
            .and_then(Value::as_str)
            .map(|t| cast(t.trim_start_matches('#')))
    }

    fn filter(&self) -> GResult<Option<Vec<Term>>> {
        self.query
            .get("$filter")
            .map(|f| parse_filter(f))
            .transpose()
    }

    /// Applies `$search`, `$orderby`, `$top` and `$select` to a collection and wraps it.
    fn collection(&self, what: &str, mut items: Vec<Value>) -> GResult<Value> {
        for k in self.query.keys() {
            if k.starts_with('$')
                && ![
                    "$filter",
                    "$top",
                    "$select",
                    "$orderby",
                    "$count",
                    "$search",
                    "$skiptoken",
                ]
                .contains(&k.as_str())
            {
                return Err(GraphError::unsupported_query(format!(
                    "Query option '{k}' is not supported."
                )));
            }
        }
        let eventual = self
            .headers
            .get("consistencylevel")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("eventual"));
        if (self.query.contains_key("$search") || self.query.contains_key("$count")) && !eventual {
            return Err(GraphError::unsupported_query(
                "Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'",
            ));
        }
        if let Some(s) = self.query.get("$search") {
            let needle = s
                .trim_matches('"')
                .strip_prefix("displayName:")
                .unwrap_or(s.trim_matches('"'))
                .to_lowercase();
            items.retain(|i| {
                i["displayName"]
                    .as_str()
                    .unwrap_or("")
                    .to_lowercase()
                    .contains(&needle)
            });
        }
        if let Some(o) = self.query.get("$orderby") {
            let (prop, desc) = match o.split_once(' ') {
                Some((p, d)) => (p, d.eq_ignore_ascii_case("desc")),
                None => (o.as_str(), false),
            };
            if prop != "displayName" && prop != "createdDateTime" {
                return Err(GraphError::unsupported_query(format!(
                    "Ordering by '{prop}' is not supported."
                )));
            }
            items.sort_by_key(|i| i[prop].as_str().unwrap_or("").to_lowercase());
            if desc {
                items.reverse();
            }
        }
        let count = items.len();
        let top = match self.query.get("$top") {
            Some(t) => t
                .parse::<usize>()
                .ok()
                .filter(|t| (1..=999).contains(t))
                .ok_or_else(|| GraphError::bad_request("$top must be between 1 and 999."))?,
            None => 100,
        };
        // Paging: `$skiptoken` is opaque to clients (base64url of the offset).
        let skip = match self.query.get("$skiptoken") {
            Some(t) => {
                use base64::Engine;
                let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(t)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok());
                raw.and_then(|r| r.strip_prefix("o:").and_then(|n| n.parse::<usize>().ok()))
                    .ok_or_else(|| GraphError::bad_request("Invalid $skiptoken."))?
            }
            None => 0,
        };
        let more = items.len() > skip + top;
        let mut items: Vec<Value> = items.into_iter().skip(skip).take(top).collect();
        let next_link = more.then(|| {
            use base64::Engine;
            let token = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(format!("o:{}", skip + top));
            let mut q: Vec<(String, String)> = self
                .query
                .iter()
                .filter(|(k, _)| *k != "$skiptoken")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            q.sort();
            q.push(("$skiptoken".into(), token));
            let qs: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(q)
                .finish();
            format!("{}/{}/{}?{qs}", self.base, self.version, self.path)
        });
        if let Some(sel) = self.query.get("$select") {
            let keep: Vec<&str> = sel.split(',').map(str::trim).collect();
            for i in items.iter_mut() {
                if let Value::Object(m) = i {
                    m.retain(|k, _| {
                        k.starts_with("@odata") || keep.iter().any(|s| s.eq_ignore_ascii_case(k))
                    });
                }
            }
        }
        let mut body = json!({"@odata.context": self.context(what), "value": items});
        if let Some(n) = next_link {
            body["@odata.nextLink"] = json!(n);
        }
        if self.query.get("$count").is_some_and(|c| c == "true") {
            body["@odata.count"] = json!(count);
        }
        Ok(body)
    }
}

pub async fn v1(
    state: State<Sts>,
    path: Path<String>,
    method: Method,
    headers: HeaderMap,
    query: RawQuery,
    body: Bytes,
) -> Response {
    handle(state, "v1.0", path, method, headers, query, body).await
}

pub async fn agentid_v1(
    state: State<Sts>,
    path: Path<String>,
    method: Method,
    headers: HeaderMap,
    query: RawQuery,
    body: Bytes,
) -> Response {
    handle(state, "agentid/v1", path, method, headers, query, body).await
}

pub async fn beta(
    state: State<Sts>,
    path: Path<String>,
    method: Method,
    headers: HeaderMap,
    query: RawQuery,
    body: Bytes,
) -> Response {
    handle(state, "beta", path, method, headers, query, body).await
}

async fn handle(
    State(sts): State<Sts>,
    version: &str,
    Path(rest): Path<String>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let ctx = GraphCtx::new(&headers);
    let query: HashMap<String, String> = q
        .as_deref()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let req = Req {
        sts: &sts,
        base: sts.base.clone(),
        version,
        method,
        query,
        headers: &headers,
        body,
        path: rest.trim_end_matches('/').to_string(),
    };
    let segs: Vec<String> = rest
        .trim_end_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let caller = Caller::from_headers(&sts, &headers).await;
    let result = match &caller {
        Ok(c) if version == "agentid/v1" => extensions::route(&req, c, &segs).await,
        Ok(c) => route(&req, c, &segs).await,
        Err(e) => Err(e.clone()),
    };
    if req.method != Method::GET
        && let Ok(c) = &caller
    {
        audit_write(&req, c, &segs, &result).await;
    }
    match result {
        Ok((status, Some(body))) => ctx.json(status, body),
        Ok((_, None)) => ctx.no_content(),
        Err(e) => ctx.error(&e),
    }
}

pub(super) type Out = (StatusCode, Option<Value>);

/// One directory audit event per write (directory.md §5.8); secrets are never in it, only ids.
async fn audit_write(req: &Req<'_>, c: &Caller, segs: &[String], result: &GResult<Out>) {
    let ctx = crate::context::RequestContext::new(req.headers, None, None);
    let mut e = req.sts.audit_event(&ctx, "graph");
    e.tenant_id = Some(c.tenant.id.to_string());
    e.category = Some("directory".into());
    e.operation = Some(format!(
        "{} /{}",
        req.method,
        segs.iter()
            .map(|s| if Uuid::parse_str(s).is_ok() {
                "{id}"
            } else {
                s.as_str()
            })
            .collect::<Vec<_>>()
            .join("/")
    ));
    e.target = match result {
        Ok((_, Some(v))) => v
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| v.get("keyId").and_then(Value::as_str).map(str::to_string)),
        _ => None,
    }
    .or_else(|| segs.get(1).cloned());
    e.client_id = Some(c.client_app_id.to_string());
    e.user_id = c.user.as_ref().map(|u| u.id.to_string());
    e.user_principal_name = c.user.as_ref().map(|u| u.upn.clone());
    match result {
        Ok(_) => e.result = "succeeded".into(),
        Err(err) => {
            e.result = "refused".into();
            e.error = Some(err.code.into());
            e.error_code = Some(err.status.as_u16() as i64);
        }
    }
    if let Err(err) = req.sts.store.insert_audit(&e).await {
        tracing::error!(error = %err, "cannot write directory audit event");
    }
    crate::state::log_audit(&e);
}

pub(super) fn ok(v: Value) -> GResult<Out> {
    Ok((StatusCode::OK, Some(v)))
}

pub(super) fn created(v: Value) -> GResult<Out> {
    Ok((StatusCode::CREATED, Some(v)))
}

pub(super) fn method_not_allowed() -> GraphError {
    GraphError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Request_BadRequest",
        "The HTTP method is not allowed on this resource.",
    )
}

async fn route(req: &Req<'_>, c: &Caller, segs: &[String]) -> GResult<Out> {
    let lower: Vec<String> = segs.iter().map(|s| cast(s)).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let m = req.method.clone();
    match (m, l.as_slice()) {
        (Method::GET, ["me"]) => me(req, c),
        (Method::GET, ["users"]) => list_users(req, c).await,
        (Method::POST, ["users"]) => create_user(req, c).await,
        (m, ["users", _]) => match m {
            Method::GET => get_user(req, c, &segs[1]).await,
            Method::PATCH => users::patch_user(req, c, &segs[1]).await,
            Method::DELETE => users::delete_user(req, c, &segs[1]).await,
            _ => Err(method_not_allowed()),
        },
        (Method::POST, ["users", _, "revokesigninsessions"]) => {
            users::revoke_sessions(req, c, &segs[1]).await
        }
        (
            m,
            [
                "applications",
                _,
                "agentidentityblueprint",
                "inheritablepermissions",
            ],
        ) => inheritable(req, c, m, &segs[1], None).await,
        (
            m,
            [
                "applications",
                _,
                "agentidentityblueprint",
                "inheritablepermissions",
                _,
            ],
        ) => inheritable(req, c, m, &segs[1], Some(&segs[4])).await,
        (Method::GET, ["applications"]) => list_applications(req, c, false).await,
        (Method::GET, ["applications", "agentidentityblueprint"]) => {
            list_applications(req, c, true).await
        }
        (Method::POST, ["applications"]) => {
            create_application(
                req,
                c,
                req.odata_type().as_deref() == Some("agentidentityblueprint"),
            )
            .await
        }
        (Method::POST, ["applications", "agentidentityblueprint"]) => {
            create_application(req, c, true).await
        }
        (m, ["applications", _]) => match m {
            Method::GET => get_application(req, c, &segs[1]).await,
            Method::PATCH => patch_application(req, c, &segs[1]).await,
            Method::DELETE => delete_application(req, c, &segs[1]).await,
            _ => Err(method_not_allowed()),
        },
        (Method::POST, ["applications", _, "addpassword"]) => add_password(req, c, &segs[1]).await,
        (Method::POST, ["applications", _, "removepassword"]) => {
            remove_password(req, c, &segs[1]).await
        }
        (m, ["applications", _, "federatedidentitycredentials"])
        | (
            m,
            [
                "applications",
                _,
                "agentidentityblueprint",
                "federatedidentitycredentials",
            ],
        ) => match m {
            Method::GET => list_fics(req, c, &segs[1]).await,
            Method::POST => create_fic(req, c, &segs[1]).await,
            _ => Err(method_not_allowed()),
        },
        (m, ["applications", _, "federatedidentitycredentials", _]) => {
            fic_item(req, c, m, &segs[1], &segs[3]).await
        }
        (
            m,
            [
                "applications",
                _,
                "agentidentityblueprint",
                "federatedidentitycredentials",
                _,
            ],
        ) => fic_item(req, c, m, &segs[1], &segs[4]).await,
        (Method::GET, ["serviceprincipals"]) => list_principals(req, c, None).await,
        (Method::GET, ["serviceprincipals", "agentidentity"]) => {
            list_principals(req, c, Some(SpKind::AgentIdentity)).await
        }
        (Method::GET, ["serviceprincipals", "agentidentityblueprintprincipal"]) => {
            list_principals(req, c, Some(SpKind::BlueprintPrincipal)).await
        }
        (Method::POST, ["serviceprincipals"]) => create_principal(req, c, false).await,
        (Method::POST, ["serviceprincipals", "agentidentityblueprintprincipal"]) => {
            create_principal(req, c, true).await
        }
        (Method::POST, ["serviceprincipals", "agentidentity"]) => create_agent(req, c).await,
        (m, ["serviceprincipals", _]) => match m {
            Method::GET => get_principal(req, c, &segs[1]).await,
            Method::PATCH => patch_principal(req, c, &segs[1]).await,
            Method::DELETE => delete_principal(req, c, &segs[1]).await,
            _ => Err(method_not_allowed()),
        },
        (Method::GET, ["serviceprincipals", _, "oauth2permissiongrants"]) => {
            list_grants(req, c, Some(&segs[1])).await
        }
        (m, ["serviceprincipals", _, "approleassignments"]) => {
            assignments(req, c, m, &segs[1], Side::Principal).await
        }
        (m, ["serviceprincipals", _, "approleassignedto"]) => {
            assignments(req, c, m, &segs[1], Side::Resource).await
        }
        (m, ["users", _, "approleassignments"]) => {
            assignments(req, c, m, &segs[1], Side::User).await
        }
        (
            Method::DELETE,
            [
                "serviceprincipals",
                _,
                "approleassignments" | "approleassignedto",
                _,
            ],
        )
        | (Method::DELETE, ["users", _, "approleassignments", _]) => {
            delete_assignment(c, req, &segs[3]).await
        }
        (_, ["applications", _, "owners", rest @ ..])
        | (
            _,
            [
                "applications",
                _,
                "agentidentityblueprint",
                "owners",
                rest @ ..,
            ],
        ) => {
            people::app_people(
                req,
                c,
                &segs[1],
                agentid_directory::objects::People::Owners,
                rest,
            )
            .await
        }
        (_, ["applications", _, "sponsors", rest @ ..])
        | (
            _,
            [
                "applications",
                _,
                "agentidentityblueprint",
                "sponsors",
                rest @ ..,
            ],
        ) => {
            people::app_people(
                req,
                c,
                &segs[1],
                agentid_directory::objects::People::Sponsors,
                rest,
            )
            .await
        }
        (_, ["serviceprincipals", _, "sponsors", rest @ ..])
        | (
            _,
            [
                "serviceprincipals",
                _,
                "agentidentity",
                "sponsors",
                rest @ ..,
            ],
        ) => people::agent_sponsors(req, c, &segs[1], rest).await,
        (Method::GET, ["oauth2permissiongrants"]) => list_grants(req, c, None).await,
        (Method::POST, ["oauth2permissiongrants"]) => create_grant(req, c).await,
        (m, ["oauth2permissiongrants", _]) => grant_item(req, c, m, &segs[1]).await,
        _ => Err(GraphError::not_found(&segs.join("/"))),
    }
}

// ---- users --------------------------------------------------------------------------------------

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

fn me(req: &Req<'_>, c: &Caller) -> GResult<Out> {
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

async fn list_users(req: &Req<'_>, c: &Caller) -> GResult<Out> {
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

async fn get_user(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Out> {
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

async fn create_user(req: &Req<'_>, c: &Caller) -> GResult<Out> {
    if req.odata_type().as_deref() != Some("agentuser") {
        return users::create_person(req, c).await;
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
    let domain_ok = upn
        .rsplit_once('@')
        .is_some_and(|(_, d)| c.tenant.domains.iter().any(|x| x.eq_ignore_ascii_case(d)));
    if !domain_ok {
        return Err(GraphError::bad_request(
            "The domain portion of the userPrincipalName property is invalid. You must use one of the verified domain names in your organization.",
        ));
    }
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
    let u = req
        .sts
        .store
        .create_agent_user(&c.tenant.id, &upn, &display, &parent, enabled)
        .await?;
    let mut v = user_json(req, &u);
    v["@odata.context"] = json!(req.context("users/$entity"));
    created(v)
}

// ---- applications -------------------------------------------------------------------------------

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

pub(super) fn owners_of(extras: &agentid_directory::objects::AppExtras) -> Vec<String> {
    serde_json::from_str(&extras.owners).unwrap_or_default()
}

async fn application_json(req: &Req<'_>, app: &Application) -> GResult<Value> {
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

async fn list_applications(req: &Req<'_>, c: &Caller, blueprints: bool) -> GResult<Out> {
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

async fn get_application(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Out> {
    let app = find_app(req, c, key).await?;
    if !(c.read_apps() || (app.kind == AppKind::Blueprint && c.read_blueprints())) {
        return Err(GraphError::denied());
    }
    let mut v = application_json(req, &app).await?;
    v["@odata.context"] = json!(req.context("applications/$entity"));
    ok(v)
}

/// `sponsors@odata.bind` / `owners@odata.bind`: user (or, for owners, service principal) ids.
async fn binds(
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

async fn create_application(req: &Req<'_>, c: &Caller, blueprint: bool) -> GResult<Out> {
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
        .map_err(|e| match e {
            agentid_directory::DirectoryError::Conflict(m)
                if m == "AgentBlueprint_LimitExceeded" =>
            {
                GraphError::new(
                    StatusCode::BAD_REQUEST,
                    "AgentBlueprint_LimitExceeded",
                    "The tenant has reached its limit of 250 agent identity blueprints.",
                )
            }
            other => other.into(),
        })?;
    let mut v = application_json(req, &app).await?;
    v["@odata.context"] = json!(req.context("applications/$entity"));
    created(v)
}

fn parse_scopes(v: &Value) -> GResult<Vec<PermissionScope>> {
    let scopes: Vec<PermissionScope> = serde_json::from_value(v.clone())
        .map_err(|e| GraphError::bad_request(format!("Invalid oauth2PermissionScopes: {e}.")))?;
    let mut seen = std::collections::HashSet::new();
    for s in &scopes {
        if s.value.is_empty()
            || s.value.len() > 120
            || s.value.contains(' ')
            || s.value.starts_with('.')
        {
            return Err(GraphError::bad_request(format!(
                "'{}' is not a valid permission value.",
                s.value
            )));
        }
        if s.kind != "User" && s.kind != "Admin" {
            return Err(GraphError::bad_request(
                "Permission type must be User or Admin.",
            ));
        }
        if !seen.insert(s.value.to_lowercase()) {
            return Err(GraphError::bad_request(format!(
                "Duplicate permission value '{}'.",
                s.value
            )));
        }
    }
    Ok(scopes)
}

async fn patch_application(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Out> {
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
                // Entra's rule: an enabled permission must be disabled before it is removed or renamed.
                for old in app.scopes.iter().filter(|s| s.is_enabled) {
                    let kept = new.iter().any(|n| n.id == old.id && n.value == old.value);
                    if !kept {
                        return Err(GraphError::bad_request(
                            "Permission (scope or role) cannot be deleted or updated unless disabled first.",
                        ));
                    }
                }
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
    let optional_claims = b
        .get("optionalClaims")
        .map(|v| if v.is_null() { None } else { Some(v) });
    req.sts
        .store
        .update_application(
            &app,
            b.get("displayName").and_then(Value::as_str),
            uris.as_deref(),
            scopes.as_deref(),
            None,
            version,
            optional_claims,
            b.get("requiredResourceAccess"),
        )
        .await?;
    let public = b.get("isFallbackPublicClient").and_then(Value::as_bool);
    if redirects.is_some() || public.is_some() {
        req.sts
            .store
            .set_redirects(&app.id, redirects.as_deref(), public)
            .await?;
    }
    Ok((StatusCode::NO_CONTENT, None))
}

/// Graph's answer to an identifier URI the application may not claim (Entra's code and text).
fn identifier_uri_error(e: IdentifierUriError) -> GraphError {
    match e {
        IdentifierUriError::NotOnVerifiedDomain(_) => GraphError::new(
            StatusCode::BAD_REQUEST,
            "HostNameNotOnVerifiedDomain",
            e.to_string(),
        ),
        other => GraphError::bad_request(format!("{other}.")),
    }
}

async fn delete_application(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Out> {
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

async fn credentials_target(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Application> {
    let app = find_app(req, c, key).await?;
    let owners = owners_of(&req.sts.store.application_extras(&app.id).await?);
    if !c.manage_credentials(&app, &owners) {
        return Err(GraphError::denied());
    }
    Ok(app)
}

async fn add_password(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Out> {
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

async fn remove_password(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Out> {
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

// ---- federated identity credentials --------------------------------------------------------------

fn fic_json(f: &FederatedCredential, description: Option<String>) -> Value {
    json!({"id": f.id.to_string(), "name": f.name, "issuer": f.issuer, "subject": f.subject, "audiences": [f.audience], "description": description})
}

async fn list_fics(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Out> {
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

fn validate_fic(b: &Map<String, Value>, http_ok: bool) -> GResult<()> {
    if let Some(n) = b.get("name").and_then(Value::as_str)
        && !((3..=120).contains(&n.len())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        return Err(GraphError::bad_request(
            "name must be 3–120 characters of letters, digits, '-' and '_'.",
        ));
    }
    if let Some(i) = b.get("issuer") {
        let i = i.as_str().unwrap_or("");
        let ok_url = url::Url::parse(i)
            .is_ok_and(|u| u.scheme() == "https" || (http_ok && u.scheme() == "http"));
        if !ok_url || i.len() > 600 {
            return Err(GraphError::bad_request(
                "issuer must be an https URL of at most 600 characters.",
            ));
        }
    }
    if let Some(s) = b.get("subject") {
        let s = s.as_str().unwrap_or("");
        if s.is_empty() || s.len() > 600 {
            return Err(GraphError::bad_request("subject must be 1–600 characters."));
        }
    }
    if let Some(a) = b.get("audiences") {
        let a = a
            .as_array()
            .ok_or_else(|| GraphError::bad_request("audiences must be an array."))?;
        if a.len() > 1
            || a.iter()
                .any(|x| x.as_str().is_none_or(|s| s.is_empty() || s.len() > 600))
        {
            return Err(GraphError::bad_request(
                "audiences must hold exactly one value of at most 600 characters.",
            ));
        }
    }
    if b.contains_key("claimsMatchingExpression") {
        return Err(GraphError::bad_request(
            "claimsMatchingExpression (flexible federated identity credentials) is not supported.",
        ));
    }
    Ok(())
}

const FIC_PROPS: [&str; 6] = [
    "name",
    "issuer",
    "subject",
    "audiences",
    "description",
    "claimsMatchingExpression",
];

async fn create_fic(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Out> {
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
            .unwrap_or("api://AzureADTokenExchange")
            .to_string(),
    };
    let description = b.get("description").and_then(Value::as_str);
    req.sts
        .store
        .create_fic(&c.tenant.id, &app.id, &f, description)
        .await
        .map_err(|e| match e {
            agentid_directory::DirectoryError::NotFound(_) => GraphError::bad_request(
                "An application can have at most 20 federated identity credentials.",
            ),
            other => other.into(),
        })?;
    let mut v = fic_json(&f, description.map(str::to_string));
    v["@odata.context"] = json!(req.context(&format!(
        "applications('{}')/federatedIdentityCredentials/$entity",
        app.id
    )));
    created(v)
}

async fn fic_item(req: &Req<'_>, c: &Caller, m: Method, key: &str, item: &str) -> GResult<Out> {
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

// ---- service principals -------------------------------------------------------------------------

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

async fn list_principals(req: &Req<'_>, c: &Caller, kind: Option<SpKind>) -> GResult<Out> {
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

async fn get_principal(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Out> {
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

async fn create_principal(req: &Req<'_>, c: &Caller, blueprint_cast: bool) -> GResult<Out> {
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

async fn create_agent(req: &Req<'_>, c: &Caller) -> GResult<Out> {
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
            agentid_directory::DirectoryError::Conflict(_) => GraphError::new(
                StatusCode::BAD_REQUEST,
                "AgentIdentity_LimitExceeded",
                "The blueprint has reached its limit of 250 agent identities.",
            ),
            other => other.into(),
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

async fn patch_principal(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Out> {
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
        req.sts.store.set_principal_enabled(&r.sp.id, e).await?;
    }
    Ok((StatusCode::NO_CONTENT, None))
}

async fn delete_principal(req: &Req<'_>, c: &Caller, key: &str) -> GResult<Out> {
    let r = find_principal(req, c, key).await?;
    manage_principal(req, c, &r.sp).await?;
    req.sts.store.delete_service_principal(&r.sp).await?;
    Ok((StatusCode::NO_CONTENT, None))
}

// ---- delegated permission grants -----------------------------------------------------------------

fn grant_json(g: &GrantRow) -> Value {
    let principal = if g.principal_key.is_empty() {
        Value::Null
    } else {
        json!(g.principal_key)
    };
    json!({"id": g.id, "clientId": g.client_id, "consentType": g.consent_type, "principalId": principal, "resourceId": g.resource_id, "scope": g.scope})
}

async fn list_grants(req: &Req<'_>, c: &Caller, client: Option<&str>) -> GResult<Out> {
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
async fn normalize_scope(
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
    let mut out: Vec<String> = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        let oidc = res.is_graph()
            && ["openid", "profile", "email", "offline_access"]
                .iter()
                .any(|o| o.eq_ignore_ascii_case(s));
        if !oidc
            && !res
                .scopes
                .iter()
                .any(|d| d.is_enabled && d.value.eq_ignore_ascii_case(s))
        {
            return Err(GraphError::bad_request(format!(
                "'{s}' is not a delegated permission of {}.",
                res.display_name
            )));
        }
        if !out.iter().any(|x| x.eq_ignore_ascii_case(s)) {
            out.push(s.to_string());
        }
    }
    Ok(out.join(" "))
}

async fn create_grant(req: &Req<'_>, c: &Caller) -> GResult<Out> {
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
    let scope = normalize_scope(
        req,
        c,
        &resource_sp,
        b.get("scope").and_then(Value::as_str).unwrap_or(""),
    )
    .await?;
    let g = GrantRow {
        id: agentid_directory::secrets::random_token(),
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

async fn grant_item(req: &Req<'_>, c: &Caller, m: Method, id: &str) -> GResult<Out> {
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
                let scope = normalize_scope(req, c, &resource_sp, s).await?;
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

// ---- app role assignments -------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Principal,
    Resource,
    User,
}

fn manage_assignments(c: &Caller) -> bool {
    if c.delegated() {
        c.has(&["AppRoleAssignment.ReadWrite.All"], &[]) && c.admin()
    } else {
        c.has(&[], &["AppRoleAssignment.ReadWrite.All"])
    }
}

async fn assignment_json(
    req: &Req<'_>,
    c: &Caller,
    a: &agentid_directory::objects::AssignmentRow,
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

async fn assignments(req: &Req<'_>, c: &Caller, m: Method, key: &str, side: Side) -> GResult<Out> {
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
            let role_ok = role.is_nil()
                || res.app_roles.iter().any(|r| {
                    r.id == role
                        && r.is_enabled
                        && r.allowed_member_types.iter().any(|t| t == member)
                        && r.value != "AgentIdentity.CreateAsManager"
                });
            if !role_ok {
                return Err(GraphError::bad_request(
                    "Permission being assigned was not found on application.",
                ));
            }
            let a = agentid_directory::objects::AssignmentRow {
                id: agentid_directory::secrets::random_token(),
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

async fn delete_assignment(c: &Caller, req: &Req<'_>, id: &str) -> GResult<Out> {
    if !manage_assignments(c) {
        return Err(GraphError::denied());
    }
    if !req.sts.store.delete_assignment(&c.tenant.id, id).await? {
        return Err(GraphError::not_found(id));
    }
    Ok((StatusCode::NO_CONTENT, None))
}

// ---- inheritable permissions (blueprints) --------------------------------------------------------

fn inheritable_json(p: &agentid_directory::model::InheritablePermission) -> Value {
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

fn parse_inheritable(v: &Value) -> GResult<agentid_directory::model::InheritableScopes> {
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

async fn inheritable(
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
    let pos = |perms: &[agentid_directory::model::InheritablePermission], r: &str| {
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
            let p = agentid_directory::model::InheritablePermission {
                resource_app_id: r.to_lowercase(),
                inheritable_scopes: parse_inheritable(
                    b.get("inheritableScopes").unwrap_or(&Value::Null),
                )?,
            };
            perms.push(p.clone());
            req.sts
                .store
                .set_inheritable_permissions(&app, &perms)
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
                .set_inheritable_permissions(&app, &perms)
                .await?;
            Ok((StatusCode::NO_CONTENT, None))
        }
        (Method::DELETE, Some(r)) => {
            let i = pos(&perms, r).ok_or_else(|| GraphError::not_found(r))?;
            perms.remove(i);
            req.sts
                .store
                .set_inheritable_permissions(&app, &perms)
                .await?;
            Ok((StatusCode::NO_CONTENT, None))
        }
        _ => Err(method_not_allowed()),
    }
}
