//! RFC 8707 `resource` on `/authorize` and `/token` (docs/sts.md §16.2): the value names an
//! application by one of its identifier URIs, or a gateway route resource registered for it.
//! It becomes the resource of the request's scope, so the issued token's `aud` is that
//! application's (docs/sts.md §6.4); anything else is `invalid_target`.

use crate::error::{OAuthError, OAuthResult};
use crate::token::scope::{self, OIDC_SCOPES};
use agentid_directory::Store;
use agentid_directory::model::{Tenant, normalize_uri};

pub fn invalid_target(detail: impl Into<String>) -> OAuthError {
    OAuthError::new("invalid_target", 9010010, detail.into())
}

/// The identifier the scope should name for `resource`: the value itself when it is an
/// identifier URI, else the registered application's first identifier URI (or appId).
async fn identifier(store: &Store, tenant: &Tenant, resource: &str) -> OAuthResult<String> {
    let u = url::Url::parse(resource)
        .map_err(|_| invalid_target("The resource parameter must be an absolute URI."))?;
    if u.fragment().is_some() {
        return Err(invalid_target(
            "The resource parameter must not contain a fragment.",
        ));
    }
    let trimmed = resource.trim_end_matches('/');
    if store
        .resource(&tenant.id, trimmed)
        .await
        .map_err(crate::token::internal)?
        .is_some()
    {
        return Ok(trimmed.to_string());
    }
    let app_id = store
        .protected_resource(&tenant.id, trimmed)
        .await
        .map_err(crate::token::internal)?
        .ok_or_else(|| {
            invalid_target(format!(
                "The resource '{trimmed}' is not an application or a registered resource of this tenant."
            ))
        })?;
    let r = store
        .resource(&tenant.id, &app_id.to_string())
        .await
        .map_err(crate::token::internal)?
        .ok_or_else(|| invalid_target(format!("The resource '{trimmed}' has no application.")))?;
    Ok(r.identifier_uris
        .first()
        .cloned()
        .unwrap_or_else(|| app_id.to_string()))
}

/// The scope of a request with `resource`: bare values are the resource's, a scope naming
/// another resource is refused, and a scope of only OIDC values asks for `.default`.
pub async fn scope_for(
    store: &Store,
    tenant: &Tenant,
    resource: &str,
    scope: Option<&str>,
) -> OAuthResult<String> {
    let ident = identifier(store, tenant, resource).await?;
    rewrite(&ident, scope.unwrap_or(""))
}

/// Checks that a stored scope (a code's, a refresh token's) is for `resource`.
pub async fn check_scope(
    store: &Store,
    tenant: &Tenant,
    resource: &str,
    stored_scope: &str,
) -> OAuthResult<()> {
    let ident = identifier(store, tenant, resource).await?;
    let param = scope::parse(stored_scope)?;
    if normalize_uri(&param.resource) != normalize_uri(&ident) || param.implied_graph {
        return Err(invalid_target(
            "The resource parameter does not match the resource the grant was issued for.",
        ));
    }
    Ok(())
}

fn rewrite(ident: &str, scope: &str) -> OAuthResult<String> {
    let mut parts: Vec<String> = Vec::new();
    let mut named = false;
    for t in scope.split(' ').filter(|t| !t.is_empty()) {
        if OIDC_SCOPES.iter().any(|o| o.eq_ignore_ascii_case(t)) {
            parts.push(t.to_string());
        } else if t.contains("://") || t.contains('/') {
            let res = t.rsplit_once('/').map_or("", |(r, _)| r);
            if normalize_uri(res) != normalize_uri(ident) {
                return Err(invalid_target(format!(
                    "The scope '{t}' is not a permission of the requested resource."
                )));
            }
            named = true;
            parts.push(t.to_string());
        } else {
            named = true;
            parts.push(format!("{ident}/{t}"));
        }
    }
    if !named {
        parts.insert(0, format!("{ident}/.default"));
    }
    Ok(parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn scopes_are_qualified_with_the_resource() {
        let i = "api://1bc7902d-ee63-4134-84d4-e2b04e0c42a0";
        assert_eq!(
            rewrite(i, "access_as_user offline_access").unwrap(),
            format!("{i}/access_as_user offline_access")
        );
        assert_eq!(
            rewrite(i, "openid").unwrap(),
            format!("{i}/.default openid")
        );
        assert_eq!(rewrite(i, "").unwrap(), format!("{i}/.default"));
        assert_eq!(
            rewrite(i, &format!("{i}/.default")).unwrap(),
            format!("{i}/.default")
        );
    }

    #[test]
    fn another_resources_scope_is_invalid_target() {
        let i = "api://a";
        for bad in [
            "api://b/x",
            "https://graph.microsoft.com/User.Read",
            "api://a.evil/x",
        ] {
            assert_eq!(
                rewrite(i, bad).unwrap_err().error,
                "invalid_target",
                "{bad}"
            );
        }
    }
}
