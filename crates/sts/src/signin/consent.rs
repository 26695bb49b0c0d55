//! Consent on the sign-in pages (docs/sts.md §6.5, §11.2 step 3): what a user still has to consent
//! to for a request, and recording the consent given on the page.

use crate::state::StsState;
use crate::token::client_auth::Client;
use crate::token::{consent, scope};
use agentid_directory::DirectoryError;
use agentid_directory::model::{Resource, Tenant, User};

/// What the user would have to consent to.
pub struct Missing {
    pub resource: Resource,
    pub scopes: Vec<MissingScope>,
    pub offline_access: bool,
}

/// A requested scope of the resource that is not granted yet.
pub struct MissingScope {
    /// The scope value, as requested.
    pub value: String,
    /// What the consent page says: the scope's user consent display name, else its value.
    pub text: String,
    /// Only an administrator can grant it.
    pub admin_only: bool,
}

impl Missing {
    pub fn nothing_missing(&self) -> bool {
        self.scopes.is_empty() && !self.offline_access
    }

    /// Only an administrator can consent: the tenant allows no user consent, or a scope is
    /// admin-only.
    pub fn admin_only(&self, tenant: &Tenant) -> bool {
        !tenant.user_consent_allowed || self.scopes.iter().any(|s| s.admin_only)
    }
}

/// What `user` has not consented to of `scope_str` for `client`. `Err` is the AADSTS message
/// that ends the sign-in (a malformed or unresolvable scope, or nothing consentable).
pub async fn missing(
    sts: &StsState,
    tenant: &Tenant,
    client: &Client,
    user: &User,
    scope_str: &str,
) -> Result<Missing, String> {
    let param = scope::parse(scope_str).map_err(|e| e.to_string())?;
    let resolved = scope::resolve(
        &sts.store.direct(),
        tenant,
        param,
        &client.app_id.to_string(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let granted = consent::granted(&sts.store, client, &resolved.resource, &user.id)
        .await
        .map_err(|e| e.to_string())?;
    let p = &resolved.param;
    let mut scopes = Vec::new();
    if p.is_default() {
        if granted.is_empty() {
            return Err(format!(
                "AADSTS65001: The application '{}' has no permissions configured that you could consent to.",
                client.display_name
            ));
        }
    } else {
        for v in &p.values {
            if granted.iter().any(|g| g.eq_ignore_ascii_case(v)) {
                continue;
            }
            let def = resolved
                .resource
                .scopes
                .iter()
                .find(|s| s.value.eq_ignore_ascii_case(v));
            scopes.push(MissingScope {
                value: v.clone(),
                text: def
                    .and_then(|d| d.user_consent_display_name.clone())
                    .unwrap_or_else(|| v.clone()),
                admin_only: def.is_some_and(|d| d.kind == "Admin"),
            });
        }
    }
    let offline_access = p.has_oidc("offline_access")
        && !consent::offline_access_granted(
            &sts.store,
            &tenant.id,
            client,
            &resolved.resource,
            &user.id,
            &granted,
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(Missing {
        resource: resolved.resource,
        scopes,
        offline_access,
    })
}

/// For silent sign-in (`prompt=none`): is everything the request asks for already consented?
pub async fn consented(
    sts: &StsState,
    tenant: &Tenant,
    client: &Client,
    user: &User,
    scope: &str,
) -> bool {
    missing(sts, tenant, client, user, scope)
        .await
        .is_ok_and(|m| m.nothing_missing())
}

/// Records the consent given on the page: `Principal` grants for (client, user), or
/// `AllPrincipals` grants when an administrator consents for the organisation. A missing
/// `offline_access` is granted on Microsoft Graph, where Entra keeps it.
pub async fn record(
    sts: &StsState,
    tenant: &Tenant,
    client: &Client,
    user: &User,
    m: &Missing,
    for_org: bool,
) -> Result<(), DirectoryError> {
    let (consent_type, principal) = if for_org {
        ("AllPrincipals", String::new())
    } else {
        ("Principal", user.id.to_string())
    };
    let client_sp = client.sp_id().to_string();
    let mut resource_values: Vec<String> = m.scopes.iter().map(|s| s.value.clone()).collect();
    if m.offline_access && m.resource.is_graph() {
        resource_values.push("offline_access".into());
    }
    if !resource_values.is_empty() {
        sts.store
            .merge_grant(
                &tenant.id,
                &client_sp,
                &m.resource.sp_id.to_string(),
                consent_type,
                &principal,
                &resource_values,
            )
            .await?;
    }
    if m.offline_access && !m.resource.is_graph() {
        let graph = agentid_directory::builtin::by_app_id(agentid_claims::wellknown::GRAPH_APP_ID)
            .expect("built in")
            .resource(&tenant.id);
        sts.store
            .merge_grant(
                &tenant.id,
                &client_sp,
                &graph.sp_id.to_string(),
                consent_type,
                &principal,
                &["offline_access".to_string()],
            )
            .await?;
    }
    Ok(())
}
