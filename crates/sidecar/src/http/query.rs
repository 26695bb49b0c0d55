//! Query binding (docs/sidecar.md §3). It never fails: values that cannot be parsed are dropped.
//! Names are matched ASCII case-insensitively; the last occurrence wins, except for the
//! repeatable `optionsOverride.Scopes`.

use crate::config::parse_bool;
use uuid::Uuid;

/// `AgentIdentity`, `AgentUsername`, `AgentUserId` as sent (empty counts as absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentParams {
    pub identity: Option<String>,
    pub username: Option<String>,
    pub user_id: Option<String>,
}

/// The `optionsOverride.*` keys of one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub scopes: Vec<String>,
    pub request_app_token: Option<bool>,
    pub relative_path: Option<String>,
    pub http_method: Option<String>,
    pub content_type: Option<String>,
    pub accept_header: Option<String>,
    pub tenant: Option<String>,
    pub claims: Option<String>,
    pub fmi_path: Option<String>,
    pub long_running_session_key: Option<String>,
    pub pop_public_key: Option<String>,
    pub correlation_id: Option<Uuid>,
    pub force_refresh: Option<bool>,
    pub managed_identity_client_id: Option<String>,
    pub extra_headers: Vec<(String, String)>,
    pub extra_query: Vec<(String, String)>,
    /// `optionsOverride.BaseUrl` was sent (always ignored).
    pub base_url_given: bool,
    /// At least one recognised key other than `BaseUrl` was bound.
    pub has_any: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct BoundQuery {
    pub agent: AgentParams,
    pub overrides: Overrides,
    /// Keys that were recognised as `optionsOverride.*` but are not supported (debug log).
    pub ignored: Vec<String>,
    /// Every key name, for the access log (values are not logged).
    pub keys: Vec<String>,
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix))
    .then(|| &s[prefix.len()..])
}

fn non_empty(v: &str) -> Option<String> {
    (!v.is_empty()).then(|| v.to_string())
}

fn set_entry(map: &mut Vec<(String, String)>, name: &str, value: &str, case_insensitive: bool) {
    let same = |k: &String| {
        if case_insensitive {
            k.eq_ignore_ascii_case(name)
        } else {
            k == name
        }
    };
    match map.iter_mut().find(|(k, _)| same(k)) {
        Some((_, v)) => *v = value.to_string(),
        None => map.push((name.to_string(), value.to_string())),
    }
}

pub fn bind(query: Option<&str>) -> BoundQuery {
    let mut out = BoundQuery::default();
    let Some(q) = query else { return out };
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        let (k, v) = (k.as_ref(), v.as_ref());
        out.keys.push(k.to_string());
        if k.eq_ignore_ascii_case("AgentIdentity") {
            out.agent.identity = non_empty(v);
        } else if k.eq_ignore_ascii_case("AgentUsername") {
            out.agent.username = (!v.trim().is_empty()).then(|| v.to_string());
        } else if k.eq_ignore_ascii_case("AgentUserId") {
            out.agent.user_id = non_empty(v);
        } else if let Some(key) = strip_prefix_ci(k, "optionsOverride.") {
            bind_override(&mut out, key, v);
        }
    }
    out
}

fn bind_override(out: &mut BoundQuery, key: &str, v: &str) {
    let o = &mut out.overrides;
    let mut bound = true;
    let is = |name: &str| key.eq_ignore_ascii_case(name);
    if is("Scopes") {
        let before = o.scopes.len();
        o.scopes
            .extend(v.split_ascii_whitespace().map(str::to_string));
        bound = o.scopes.len() > before;
    } else if is("RequestAppToken") {
        match parse_bool(v) {
            Some(b) => o.request_app_token = Some(b),
            None => bound = false,
        }
    } else if is("BaseUrl") {
        o.base_url_given = true;
        bound = false;
    } else if is("RelativePath") {
        o.relative_path = Some(v.to_string());
    } else if is("HttpMethod") {
        o.http_method = Some(v.to_string());
    } else if is("ContentType") {
        o.content_type = Some(v.to_string());
    } else if is("AcceptHeader") {
        o.accept_header = Some(v.to_string());
    } else if let Some(ato) = strip_prefix_ci(key, "AcquireTokenOptions.") {
        let is = |name: &str| ato.eq_ignore_ascii_case(name);
        let last_non_empty = |slot: &mut Option<String>| match non_empty(v) {
            Some(s) => {
                *slot = Some(s);
                true
            }
            None => false,
        };
        bound = if is("Tenant") {
            last_non_empty(&mut o.tenant)
        } else if is("Claims") {
            last_non_empty(&mut o.claims)
        } else if is("FmiPath") {
            last_non_empty(&mut o.fmi_path)
        } else if is("LongRunningWebApiSessionKey") {
            last_non_empty(&mut o.long_running_session_key)
        } else if is("PopPublicKey") {
            last_non_empty(&mut o.pop_public_key)
        } else if is("ForceRefresh") {
            match parse_bool(v) {
                Some(b) => {
                    o.force_refresh = Some(b);
                    true
                }
                None => false,
            }
        } else if is("CorrelationId") {
            match agentid_claims::guid::parse(v.trim()).filter(|g| !g.is_nil()) {
                Some(g) => {
                    o.correlation_id = Some(g);
                    true
                }
                None => false,
            }
        } else if is("ManagedIdentity.UserAssignedClientId") {
            o.managed_identity_client_id = Some(v.to_string());
            true
        } else {
            out.ignored.push(format!("optionsOverride.{key}"));
            false
        };
    } else if let Some(name) = strip_prefix_ci(key, "ExtraHeaderParameters.") {
        if name.is_empty() {
            bound = false;
        } else {
            set_entry(&mut o.extra_headers, name, v, true);
        }
    } else if let Some(name) = strip_prefix_ci(key, "ExtraQueryParameters.") {
        if name.is_empty() {
            bound = false;
        } else {
            set_entry(&mut o.extra_query, name, v, false);
        }
    } else {
        out.ignored.push(format!("optionsOverride.{key}"));
        bound = false;
    }
    if bound {
        out.overrides.has_any = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_rules() {
        let b = bind(Some(
            "OPTIONSOVERRIDE.scopes=a+b&optionsOverride.Scopes=c&optionsoverride.requestapptoken=yes\
             &optionsOverride.AcquireTokenOptions.CorrelationId=not-a-guid&optionsOverride.Tenant=x\
             &optionsOverride.HttpMethod=put&optionsOverride.HttpMethod=patch\
             &optionsOverride.AcquireTokenOptions.Tenant=t1&optionsOverride.AcquireTokenOptions.Tenant=\
             &optionsOverride.ExtraHeaderParameters.X-A=1&optionsOverride.ExtraHeaderParameters.x-a=2\
             &optionsOverride.ExtraQueryParameters.q=1&optionsOverride.ExtraQueryParameters.Q=2\
             &agentidentity=&AgentUsername=u%40x",
        ));
        let o = &b.overrides;
        assert_eq!(o.scopes, vec!["a", "b", "c"]);
        assert_eq!(o.request_app_token, None);
        assert_eq!(o.correlation_id, None);
        assert_eq!(o.http_method.as_deref(), Some("patch"));
        assert_eq!(o.tenant.as_deref(), Some("t1"));
        assert_eq!(o.extra_headers, vec![("X-A".into(), "2".into())]);
        assert_eq!(o.extra_query.len(), 2);
        assert!(o.has_any);
        assert_eq!(b.agent.identity, None);
        assert_eq!(b.agent.username.as_deref(), Some("u@x"));
        assert_eq!(b.ignored, vec!["optionsOverride.Tenant"]);
    }

    #[test]
    fn base_url_alone_is_not_an_override() {
        let b = bind(Some("optionsOverride.BaseUrl=https://evil.example.com"));
        assert!(b.overrides.base_url_given);
        assert!(!b.overrides.has_any);
        let b = bind(Some("optionsOverride.RequestAppToken=%20True%20"));
        assert_eq!(b.overrides.request_app_token, Some(true));
        let nil = "00000000-0000-0000-0000-000000000000";
        let b = bind(Some(&format!(
            "optionsOverride.AcquireTokenOptions.CorrelationId={nil}"
        )));
        assert!(!b.overrides.has_any);
    }
}
