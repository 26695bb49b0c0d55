//! The downstream APIs (docs/sidecar.md §4, §12.3): `DownstreamApis__{name}__*`, each validated into
//! [`ApiOptions`]. `AcquireTokenOptions` keys that do not apply are warned about and ignored.

use super::{Warnings, invalid, non_empty};
use crate::config::raw::{ACQUIRE_TOKEN_OPTIONS_KEYS, RawApi};
use crate::config::tree::Tree;
use crate::config::{AcquireTokenOptions, ApiOptions, ConfigError};
use std::collections::BTreeMap;

/// Every configured API, by name.
pub(super) fn apis(
    tree: &Tree,
    raw: BTreeMap<String, RawApi>,
    warnings: &mut Warnings,
) -> Result<Vec<(String, ApiOptions)>, ConfigError> {
    let mut apis = Vec::new();
    for (name, api) in raw {
        let unknown_ato: Vec<String> = tree
            .get(&["DownstreamApis", &name, "AcquireTokenOptions"])
            .map(|n| {
                n.keys()
                    .into_iter()
                    .filter(|k| {
                        !ACQUIRE_TOKEN_OPTIONS_KEYS
                            .iter()
                            .any(|a| a.eq_ignore_ascii_case(k))
                    })
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        for k in unknown_ato {
            warnings.push((
                "config_key_ignored".into(),
                format!("DownstreamApis__{name}__AcquireTokenOptions__{k} is not supported and is ignored"),
            ));
        }
        let options = api_options(&name, api, warnings)?;
        apis.push((name, options));
    }
    Ok(apis)
}

fn valid_method(m: &str) -> bool {
    !m.is_empty()
        && m.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn api_options(
    name: &str,
    api: RawApi,
    warnings: &mut Warnings,
) -> Result<ApiOptions, ConfigError> {
    let key = |k: &str| format!("DownstreamApis__{name}__{k}");
    let base_url = match non_empty(api.base_url) {
        None => None,
        Some(b) => {
            let u = url::Url::parse(&b)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .ok_or_else(|| {
                    invalid(
                        key("BaseUrl"),
                        format!("'{b}' is not an absolute http(s) URL"),
                    )
                })?;
            Some(u)
        }
    };
    let http_method = non_empty(api.http_method).unwrap_or_else(|| "GET".into());
    if !valid_method(&http_method) {
        return Err(invalid(
            key("HttpMethod"),
            format!("'{http_method}' is not an HTTP method"),
        ));
    }
    let ato = api.acquire_token_options;
    let correlation_id = match non_empty(ato.correlation_id) {
        None => None,
        Some(c) => match agentid_claims::guid::parse(&c).filter(|g| !g.is_nil()) {
            Some(g) => Some(g),
            None => {
                warnings.push((
                    "config_key_ignored".into(),
                    format!(
                        "{} is not a GUID; ignored",
                        key("AcquireTokenOptions__CorrelationId")
                    ),
                ));
                None
            }
        },
    };
    Ok(ApiOptions {
        base_url,
        relative_path: api.relative_path.unwrap_or_default(),
        http_method,
        scopes: api.scopes.map(|s| s.0).unwrap_or_default(),
        request_app_token: api.request_app_token.unwrap_or(false),
        accept_header: non_empty(api.accept_header).unwrap_or_else(|| "application/json".into()),
        content_type: non_empty(api.content_type).unwrap_or_else(|| "application/json".into()),
        extra_headers: api.extra_header_parameters.into_iter().collect(),
        extra_query: api.extra_query_parameters.into_iter().collect(),
        acquire: AcquireTokenOptions {
            tenant: non_empty(ato.tenant),
            claims: non_empty(ato.claims),
            correlation_id,
            force_refresh: ato.force_refresh.unwrap_or(false),
            fmi_path: non_empty(ato.fmi_path),
            pop_public_key: non_empty(ato.pop_public_key),
            long_running_session_key: non_empty(ato.long_running_web_api_session_key),
            managed_identity_client_id: non_empty(ato.managed_identity.user_assigned_client_id),
        },
    })
}
