//! Applying a tenant file: validate every reference first, then make the directory match in
//! one transaction. Objects are found again through `tenant_file_objects` (handle → id, plus a
//! hash of the spec that produced them), which is what makes a second apply a no-op.

use super::TenantFileError as E;
use super::check::check;
use super::objects::{AppParts, apply_agent, apply_agent_user, apply_app, apply_grant, apply_user};
use super::spec::*;
use super::tenant::ensure_tenant;
use super::tx::{ApplyReport, Tx};
use crate::assignments::{self, AssignmentError, AssignmentRow};
use crate::builtin;
use crate::grants::{self, GrantError};
use crate::issuers::{self, TrustedIssuerRow};
use crate::model::{AppKind, InheritablePermission, InheritableScopes};
use crate::store::Store;
use std::collections::HashMap;
use uuid::Uuid;

/// Applies `file` to the store. Nothing is written unless everything applies.
pub async fn apply(store: &Store, file: &TenantFile) -> Result<ApplyReport, E> {
    let checked = check(file)?;
    let mut db = store.begin_write().await?;
    // Replicas starting together apply the same file one after the other (docs/sts.md §13).
    store
        .lock_transaction(&mut db, crate::ReplicaLock::TenantFile)
        .await?;
    let tenant = ensure_tenant(&mut db, &file.tenant).await?;
    let mut tx = Tx {
        conn: &mut db,
        tenant: tenant.id,
        domains: vec![tenant.domain.clone()],
        report: ApplyReport {
            tenant_id: tenant.id,
            ..Default::default()
        },
    };
    if tenant.created {
        tx.report.created += 1;
    } else if tenant.updated {
        tx.report.updated += 1;
    }

    let mut user_ids: HashMap<String, Uuid> = HashMap::new();
    for (i, u) in file.users.iter().enumerate() {
        let id = apply_user(&mut tx, u, &format!("users[{i}]")).await?;
        user_ids.insert(u.name.clone(), id);
        tx.report.id("users", &u.name, id);
    }
    let sponsor_ids = |names: &[String]| -> Vec<String> {
        names.iter().map(|n| user_ids[n].to_string()).collect()
    };

    // Service principal ids by handle, for grants and role assignments.
    let mut principals: HashMap<String, (Uuid, Uuid)> = HashMap::new(); // handle -> (sp id, appId)
    let mut resources: HashMap<String, crate::model::Resource> = HashMap::new();
    for (i, a) in file.applications.iter().enumerate() {
        let parts = AppParts {
            handle: &a.name,
            path: format!("applications[{i}]"),
            kind: AppKind::Application,
            display_name: a.display_name.clone().unwrap_or_else(|| a.name.clone()),
            app_id: a.app_id,
            identifier_uris: &a.identifier_uris,
            scopes: &a.scopes,
            app_roles: &a.app_roles,
            access_token_version: a.access_token_version,
            public_client: a.public_client,
            redirect_uris: &a.redirect_uris,
            secrets: &a.secrets,
            certificates: &a.certificates,
            federated_credentials: &a.federated_credentials,
            owners: &a.owners,
            sponsors: &[],
            inheritable: vec![],
            signing_alg: a
                .token_signing_algorithm
                .clone()
                .unwrap_or_else(|| "RS256".into()),
            enabled: true,
        };
        let owners = sponsor_ids(&a.owners);
        let (sp, app_id) = apply_app(&mut tx, &parts, &owners, &[], &checked.certs).await?;
        principals.insert(a.name.clone(), (sp, app_id));
        tx.report.id("applications", &a.name, app_id);
    }
    for (i, b) in file.blueprints.iter().enumerate() {
        let inheritable = if b.inherit_delegated_permissions {
            vec![InheritablePermission {
                resource_app_id: "*".into(),
                inheritable_scopes: InheritableScopes::AllAllowed,
            }]
        } else {
            vec![]
        };
        let parts = AppParts {
            handle: &b.name,
            path: format!("blueprints[{i}]"),
            kind: AppKind::Blueprint,
            display_name: b.display_name.clone().unwrap_or_else(|| b.name.clone()),
            app_id: b.app_id,
            identifier_uris: &b.identifier_uris,
            scopes: &b.scopes,
            app_roles: &b.app_roles,
            access_token_version: b.access_token_version,
            public_client: false,
            redirect_uris: &[],
            secrets: &b.secrets,
            certificates: &b.certificates,
            federated_credentials: &b.federated_credentials,
            owners: &b.owners,
            sponsors: &b.sponsors,
            inheritable,
            signing_alg: "RS256".into(),
            enabled: b.enabled.unwrap_or(true),
        };
        let owners = sponsor_ids(&b.owners);
        let sponsors = sponsor_ids(&b.sponsors);
        let (sp, bp_app_id) =
            apply_app(&mut tx, &parts, &owners, &sponsors, &checked.certs).await?;
        principals.insert(b.name.clone(), (sp, bp_app_id));
        tx.report.id("blueprints", &b.name, bp_app_id);
        for (j, a) in b.agents.iter().enumerate() {
            let path = format!("blueprints[{i}].agents[{j}]");
            let id = apply_agent(&mut tx, a, bp_app_id, &sponsor_ids(&a.sponsors), &path).await?;
            principals.insert(a.name.clone(), (id, id));
            tx.report.id("agents", &a.name, id);
            if let Some(au) = &a.agent_user {
                let uid = apply_agent_user(&mut tx, &a.name, au, id, &format!("{path}.agentUser"))
                    .await?;
                tx.report.id("agentUsers", &a.name, uid);
            }
        }
    }

    // Resources for grants and assignments: file objects and built-ins.
    for (handle, (_, app_id)) in &principals {
        if let Some(r) = resource_in_tx(&mut tx, app_id).await? {
            resources.insert(handle.clone(), r);
        }
    }
    let builtin_resource = |h: &str| {
        builtin::by_handle(h)
            .filter(|b| !b.public_client)
            .map(|b| b.resource(&tenant.id))
    };

    for (i, g) in file.grants.iter().enumerate() {
        let path = format!("grants[{i}]");
        let client_sp = match principals.get(&g.client) {
            Some((sp, _)) => *sp,
            None => match builtin::by_handle(&g.client) {
                Some(b) => builtin::sp_id(&tenant.id, b.app_id),
                None => {
                    return Err(E::invalid(
                        format!("{path}.client"),
                        format!("no application, blueprint or agent named '{}'", g.client),
                    ));
                }
            },
        };
        let resource = resources
            .get(&g.resource)
            .cloned()
            .or_else(|| builtin_resource(&g.resource))
            .ok_or_else(|| {
                E::invalid(
                    format!("{path}.resource"),
                    format!("no resource named '{}'", g.resource),
                )
            })?;
        let scope = grants::normalize_scope(&resource, g.scopes.iter().map(String::as_str))
            .map_err(|e| match e {
                GrantError::UnknownScope { index, .. } => {
                    E::invalid(format!("{path}.scopes[{index}]"), e.to_string())
                }
                other => E::Directory(other.into()),
            })?;
        let principal_key = match (g.consent_type.as_str(), &g.principal) {
            ("AllPrincipals", None) => String::new(),
            ("Principal", Some(p)) => user_ids
                .get(p)
                .ok_or_else(|| {
                    E::invalid(format!("{path}.principal"), format!("no user named '{p}'"))
                })?
                .to_string(),
            ("Principal", None) => {
                return Err(E::invalid(
                    format!("{path}.principal"),
                    "required when consentType is Principal",
                ));
            }
            ("AllPrincipals", Some(_)) => {
                return Err(E::invalid(
                    format!("{path}.principal"),
                    "only allowed when consentType is Principal",
                ));
            }
            (other, _) => {
                return Err(E::invalid(
                    format!("{path}.consentType"),
                    format!("'{other}' is not AllPrincipals or Principal"),
                ));
            }
        };
        apply_grant(
            &mut tx,
            client_sp,
            resource.sp_id,
            &g.consent_type,
            &principal_key,
            &scope,
        )
        .await?;
    }

    for (i, a) in file.app_role_assignments.iter().enumerate() {
        let path = format!("appRoleAssignments[{i}]");
        let (principal_id, principal_type) =
            match (principals.get(&a.principal), user_ids.get(&a.principal)) {
                (Some((sp, _)), _) => (*sp, "ServicePrincipal"),
                (None, Some(u)) => (*u, "User"),
                _ => {
                    return Err(E::invalid(
                        format!("{path}.principal"),
                        format!("no principal named '{}'", a.principal),
                    ));
                }
            };
        let resource = resources
            .get(&a.resource)
            .cloned()
            .or_else(|| builtin_resource(&a.resource))
            .ok_or_else(|| {
                E::invalid(
                    format!("{path}.resource"),
                    format!("no resource named '{}'", a.resource),
                )
            })?;
        let role =
            assignments::assignable_role(&resource, None, |r| r.value == a.role).map_err(|e| {
                match e {
                    AssignmentError::RoleNotFound => E::invalid(
                        format!("{path}.role"),
                        format!(
                            "'{}' is not an app role of {}",
                            a.role, resource.display_name
                        ),
                    ),
                    other => E::invalid(format!("{path}.role"), other.to_string()),
                }
            })?;
        let row = AssignmentRow {
            id: grants::new_grant_id(),
            principal_id: principal_id.to_string(),
            principal_type: principal_type.to_string(),
            resource_id: resource.sp_id.to_string(),
            app_role_id: role.id.to_string(),
            created_at: crate::now(),
        };
        match assignments::insert(tx.conn, &tenant.id, &row).await {
            Ok(()) => tx.report.created += 1,
            Err(AssignmentError::Exists) => {}
            Err(other) => return Err(E::Directory(other.into())),
        }
    }

    for (t, (jwks, ca_bundle)) in file.trusted_issuers.iter().zip(checked.issuers) {
        let now = crate::now();
        let mut row = TrustedIssuerRow {
            id: Uuid::new_v4().to_string(),
            issuer: t.issuer.clone(),
            jwks,
            allow_http: t.allow_http as i64,
            description: t.description.clone(),
            created_at: now,
            updated_at: now,
            ca_bundle,
        };
        match issuers::find(tx.conn, &tenant.id, &t.issuer).await? {
            Some(old)
                if old.jwks == row.jwks
                    && old.allow_http == row.allow_http
                    && old.ca_bundle == row.ca_bundle => {}
            Some(old) => {
                row.id = old.id;
                issuers::update(tx.conn, &tenant.id, &row).await?;
                tx.report.updated += 1;
            }
            None => {
                issuers::insert(tx.conn, &tenant.id, &row).await?;
                tx.report.created += 1;
            }
        }
    }

    if let Some(spec) = &file.mcp_clients {
        // Resources are applications and blueprints, not agents.
        let app_ids: HashMap<String, Uuid> = file
            .applications
            .iter()
            .map(|a| &a.name)
            .chain(file.blueprints.iter().map(|b| &b.name))
            .filter_map(|h| principals.get(h).map(|(_, app_id)| (h.clone(), *app_id)))
            .collect();
        super::mcp::apply_mcp_clients(&mut tx, spec, &app_ids).await?;
    }

    let report = std::mem::take(&mut tx.report);
    db.commit().await?;
    Ok(report)
}

#[derive(sqlx::FromRow)]
struct ResourceRow {
    sp_id: String,
    display_name: String,
    identifier_uris: String,
    scopes: String,
    app_roles: String,
    access_token_version: Option<i64>,
    signing_alg: String,
}

async fn resource_in_tx(
    tx: &mut Tx<'_>,
    app_id: &Uuid,
) -> Result<Option<crate::model::Resource>, E> {
    let row: Option<ResourceRow> = sqlx::query_as(
        "SELECT s.id AS sp_id, s.display_name, a.identifier_uris, a.scopes, a.app_roles, a.access_token_version, a.signing_alg \
         FROM applications a JOIN service_principals s ON s.app_id = a.app_id AND s.tenant_id = a.tenant_id \
         WHERE a.tenant_id = $1 AND a.app_id = $2",
    )
    .bind(tx.tenant.to_string())
    .bind(app_id.to_string())
    .fetch_optional(&mut *tx.conn)
    .await?;
    Ok(row.map(|r| crate::model::Resource {
        sp_id: Uuid::parse_str(&r.sp_id).expect("id"),
        app_id: *app_id,
        display_name: r.display_name,
        identifier_uris: serde_json::from_str(&r.identifier_uris).unwrap_or_default(),
        scopes: std::sync::Arc::new(serde_json::from_str(&r.scopes).unwrap_or_default()),
        app_roles: std::sync::Arc::new(serde_json::from_str(&r.app_roles).unwrap_or_default()),
        token_version: if r.access_token_version == Some(2) {
            2
        } else {
            1
        },
        signing_alg: r.signing_alg,
    }))
}
