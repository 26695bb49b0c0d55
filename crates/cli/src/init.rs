//! `agentid sts init`: a new installation's tenant, its first administrator and an admin client.

use agentid_directory::tenant_file::TenantFile;
use anyhow::Context;
use std::path::Path;

/// Graph permissions the administrator's sign-in client is consented for (the guide's scripts use these).
pub use agentid_graphclient::ADMIN_GRAPH_SCOPES;

/// Application permissions of the admin client (automation; app-only cannot create blueprints).
const ADMIN_CLIENT_ROLES: &[&str] = &[
    "Application.ReadWrite.All",
    "DelegatedPermissionGrant.ReadWrite.All",
    "AppRoleAssignment.ReadWrite.All",
    "Directory.Read.All",
];

#[derive(clap::Args)]
pub struct InitArgs {
    /// State directory. Default: $AGENTID_HOME or ./.agentid
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Database URL (default: SQLite in the data directory).
    #[arg(long)]
    database: Option<String>,
    /// Tenant id (default: random).
    #[arg(long)]
    tenant_id: Option<uuid::Uuid>,
    /// The tenant's domain, used in user names and authority URLs.
    #[arg(long, default_value = "agentid.local")]
    domain: String,
    /// Print what was created as JSON.
    #[arg(long)]
    json: bool,
}

fn random_password() -> String {
    // 20 characters from the client-secret alphabet minus the ones that trip shells.
    agentid_directory::secrets::random_client_secret()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(20)
        .collect()
}

pub async fn run(a: InitArgs) -> anyhow::Result<()> {
    let data_dir = a
        .data_dir
        .unwrap_or_else(agentid_sts::settings::default_data_dir);
    let env: Vec<(String, String)> = std::env::vars().collect();
    let mut s = agentid_sts::settings::load(None, &env, Some(&data_dir), None)?;
    if let Some(db) = a.database {
        s.storage_url = db;
    }
    let (store, _) = agentid_sts::server::open_store(&s).await?;
    let existing = store.tenants().await?;
    if let Some(t) = existing.first() {
        let msg = format!(
            "{} is already initialised (tenant {} – {}); nothing changed.",
            data_dir.display(),
            t.id,
            t.name()
        );
        if a.json {
            println!(
                "{}",
                serde_json::json!({"initialized": false, "tenantId": t.id, "message": msg})
            );
        } else {
            eprintln!("{msg}");
        }
        return Ok(());
    }
    let tenant_id = a.tenant_id.unwrap_or_else(uuid::Uuid::new_v4);
    let admin_upn = format!("admin@{}", a.domain);
    let password = random_password();
    let client_secret = agentid_directory::secrets::random_client_secret();
    let roles: Vec<String> = ADMIN_CLIENT_ROLES
        .iter()
        .map(|r| format!("  - {{principal: admin-client, resource: graph, role: {r}}}"))
        .collect();
    let yaml = format!(
        "tenant: {{id: {tenant_id}, domain: '{domain}', displayName: '{domain}'}}\n\
users:\n  - {{name: admin, upn: '{admin_upn}', displayName: Administrator, password: '{password}', roles: [Global Administrator]}}\n\
applications:\n  - {{name: admin-client, displayName: agentid admin, secrets: [{{displayName: admin, value: '{client_secret}'}}]}}\n\
grants:\n  - {{client: graph-cli, resource: graph, scopes: [{scopes}]}}\n\
appRoleAssignments:\n{roles}\n",
        domain = a.domain,
        scopes = ADMIN_GRAPH_SCOPES.join(", "),
        roles = roles.join("\n"),
    );
    let file = TenantFile::parse(&yaml, Path::new(".")).context("building the initial tenant")?;
    let report = agentid_directory::tenant_file::apply(&store, &file).await?;
    let client_id = &report.ids["applications"]["admin-client"];
    let state =
        serde_json::json!({"tenantId": tenant_id, "domain": a.domain, "adminClientId": client_id});
    agentid_directory::secrets::write_private_file(
        &data_dir.join("state.json"),
        serde_json::to_string_pretty(&state)?.as_bytes(),
    )?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"initialized": true, "tenantId": tenant_id, "domain": a.domain,
                "admin": {"userPrincipalName": admin_upn, "password": password},
                "adminClient": {"clientId": client_id, "clientSecret": client_secret}})
        );
    } else {
        println!(
            "Initialised {} — these credentials are shown once:",
            data_dir.display()
        );
        println!("  tenant         {tenant_id} ({})", a.domain);
        println!("  administrator  {admin_upn}  password {password}");
        println!("  admin client   {client_id}  secret {client_secret}");
        println!(
            "Start the STS with: agentid sts serve --data-dir {}",
            data_dir.display()
        );
    }
    Ok(())
}
