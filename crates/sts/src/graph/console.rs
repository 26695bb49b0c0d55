//! The web console's writes (docs/console.md §5): each one is a Graph request handled in
//! process by the same handlers, permission checks and directory write paths as `/v1.0` and
//! `agentid admin`, and audited like one (category `directory`, the administrator as actor).

use super::caller::Caller;
use super::odata::GraphError;
use super::request::Req;
use super::{audit_write, routes};
use crate::state::StsState;
use agentid_directory::model::{Tenant, User};
use axum::http::{HeaderMap, Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

/// Who the console acts as for one call.
pub(crate) enum Acting {
    /// The signed-in administrator (delegated).
    Admin,
    /// The parent blueprint (appId, principal id), for creating its agent identities; the
    /// audit still names the administrator.
    Blueprint(Uuid, Uuid),
}

/// Runs `method /beta/{path}` with `body` for `admin` of `tenant`; returns the status and body.
/// The Graph error's message is for the page.
pub(crate) async fn call(
    sts: &StsState,
    tenant: &Tenant,
    admin: &User,
    acting: Acting,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Option<Value>), GraphError> {
    let headers = HeaderMap::new();
    let req = Req {
        sts,
        base: sts.base.clone(),
        version: "beta",
        method,
        query: Default::default(),
        headers: &headers,
        body: body.map(|b| b.to_string()).unwrap_or_default().into(),
        path: path.to_string(),
    };
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let caller = match acting {
        Acting::Admin => Caller::console_admin(tenant.clone(), admin.clone()),
        Acting::Blueprint(app, sp) => Caller::console_blueprint(tenant.clone(), app, sp),
    };
    let result = routes::route(&req, &caller, &segs).await;
    // The audit names the administrator and the console, whoever the handler saw.
    let actor = Caller::console_admin(tenant.clone(), admin.clone());
    audit_write(&req, &actor, &segs, &result).await;
    result
}
