//! The tenant a file applies to: found by id or domain, created with its secrets, domain and
//! built-in principals, or updated.

use super::TenantFileError as E;
use super::spec::TenantSpec;
use crate::model::SpKind;
use crate::store::AnyConnection;
use crate::{builtin, principals, secrets};
use uuid::Uuid;

/// The tenant a file applies to, after [`ensure_tenant`].
pub(super) struct EnsuredTenant {
    pub id: Uuid,
    pub created: bool,
    pub updated: bool,
    /// Its (verified) domain: what identifier URIs may use.
    pub domain: String,
}

pub(super) async fn ensure_tenant(
    conn: &mut AnyConnection,
    spec: &TenantSpec,
) -> Result<EnsuredTenant, E> {
    let by_domain = match &spec.domain {
        Some(d) => {
            let row: Option<(String,)> =
                sqlx::query_as("SELECT tenant_id FROM tenant_domains WHERE domain_lower = $1")
                    .bind(d.to_ascii_lowercase())
                    .fetch_optional(&mut *conn)
                    .await?;
            row.map(|(t,)| Uuid::parse_str(&t).expect("stored tenant id"))
        }
        None => None,
    };
    if let (Some(id), Some(other)) = (spec.id, by_domain)
        && id != other
    {
        return Err(E::invalid(
            "tenant.domain",
            format!("domain belongs to another tenant ({other})"),
        ));
    }
    let id = spec.id.or(by_domain);
    let existing: Option<(String, String, i64, i64)> = match id {
        Some(id) => sqlx::query_as("SELECT display_name, domains, allow_password_grant, user_consent_allowed FROM tenants WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await?,
        None => None,
    };
    let id = id.unwrap_or_else(Uuid::new_v4);
    let domain = spec
        .domain
        .clone()
        .unwrap_or_else(|| format!("t{}.agentid.local", &id.simple().to_string()[..8]));
    let domains = serde_json::to_string(&vec![domain.clone()]).expect("json");
    let display_name = spec.display_name.clone().unwrap_or_else(|| domain.clone());
    let allow_pw = spec.allow_password_grant.unwrap_or(true) as i64;
    let consent = spec.user_consent_allowed.unwrap_or(true) as i64;
    match existing {
        Some((dn, doms, pw, uc)) => {
            if dn == display_name && doms == domains && pw == allow_pw && uc == consent {
                return Ok(EnsuredTenant {
                    id,
                    created: false,
                    updated: false,
                    domain,
                });
            }
            sqlx::query("UPDATE tenants SET display_name = $1, domains = $2, allow_password_grant = $3, user_consent_allowed = $4 WHERE id = $5")
                .bind(&display_name)
                .bind(&domains)
                .bind(allow_pw)
                .bind(consent)
                .bind(id.to_string())
                .execute(&mut *conn)
                .await?;
            sqlx::query("DELETE FROM tenant_domains WHERE tenant_id = $1")
                .bind(id.to_string())
                .execute(&mut *conn)
                .await?;
            sqlx::query("INSERT INTO tenant_domains (domain_lower, tenant_id) VALUES ($1, $2)")
                .bind(domain.to_ascii_lowercase())
                .bind(id.to_string())
                .execute(&mut *conn)
                .await?;
            Ok(EnsuredTenant {
                id,
                created: false,
                updated: true,
                domain,
            })
        }
        None => {
            create_tenant(
                conn,
                id,
                &display_name,
                &domain,
                allow_pw != 0,
                consent != 0,
            )
            .await?;
            Ok(EnsuredTenant {
                id,
                created: true,
                updated: false,
                domain,
            })
        }
    }
}

/// Creates a tenant with its secrets and built-in principals.
pub(super) async fn create_tenant(
    conn: &mut AnyConnection,
    id: Uuid,
    display_name: &str,
    domain: &str,
    allow_password_grant: bool,
    user_consent_allowed: bool,
) -> Result<(), E> {
    let now = crate::now();
    sqlx::query(
        "INSERT INTO tenants (id, display_name, domains, allow_password_grant, user_consent_allowed, pairwise_secret, user_code_secret, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id.to_string())
    .bind(display_name)
    .bind(serde_json::to_string(&vec![domain]).expect("json"))
    .bind(allow_password_grant as i64)
    .bind(user_consent_allowed as i64)
    .bind(secrets::random_secret_b64())
    .bind(secrets::random_secret_b64())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let dup: Option<(String,)> =
        sqlx::query_as("SELECT tenant_id FROM tenant_domains WHERE domain_lower = $1")
            .bind(domain.to_ascii_lowercase())
            .fetch_optional(&mut *conn)
            .await?;
    if dup.is_some() {
        return Err(E::invalid(
            "tenant.domain",
            format!("domain '{domain}' is already used by another tenant"),
        ));
    }
    sqlx::query("INSERT INTO tenant_domains (domain_lower, tenant_id) VALUES ($1, $2)")
        .bind(domain.to_ascii_lowercase())
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    for b in builtin::BUILT_INS {
        let app_id = Uuid::parse_str(b.app_id).expect("built-in appId");
        let sp = principals::NewPrincipal {
            id: builtin::sp_id(&id, b.app_id),
            app_id,
            kind: SpKind::BuiltIn,
            display_name: b.display_name,
            enabled: true,
            blueprint_app_id: None,
            sponsors: &[],
        };
        principals::insert(conn, &id, &sp)
            .await
            .map_err(|e| E::Directory(e.into()))?;
    }
    Ok(())
}
