//! Delegated and application permissions (docs/sts.md §6.5, §6.6).

use super::client_auth::{Client, ClientKind};
use crate::error::OAuthResult;
use agentid_claims::wellknown::GRAPH_APP_ID;
use agentid_directory::Store;
use agentid_directory::builtin;
use agentid_directory::hot::View;
use agentid_directory::model::{InheritableScopes, Resource};
use uuid::Uuid;

/// Adds the space-separated values of `scope` to `out`, keeping first-appearance order and
/// dropping case-insensitive duplicates.
fn merge(out: &mut Vec<String>, scope: &str) {
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        if !out.iter().any(|x| x.eq_ignore_ascii_case(s)) {
            out.push(s.to_string());
        }
    }
}

/// *granted(R)*: the client's direct grants on R covering the user, plus (agents) the
/// blueprint's `AllPrincipals` grants on R filtered by its inheritable permissions.
pub async fn granted(
    store: &Store,
    client: &Client,
    resource: &Resource,
    user: &Uuid,
) -> OAuthResult<Vec<String>> {
    let mut out = Vec::new();
    for s in store
        .granted_scopes(&client.sp_id(), &resource.sp_id, Some(user))
        .await
        .map_err(super::internal)?
    {
        merge(&mut out, &s);
    }
    if client.kind == ClientKind::Agent
        && let Some((bp_app, bp_sp)) = &client.blueprint
    {
        let rule = bp_app
            .inheritable_permissions
            .iter()
            .find(|p| {
                p.resource_app_id
                    .eq_ignore_ascii_case(&resource.app_id.to_string())
            })
            .or_else(|| {
                bp_app
                    .inheritable_permissions
                    .iter()
                    .find(|p| p.resource_app_id == "*")
            });
        if let Some(rule) = rule {
            let mut inherited = Vec::new();
            for s in store
                .granted_scopes(&bp_sp.id, &resource.sp_id, None)
                .await
                .map_err(super::internal)?
            {
                merge(&mut inherited, &s);
            }
            // Only AllPrincipals grants are inheritable; granted_scopes(None) returns just those.
            for s in inherited {
                let allowed = match &rule.inheritable_scopes {
                    InheritableScopes::AllAllowed => true,
                    InheritableScopes::Enumerated { scopes } => {
                        scopes.iter().any(|x| x.eq_ignore_ascii_case(&s))
                    }
                    InheritableScopes::NoScopes => false,
                };
                if allowed {
                    merge(&mut out, &s);
                }
            }
        }
    }
    Ok(out)
}

/// Whether `offline_access` is honoured: it must be granted on Graph for this client and user.
pub async fn offline_access_granted(
    store: &Store,
    tenant: &Uuid,
    client: &Client,
    resource: &Resource,
    user: &Uuid,
    granted_here: &[String],
) -> OAuthResult<bool> {
    if resource.app_id.to_string() == GRAPH_APP_ID {
        return Ok(granted_here
            .iter()
            .any(|s| s.eq_ignore_ascii_case("offline_access")));
    }
    let graph = builtin::by_app_id(GRAPH_APP_ID)
        .expect("graph is built in")
        .resource(tenant);
    let g = granted(store, client, &graph, user).await?;
    Ok(g.iter().any(|s| s.eq_ignore_ascii_case("offline_access")))
}

/// App role values of R assigned to `principal` (enabled roles only); blueprints implicitly
/// hold `AgentIdentity.CreateAsManager` on Graph when acting as themselves.
pub async fn roles(
    store: &View<'_>,
    resource: &Resource,
    principal: &Uuid,
    implicit_blueprint: bool,
) -> OAuthResult<Vec<String>> {
    let ids = store
        .assigned_role_ids(principal, &resource.sp_id)
        .await
        .map_err(super::internal)?;
    let mut out: Vec<String> = resource
        .app_roles
        .iter()
        .filter(|r| r.is_enabled && ids.contains(&r.id))
        .map(|r| r.value.clone())
        .collect();
    if implicit_blueprint
        && resource.is_graph()
        && !out.iter().any(|r| r == "AgentIdentity.CreateAsManager")
    {
        out.push("AgentIdentity.CreateAsManager".into());
    }
    Ok(out)
}
