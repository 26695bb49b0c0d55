//! Effective options of one request (docs/sidecar.md §5): a clone of the configured API, merged
//! with the request's overrides when the route allows it, plus the RequestAppToken exemption
//! of the unauthenticated routes. The result is owned by the request; nothing is shared.

use crate::config::ApiOptions;
use crate::http::query::Overrides;

/// What happened to the overrides (for the `overrides_ignored` warning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeOutcome {
    NoOverrides,
    Merged,
    /// Overrides were sent but the route's flag is off.
    Ignored,
    /// Only `RequestAppToken=true` was applied (the unauthenticated-route exemption).
    IgnoredExceptRequestAppToken,
}

fn replace_if_non_empty(slot: &mut String, v: &Option<String>) {
    if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
        *slot = v.clone();
    }
}

fn replace_opt_if_non_empty(slot: &mut Option<String>, v: &Option<String>) {
    if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
        *slot = Some(v.clone());
    }
}

fn union(map: &mut Vec<(String, String)>, over: &[(String, String)], case_insensitive: bool) {
    for (k, v) in over {
        let same = |x: &String| {
            if case_insensitive {
                x.eq_ignore_ascii_case(k)
            } else {
                x == k
            }
        };
        match map.iter_mut().find(|(x, _)| same(x)) {
            Some((_, slot)) => *slot = v.clone(),
            None => map.push((k.clone(), v.clone())),
        }
    }
}

/// Upstream's `DownstreamApiOptionsMerger.MergeOptions` (configuration left, override right).
pub fn merge(config: &mut ApiOptions, o: &Overrides) {
    if !o.scopes.is_empty() {
        config.scopes = o.scopes.clone();
    }
    if o.request_app_token == Some(true) {
        config.request_app_token = true;
    }
    replace_if_non_empty(&mut config.relative_path, &o.relative_path);
    replace_if_non_empty(&mut config.http_method, &o.http_method);
    replace_if_non_empty(&mut config.content_type, &o.content_type);
    replace_if_non_empty(&mut config.accept_header, &o.accept_header);
    let a = &mut config.acquire;
    replace_opt_if_non_empty(&mut a.tenant, &o.tenant);
    replace_opt_if_non_empty(&mut a.claims, &o.claims);
    replace_opt_if_non_empty(&mut a.fmi_path, &o.fmi_path);
    replace_opt_if_non_empty(&mut a.long_running_session_key, &o.long_running_session_key);
    replace_opt_if_non_empty(&mut a.pop_public_key, &o.pop_public_key);
    replace_opt_if_non_empty(
        &mut a.managed_identity_client_id,
        &o.managed_identity_client_id,
    );
    if let Some(c) = o.correlation_id.filter(|c| !c.is_nil()) {
        a.correlation_id = Some(c);
    }
    // Always copied, so a configured ForceRefresh=true is reset by any merge (as upstream).
    a.force_refresh = o.force_refresh.unwrap_or(false);
    union(&mut config.extra_headers, &o.extra_headers, true);
    union(&mut config.extra_query, &o.extra_query, false);
}

/// Builds the request's own options from the configured entry.
pub fn effective(
    configured: &ApiOptions,
    overrides: &Overrides,
    allow_overrides: bool,
    unauthenticated_route: bool,
) -> (ApiOptions, MergeOutcome) {
    let mut eff = configured.clone();
    if !overrides.has_any {
        return (eff, MergeOutcome::NoOverrides);
    }
    if allow_overrides {
        merge(&mut eff, overrides);
        return (eff, MergeOutcome::Merged);
    }
    if unauthenticated_route && overrides.request_app_token == Some(true) {
        eff.request_app_token = true;
        return (eff, MergeOutcome::IgnoredExceptRequestAppToken);
    }
    (eff, MergeOutcome::Ignored)
}

/// `^[A-Za-z0-9.-]{1,128}$`.
pub fn valid_tenant(t: &str) -> bool {
    (1..=128).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::query::bind;
    use uuid::Uuid;

    fn configured() -> ApiOptions {
        let mut a = ApiOptions {
            scopes: vec!["cfg".into()],
            relative_path: "me".into(),
            extra_headers: vec![("X-A".into(), "1".into()), ("X-B".into(), "1".into())],
            ..ApiOptions::default()
        };
        a.acquire.force_refresh = true;
        a.acquire.correlation_id = Some(Uuid::from_u128(7));
        a
    }

    #[test]
    fn merge_rules() {
        let q = bind(Some(
            "optionsOverride.Scopes=&optionsOverride.RelativePath=&optionsOverride.ExtraHeaderParameters.x-a=2\
             &optionsOverride.AcquireTokenOptions.CorrelationId=00000000-0000-0000-0000-000000000000\
             &optionsOverride.ExtraHeaderParameters.X-C=3&optionsOverride.RequestAppToken=false",
        ));
        let (eff, outcome) = effective(&configured(), &q.overrides, true, false);
        assert_eq!(outcome, MergeOutcome::Merged);
        assert_eq!(eff.scopes, vec!["cfg"]);
        assert_eq!(eff.relative_path, "me");
        assert_eq!(eff.acquire.correlation_id, Some(Uuid::from_u128(7)));
        assert!(!eff.acquire.force_refresh, "reset by any merge");
        assert_eq!(
            eff.extra_headers,
            vec![
                ("X-A".to_string(), "2".to_string()),
                ("X-B".to_string(), "1".to_string()),
                ("X-C".to_string(), "3".to_string())
            ]
        );
        let mut c = configured();
        c.request_app_token = true;
        let (eff, _) = effective(&c, &q.overrides, true, false);
        assert!(
            eff.request_app_token,
            "an override of false cannot switch it off"
        );
    }

    #[test]
    fn gate_and_exemption() {
        let q = bind(Some(
            "optionsOverride.Scopes=x&optionsOverride.RequestAppToken=true",
        ));
        let (eff, outcome) = effective(&configured(), &q.overrides, false, true);
        assert_eq!(outcome, MergeOutcome::IgnoredExceptRequestAppToken);
        assert!(eff.request_app_token);
        assert_eq!(eff.scopes, vec!["cfg"]);
        let (eff, outcome) = effective(&configured(), &q.overrides, false, false);
        assert_eq!(outcome, MergeOutcome::Ignored);
        assert!(!eff.request_app_token);
        assert!(valid_tenant("contoso.onmicrosoft.com"));
        assert!(!valid_tenant("a/b"));
        assert!(!valid_tenant(""));
    }
}
