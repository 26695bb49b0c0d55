//! The Graph-compatible directory API (docs/directory.md), under `/v1.0` and `/beta` with identical
//! behaviour, and agentid's extensions under `/agentid/v1`. This module takes the request,
//! authenticates the caller, routes it (`routes`) to one module per resource and writes the
//! audit event; each resource module is a thin adapter over the directory's entity module of
//! the same name (`agentid_directory::{users, applications, principals, …}`).

mod applications;
mod assignments;
mod blueprints;
pub(crate) mod caller;
pub(crate) mod console;
mod credentials;
mod extensions;
mod grants;
pub mod odata;
mod people;
mod principals;
pub(crate) mod reply;
pub(crate) mod request;
mod revoked_tokens;
mod routes;
mod users;

use crate::state::Sts;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use caller::Caller;
use odata::GraphCtx;
use reply::{GResult, Out};
use request::Req;
use serde_json::Value;
use std::collections::HashMap;
use uuid::Uuid;

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
        Ok(c) => routes::route(&req, c, &segs).await,
        Err(e) => Err(e.clone()),
    };
    // A gateway's audit shipping is not a directory write: it is not audited per batch.
    let ingest = version == "agentid/v1"
        && segs.len() == 1
        && segs[0].eq_ignore_ascii_case("auditEvents")
        && result.is_ok();
    if req.method != Method::GET
        && !ingest
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

/// One directory audit event per write (docs/directory.md §5.8); secrets are never in it, only ids.
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
    if let Err(err) = req.sts.store.insert_audit(&mut e).await {
        tracing::error!(error = %err, "cannot write directory audit event");
    }
    crate::state::log_audit(&e);
}
