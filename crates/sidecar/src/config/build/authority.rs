//! The authority the sidecar asks for tokens (docs/sidecar.md §12.2): `AzureAd__Instance` and
//! `AzureAd__TenantId`, or the combined `AzureAd__Authority`. https only, except plain http to a
//! loopback host when `Sidecar__AllowInsecureAuthority` is set (a local test STS).

use super::{invalid, non_empty};
use crate::config::ConfigError;

/// The instance URL (ending in `/`) and the tenant.
pub(super) fn instance_and_tenant(
    instance: Option<String>,
    authority: Option<String>,
    tenant_id: Option<String>,
    allow_insecure_authority: bool,
) -> Result<(String, String), ConfigError> {
    let (mut instance, mut tenant_id) = (
        non_empty(instance).unwrap_or_else(|| "https://login.microsoftonline.com/".into()),
        non_empty(tenant_id),
    );
    if let Some(authority) = non_empty(authority) {
        let trimmed = authority.trim_end_matches('/');
        let trimmed = trimmed.strip_suffix("/v2.0").unwrap_or(trimmed);
        let (base, tenant) = trimmed
            .rsplit_once('/')
            .filter(|(b, t)| !t.is_empty() && b.contains("://"))
            .ok_or_else(|| {
                invalid(
                    "AzureAd__Authority",
                    "expected https://host[/prefix]/{tenant}[/v2.0]",
                )
            })?;
        instance = format!("{base}/");
        tenant_id = Some(tenant.to_string());
    }
    let instance_key = "AzureAd__Instance";
    let mut parsed = url::Url::parse(&instance)
        .map_err(|e| invalid(instance_key, format!("'{instance}' is not a URL: {e}")))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_insecure_authority && is_loopback_host(&parsed) => {}
        "http" => {
            return Err(invalid(
                instance_key,
                format!(
                    "'{instance}' must be https (plain http needs Sidecar__AllowInsecureAuthority=true and a loopback host)"
                ),
            ));
        }
        _ => return Err(invalid(instance_key, format!("'{instance}' must be https"))),
    }
    parsed.set_query(None);
    parsed.set_fragment(None);
    let mut instance = parsed.to_string();
    if !instance.ends_with('/') {
        instance.push('/');
    }
    let tenant_id = tenant_id.ok_or(ConfigError::Missing {
        key: "AzureAd__TenantId".into(),
    })?;
    Ok((instance, tenant_id))
}

fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}
