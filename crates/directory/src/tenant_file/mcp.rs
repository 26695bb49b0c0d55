//! `mcpClients` of the tenant file (docs/tenant-file.md §3, docs/sts.md §16): the registration
//! policy, the client ID metadata document host policy and the protected resources, written
//! with the `mcp_clients` write paths inside the apply's transaction. Each setting is compared
//! with what is stored first, so a second apply of the same file changes nothing.

use super::TenantFileError as E;
use super::spec::{
    McpClientsSpec, MetadataDocumentModeSpec, MetadataDocumentsSpec, RegistrationModeSpec,
    RegistrationSpec,
};
use super::tx::Tx;
use crate::mcp_clients::{
    self, MAX_HOST_PATTERNS, MetadataDocumentMode, MetadataDocumentPolicy, RegistrationMode,
    host_pattern,
};
use crate::model::normalize_uri;
use crate::secrets::sha256_hex;
use std::collections::HashMap;
use uuid::Uuid;

/// The runtime policy a spec asks for; errors name the offending entry.
fn metadata_policy(spec: &MetadataDocumentsSpec, path: &str) -> Result<MetadataDocumentPolicy, E> {
    let hosts = |list: &[String], key: &str| -> Result<Vec<String>, E> {
        if list.len() > MAX_HOST_PATTERNS {
            return Err(E::invalid(
                format!("{path}.{key}"),
                format!("at most {MAX_HOST_PATTERNS} host patterns"),
            ));
        }
        list.iter()
            .enumerate()
            .map(|(i, h)| {
                host_pattern(h).ok_or_else(|| {
                    E::invalid(
                        format!("{path}.{key}[{i}]"),
                        format!("'{h}' is not a host name or *.host pattern"),
                    )
                })
            })
            .collect()
    };
    let mode = match spec.mode {
        MetadataDocumentModeSpec::Off => MetadataDocumentMode::Off,
        MetadataDocumentModeSpec::Open => MetadataDocumentMode::Open,
        MetadataDocumentModeSpec::AllowList => MetadataDocumentMode::AllowList,
    };
    let allow_hosts = hosts(&spec.allow_hosts, "allowHosts")?;
    if mode == MetadataDocumentMode::AllowList && allow_hosts.is_empty() {
        return Err(E::invalid(
            format!("{path}.allowHosts"),
            "allowList needs at least one host",
        ));
    }
    Ok(MetadataDocumentPolicy {
        mode,
        allow_hosts,
        deny_hosts: hosts(&spec.deny_hosts, "denyHosts")?,
    })
}

fn registration(
    spec: &RegistrationSpec,
    path: &str,
) -> Result<(RegistrationMode, Option<String>), E> {
    let mode = match spec.mode {
        RegistrationModeSpec::Off => RegistrationMode::Off,
        RegistrationModeSpec::Open => RegistrationMode::Open,
        RegistrationModeSpec::Token => RegistrationMode::Token,
    };
    match (mode, spec.initial_access_token.as_deref()) {
        (RegistrationMode::Token, Some(t)) if t.len() >= 16 => Ok((mode, Some(sha256_hex(t)))),
        (RegistrationMode::Token, _) => Err(E::invalid(
            format!("{path}.initialAccessToken"),
            "mode token needs an initial access token of at least 16 characters",
        )),
        (_, Some(_)) => Err(E::invalid(
            format!("{path}.initialAccessToken"),
            "only allowed with mode token",
        )),
        (_, None) => Ok((mode, None)),
    }
}

pub(super) async fn apply_mcp_clients(
    tx: &mut Tx<'_>,
    spec: &McpClientsSpec,
    app_ids: &HashMap<String, Uuid>,
) -> Result<(), E> {
    let tenant = tx.tenant.to_string();
    let now = crate::now();
    if let Some(r) = &spec.registration {
        let (mode, hash) = registration(r, "mcpClients.registration")?;
        let stored: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT mode, initial_access_token_sha256 FROM client_registration_policies WHERE tenant_id = $1",
        )
        .bind(&tenant)
        .fetch_optional(&mut *tx.conn)
        .await?;
        if stored != Some((mode.as_str().to_string(), hash)) {
            let token = r.initial_access_token.as_deref();
            mcp_clients::write_registration_policy(tx.conn, &tx.tenant, mode, token, now).await?;
            tx.report.updated += 1;
        }
    }
    if let Some(m) = &spec.client_id_metadata_documents {
        let policy = metadata_policy(m, "mcpClients.clientIdMetadataDocuments")?;
        let stored: Option<(String, String, String)> = sqlx::query_as(
            "SELECT mode, allow_hosts, deny_hosts FROM client_metadata_policies WHERE tenant_id = $1",
        )
        .bind(&tenant)
        .fetch_optional(&mut *tx.conn)
        .await?;
        let json = |l: &[String]| serde_json::to_string(l).expect("json");
        let wanted = (
            policy.mode.as_str().to_string(),
            json(&policy.allow_hosts),
            json(&policy.deny_hosts),
        );
        if stored != Some(wanted) {
            mcp_clients::write_metadata_document_policy(tx.conn, &tx.tenant, &policy, now).await?;
            tx.report.updated += 1;
        }
    }
    for (i, p) in spec.protected_resources.iter().enumerate() {
        let path = format!("mcpClients.protectedResources[{i}]");
        let app_id = app_ids.get(&p.application).ok_or_else(|| {
            E::invalid(
                format!("{path}.application"),
                format!("no application or blueprint named '{}'", p.application),
            )
        })?;
        let ok = url::Url::parse(&p.resource)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.fragment().is_none());
        if !ok {
            return Err(E::invalid(
                format!("{path}.resource"),
                format!(
                    "'{}' is not an absolute http(s) URL without a fragment",
                    p.resource
                ),
            ));
        }
        let stored: Option<(String,)> = sqlx::query_as(
            "SELECT app_id FROM protected_resources WHERE tenant_id = $1 AND resource = $2",
        )
        .bind(&tenant)
        .bind(normalize_uri(&p.resource))
        .fetch_optional(&mut *tx.conn)
        .await?;
        if stored != Some((app_id.to_string(),)) {
            mcp_clients::write_protected_resource(tx.conn, &tx.tenant, &p.resource, app_id).await?;
            if stored.is_some() {
                tx.report.updated += 1;
            } else {
                tx.report.created += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_name_the_bad_entry() {
        let spec = MetadataDocumentsSpec {
            mode: MetadataDocumentModeSpec::Open,
            allow_hosts: vec![],
            deny_hosts: vec!["ok.example".into(), "not a host".into()],
        };
        let e = metadata_policy(&spec, "p").unwrap_err().to_string();
        assert!(e.starts_with("p.denyHosts[1]"), "{e}");
        let spec = MetadataDocumentsSpec {
            mode: MetadataDocumentModeSpec::AllowList,
            ..Default::default()
        };
        assert!(
            metadata_policy(&spec, "p")
                .unwrap_err()
                .to_string()
                .starts_with("p.allowHosts")
        );
        let r = |mode, t: Option<&str>| RegistrationSpec {
            mode,
            initial_access_token: t.map(str::to_string),
        };
        for (spec, want) in [
            (r(RegistrationModeSpec::Token, None), "p.initialAccessToken"),
            (
                r(RegistrationModeSpec::Token, Some("short")),
                "p.initialAccessToken",
            ),
            (
                r(RegistrationModeSpec::Open, Some("0123456789abcdef")),
                "p.initialAccessToken",
            ),
        ] {
            let e = registration(&spec, "p").unwrap_err().to_string();
            assert!(e.starts_with(want), "{e}");
        }
        let (mode, hash) = registration(
            &r(RegistrationModeSpec::Token, Some("0123456789abcdef")),
            "p",
        )
        .unwrap();
        assert_eq!(mode, RegistrationMode::Token);
        assert_eq!(hash.unwrap(), sha256_hex("0123456789abcdef"));
    }
}
