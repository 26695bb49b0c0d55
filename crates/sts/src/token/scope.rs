//! Scope resolution (docs/sts.md §6.4): which resource a request names, which values it asks for,
//! and what the token's audience will be.

use crate::error::{OAuthError, OAuthResult};
use agentid_claims::wellknown::GRAPH_APP_ID;
use agentid_directory::hot::View;
use agentid_directory::model::{Resource, Tenant, normalize_uri};

pub const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];
const GRAPH_URI: &str = "https://graph.microsoft.com";

/// A parsed `scope` parameter, before the resource is looked up.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopeParam {
    /// OIDC scopes, lowercased.
    pub oidc: Vec<String>,
    /// The resource identifier as the client wrote it (trailing `/` removed).
    pub resource: String,
    /// Values of the resource, as written (`.default` included).
    pub values: Vec<String>,
    /// True if the resource was implied (bare Graph values, or only OIDC scopes).
    pub implied_graph: bool,
}

impl ScopeParam {
    pub fn is_default(&self) -> bool {
        self.values.iter().any(|v| v == ".default")
    }

    pub fn has_oidc(&self, s: &str) -> bool {
        self.oidc.iter().any(|o| o == s)
    }
}

fn starts_with_guid_slash(t: &str) -> bool {
    t.len() > 37 && t.as_bytes()[36] == b'/' && agentid_claims::guid::parse(&t[..36]).is_some()
}

/// Splits a scope string (steps 1–3 of §6.4).
pub fn parse(scope: &str) -> OAuthResult<ScopeParam> {
    let mut oidc = Vec::new();
    let mut resource: Option<(String, String)> = None; // (as written, normalised)
    let mut values: Vec<String> = Vec::new();
    let mut implied = false;
    for token in scope.split(' ').filter(|t| !t.is_empty()) {
        if OIDC_SCOPES.iter().any(|o| o.eq_ignore_ascii_case(token)) {
            let l = token.to_ascii_lowercase();
            if !oidc.contains(&l) {
                oidc.push(l);
            }
            continue;
        }
        let (res, value) = if token.contains("://") || starts_with_guid_slash(token) {
            let i = token.rfind('/').expect("contains a slash");
            (
                token[..i].trim_end_matches('/').to_string(),
                token[i + 1..].to_string(),
            )
        } else {
            implied = true;
            (GRAPH_URI.to_string(), token.to_string())
        };
        if value.is_empty() {
            return Err(OAuthError::invalid_scope(format!(
                "The scope '{token}' names no permission."
            )));
        }
        let norm = normalize_uri(&res);
        match &resource {
            Some((_, n)) if *n != norm => {
                return Err(OAuthError::invalid_scope(
                    "The scope contains more than one resource.",
                ));
            }
            Some(_) => {}
            None => resource = Some((res, norm)),
        }
        if !values.contains(&value) {
            values.push(value);
        }
    }
    if values.iter().any(|v| v == ".default") && values.len() > 1 {
        return Err(OAuthError::invalid_scope(
            "'.default' cannot be combined with other scopes of the same resource.",
        ));
    }
    let (resource, implied_graph) = match resource {
        Some((r, _)) => (r, implied),
        None if !oidc.is_empty() => (GRAPH_URI.to_string(), true),
        None => return Err(OAuthError::invalid_scope("The scope is empty.")),
    };
    Ok(ScopeParam {
        oidc,
        resource,
        values,
        implied_graph,
    })
}

/// A scope parameter whose resource exists and whose values it defines.
#[derive(Debug, Clone)]
pub struct ResolvedScope {
    pub param: ScopeParam,
    pub resource: Resource,
    /// The `aud` of tokens for this request.
    pub audience: String,
}

impl ResolvedScope {
    /// The `scope` echoed in responses: requested values as written plus honoured OIDC scopes.
    pub fn echo(&self, granted_values: &[String], oidc: &[&str]) -> String {
        let mut parts: Vec<String> = Vec::new();
        if !self.param.implied_graph || !self.param.values.is_empty() {
            for v in &self.param.values {
                if v == ".default" || granted_values.iter().any(|g| g.eq_ignore_ascii_case(v)) {
                    if self.param.implied_graph && v != ".default" {
                        parts.push(v.clone());
                    } else {
                        parts.push(format!("{}/{v}", self.param.resource));
                    }
                }
            }
        }
        parts.extend(oidc.iter().map(|s| s.to_string()));
        parts.join(" ")
    }
}

/// Steps 4–6 of §6.4.
pub async fn resolve(
    store: &View<'_>,
    tenant: &Tenant,
    param: ScopeParam,
    client_app_id: &str,
) -> OAuthResult<ResolvedScope> {
    let resource = store
        .resource(&tenant.id, &param.resource)
        .await
        .map_err(super::internal)?
        .ok_or_else(|| OAuthError::unknown_resource(&param.resource, tenant.name()))?;
    for v in &param.values {
        if v == ".default" {
            continue;
        }
        let defined = resource
            .scopes
            .iter()
            .any(|s| s.is_enabled && s.value.eq_ignore_ascii_case(v));
        if !defined {
            return Err(OAuthError::unknown_scope_value(
                client_app_id,
                v,
                &resource.app_id.to_string(),
            ));
        }
    }
    let audience = if resource.token_version == 2 {
        resource.app_id.to_string()
    } else if param.implied_graph && resource.app_id.to_string() == GRAPH_APP_ID {
        GRAPH_URI.to_string()
    } else {
        param.resource.clone()
    };
    Ok(ResolvedScope {
        param,
        resource,
        audience,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_last_slash_and_sets_oidc_aside() {
        let p = parse("api://85075aa5-1d73-42de-812a-95348218e4b2/access_as_user openid Profile offline_access").unwrap();
        assert_eq!(p.resource, "api://85075aa5-1d73-42de-812a-95348218e4b2");
        assert_eq!(p.values, vec!["access_as_user"]);
        assert_eq!(p.oidc, vec!["openid", "profile", "offline_access"]);
        let p = parse("api://AzureADTokenExchange/.default").unwrap();
        assert_eq!(
            (p.resource.as_str(), p.is_default()),
            ("api://AzureADTokenExchange", true)
        );
        let p = parse("User.Read openid").unwrap();
        assert!(p.implied_graph);
        assert_eq!(p.resource, GRAPH_URI);
        let p = parse("fb60f99c-7a34-4190-8149-302f77469936/.default").unwrap();
        assert_eq!(p.resource, "fb60f99c-7a34-4190-8149-302f77469936");
    }

    #[test]
    fn refuses_two_resources_and_mixed_default() {
        assert_eq!(parse("api://a/x api://b/y").unwrap_err().code, 70011);
        assert_eq!(parse("api://a/.default api://a/x").unwrap_err().code, 70011);
        assert_eq!(parse("   ").unwrap_err().code, 70011);
        assert!(
            parse("https://graph.microsoft.com/.default https://graph.microsoft.com//.default")
                .is_ok()
        );
    }
}
