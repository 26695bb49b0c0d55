//! `agentid admin`: manage blueprints, agent identities, federated credentials and consents on
//! agentid or on real Entra, through the same Graph calls the guide's scripts make.

mod client;
mod token;

use agentid_graphclient::ops::{fic_name, subject_of};
use agentid_graphclient::s;
use anyhow::bail;
use client::{Conn, ConnArgs};
use serde_json::{Value, json};
use token::TokenCommand;

pub fn admin_scope() -> String {
    agentid_graphclient::admin_scope(&[])
}

#[derive(clap::Args)]
pub struct AdminArgs {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(clap::Subcommand)]
enum AdminCommand {
    /// Sign the administrator in (device code in a browser, or --username/--password for scripts).
    Login {
        #[arg(long)]
        username: Option<String>,
        /// Read the password from $AGENTID_ADMIN_PASSWORD instead of passing it on the command line.
        #[arg(
            long,
            env = "AGENTID_ADMIN_PASSWORD",
            hide_env_values = true,
            allow_hyphen_values = true
        )]
        password: Option<String>,
    },
    /// Forget the cached sign-in.
    Logout,
    /// Agent identity blueprints.
    Blueprint {
        #[command(subcommand)]
        command: BlueprintCommand,
    },
    /// Agent identities.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// Federated identity credentials of a blueprint or application.
    Fic {
        #[command(subcommand)]
        command: FicCommand,
    },
    /// Delegated permission grants (consent).
    Consent {
        #[command(subcommand)]
        command: ConsentCommand,
    },
    /// Applications other than blueprints.
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// Revoke one issued token by its `uti` claim (agentid only): gateways and sidecars
    /// refuse it within seconds, through the STS's revocation feed.
    RevokeToken { uti: String },
    /// Get tokens the way an agent does: T1 → T2, or a user's sign-in → T1 → on-behalf-of.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(clap::Subcommand)]
enum AppCommand {
    /// An MCP server's application: api://{appId} with scope access_as_user, its principal, and
    /// (with --agent) consent for that agent to call it on behalf of users.
    CreateMcpServer {
        name: String,
        #[arg(long)]
        agent: Option<String>,
    },
}

#[derive(clap::Subcommand)]
enum BlueprintCommand {
    /// Application + principal + secret + exposed `access_as_user`, in one command.
    Create {
        name: String,
        /// Add a client secret (shown once).
        #[arg(long)]
        secret: bool,
        /// Add a federated credential for a Kubernetes service account NS/NAME (with --issuer).
        #[arg(long, requires = "issuer")]
        service_account: Option<String>,
        #[arg(long)]
        issuer: Option<String>,
    },
    List,
    /// Show a blueprint by appId.
    Show {
        app_id: String,
    },
    /// Delete a blueprint by appId (its principal and agent identities go with it).
    Delete {
        app_id: String,
    },
}

#[derive(clap::Subcommand)]
enum AgentCommand {
    /// Create an agent identity with the blueprint's own token (needs its secret).
    Create {
        name: String,
        #[arg(long)]
        blueprint: String,
        /// The blueprint's client secret ($AGENTID_BLUEPRINT_SECRET).
        #[arg(
            long,
            env = "AGENTID_BLUEPRINT_SECRET",
            hide_env_values = true,
            allow_hyphen_values = true
        )]
        blueprint_secret: String,
        /// Sponsor (user principal name); default: the signed-in administrator.
        #[arg(long)]
        sponsor: Option<String>,
        /// Grant these delegated scopes on a resource for on-behalf-of, e.g. `https://graph.microsoft.com/User.Read openid profile offline_access`.
        #[arg(long)]
        consent: Option<String>,
    },
    List,
    Delete {
        id: String,
        #[arg(long)]
        blueprint: String,
        #[arg(
            long,
            env = "AGENTID_BLUEPRINT_SECRET",
            hide_env_values = true,
            allow_hyphen_values = true
        )]
        blueprint_secret: String,
    },
}

#[derive(clap::Subcommand)]
enum FicCommand {
    Add {
        /// The blueprint's (or application's) appId.
        app_id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        issuer: String,
        #[arg(long, conflicts_with = "service_account")]
        subject: Option<String>,
        /// Kubernetes shortcut: NS/NAME becomes subject system:serviceaccount:NS:NAME.
        #[arg(long)]
        service_account: Option<String>,
        #[arg(long, default_value = "api://AzureADTokenExchange")]
        audience: String,
    },
    List {
        app_id: String,
    },
    Delete {
        app_id: String,
        name: String,
    },
}

#[derive(clap::Subcommand)]
enum ConsentCommand {
    /// Grant (or merge into the existing grant) delegated scopes of a resource to a client, for all users.
    Grant {
        /// Client appId (an agent's id, an application's appId).
        client: String,
        /// Resource appId or identifier URI (e.g. https://graph.microsoft.com).
        #[arg(long)]
        resource: String,
        /// Space-separated scope values.
        #[arg(long)]
        scopes: String,
    },
    List {
        client: Option<String>,
    },
    Revoke {
        grant_id: String,
    },
}

pub async fn run(a: AdminArgs) -> anyhow::Result<()> {
    let conn = Conn::new(&a.conn)?;
    let json_out = a.conn.json;
    match a.command {
        AdminCommand::Login { username, password } => login(&conn, username, password).await,
        AdminCommand::Logout => {
            match std::fs::remove_file(&conn.cache) {
                Ok(()) => eprintln!("signed out"),
                Err(_) => eprintln!("not signed in"),
            }
            Ok(())
        }
        AdminCommand::Blueprint { command } => blueprint(&conn, command, json_out).await,
        AdminCommand::Agent { command } => agent(&conn, command, json_out).await,
        AdminCommand::Fic { command } => fic(&conn, command, json_out).await,
        AdminCommand::Consent { command } => consent(&conn, command, json_out).await,
        AdminCommand::App { command } => app(&conn, command, json_out).await,
        AdminCommand::Token { command } => token::run(&conn, command).await,
        AdminCommand::RevokeToken { uti } => revoke_token(&conn, &uti, json_out).await,
    }
}

async fn revoke_token(conn: &Conn, uti: &str, json_out: bool) -> anyhow::Result<()> {
    let token = conn.admin_token().await?;
    let r = conn
        .graph(
            &token,
            "POST",
            "/agentid/v1/revokedTokens",
            Some(json!({ "uti": uti })),
        )
        .await?;
    if json_out {
        println!("{r}");
    } else {
        eprintln!(
            "revoked token {uti} (listed in the revocation feed until {})",
            s(&r, "expiresDateTime")
        );
    }
    Ok(())
}

async fn login(
    conn: &Conn,
    username: Option<String>,
    password: Option<String>,
) -> anyhow::Result<()> {
    let scope = admin_scope();
    let t = match (username, password) {
        (Some(u), Some(p)) => {
            conn.token(&[
                ("grant_type", "password"),
                ("client_id", &conn.client_id),
                ("username", &u),
                ("password", &p),
                ("scope", &scope),
            ])
            .await?
        }
        (Some(_), None) => {
            bail!("--username needs a password ($AGENTID_ADMIN_PASSWORD or --password)")
        }
        _ => token::device_code_token(conn, &scope).await?,
    };
    conn.save(&t)?;
    let c = agentid_claims::UnverifiedJwt::parse(t["access_token"].as_str().unwrap_or_default())?
        .claims;
    eprintln!(
        "signed in as {} to {}",
        c.get("upn").and_then(Value::as_str).unwrap_or("?"),
        conn.authority
    );
    Ok(())
}

fn table(rows: &[Vec<String>], headers: &[&str]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!("{}", line(headers.iter().map(|h| h.to_string()).collect()));
    for r in rows {
        println!("{}", line(r.clone()));
    }
}

async fn blueprint(conn: &Conn, cmd: BlueprintCommand, json_out: bool) -> anyhow::Result<()> {
    let token = conn.admin_token().await?;
    match cmd {
        BlueprintCommand::Create {
            name,
            secret,
            service_account,
            issuer,
        } => {
            let me = conn.me(&token).await?;
            let bp = conn
                .create_blueprint(
                    &token,
                    &name,
                    std::slice::from_ref(&me),
                    std::slice::from_ref(&me),
                )
                .await?;
            let secret_text = if secret {
                Some(
                    conn.add_password(&token, &bp.object_id, "agentid admin")
                        .await?,
                )
            } else {
                None
            };
            if let (Some(sa), Some(iss)) = (service_account, issuer) {
                let subject = subject_of(&sa)?;
                conn.add_fic(
                    &token,
                    &bp.object_id,
                    &fic_name(&subject),
                    &iss,
                    &subject,
                    agentid_graphclient::ops::TOKEN_EXCHANGE_AUDIENCE,
                )
                .await?;
            }
            let (app_id, obj) = (bp.app_id, bp.object_id);
            let sp_id = bp.principal_id;
            let out = json!({"appId": app_id, "objectId": obj, "principalId": sp_id, "identifierUri": format!("api://{app_id}"), "secret": secret_text});
            if json_out {
                println!("{out}");
            } else {
                table(
                    &[vec![name, app_id, obj, sp_id]],
                    &["NAME", "APP ID", "OBJECT ID", "PRINCIPAL ID"],
                );
                if let Some(sec) = out["secret"].as_str() {
                    println!("secret (shown once): {sec}");
                }
            }
        }
        BlueprintCommand::List => {
            let r = conn
                .graph(
                    &token,
                    "GET",
                    "/beta/applications/graph.agentIdentityBlueprint",
                    None,
                )
                .await?;
            let items = r["value"].as_array().cloned().unwrap_or_default();
            if json_out {
                println!("{}", Value::Array(items));
            } else {
                table(
                    &items
                        .iter()
                        .map(|b| {
                            vec![
                                s(b, "displayName"),
                                s(b, "appId"),
                                s(b, "id"),
                                s(b, "createdDateTime"),
                            ]
                        })
                        .collect::<Vec<_>>(),
                    &["NAME", "APP ID", "OBJECT ID", "CREATED"],
                );
            }
        }
        BlueprintCommand::Show { app_id } => println!(
            "{}",
            serde_json::to_string_pretty(&conn.application_by_app_id(&token, &app_id).await?)?
        ),
        BlueprintCommand::Delete { app_id } => {
            let app = conn.application_by_app_id(&token, &app_id).await?;
            conn.graph(
                &token,
                "DELETE",
                &format!("/beta/applications/{}", s(&app, "id")),
                None,
            )
            .await?;
            eprintln!("deleted blueprint {app_id} with its principal and agent identities");
        }
    }
    Ok(())
}

async fn agent(conn: &Conn, cmd: AgentCommand, json_out: bool) -> anyhow::Result<()> {
    match cmd {
        AgentCommand::Create {
            name,
            blueprint,
            blueprint_secret,
            sponsor,
            consent,
        } => {
            let admin = conn.admin_token().await?;
            let sponsor_id = match sponsor {
                Some(upn) => conn.user_id(&admin, &upn).await?,
                None => conn.me(&admin).await?,
            };
            let bp_token = conn.blueprint_token(&blueprint, &blueprint_secret).await?;
            let agent = conn
                .create_agent(&bp_token, &name, &blueprint, &[sponsor_id])
                .await?;
            let id = s(&agent, "id");
            if let Some(c) = consent {
                conn.grant(&admin, &id, &c).await?;
            }
            if json_out {
                println!(
                    "{}",
                    json!({"id": id, "displayName": name, "blueprint": blueprint})
                );
            } else {
                table(
                    &[vec![name, id, blueprint]],
                    &["NAME", "AGENT ID", "BLUEPRINT"],
                );
            }
        }
        AgentCommand::List => {
            let admin = conn.admin_token().await?;
            let r = conn
                .graph(
                    &admin,
                    "GET",
                    "/beta/servicePrincipals/graph.agentIdentity",
                    None,
                )
                .await?;
            let items = r["value"].as_array().cloned().unwrap_or_default();
            if json_out {
                println!("{}", Value::Array(items));
            } else {
                table(
                    &items
                        .iter()
                        .map(|a| {
                            vec![
                                s(a, "displayName"),
                                s(a, "id"),
                                s(a, "agentIdentityBlueprintId"),
                                a["accountEnabled"].to_string(),
                            ]
                        })
                        .collect::<Vec<_>>(),
                    &["NAME", "AGENT ID", "BLUEPRINT", "ENABLED"],
                );
            }
        }
        AgentCommand::Delete {
            id,
            blueprint,
            blueprint_secret,
        } => {
            let bp_token = conn.blueprint_token(&blueprint, &blueprint_secret).await?;
            conn.graph(
                &bp_token,
                "DELETE",
                &format!("/beta/serviceprincipals/{id}"),
                None,
            )
            .await?;
            eprintln!("deleted agent identity {id}");
        }
    }
    Ok(())
}

async fn fic(conn: &Conn, cmd: FicCommand, json_out: bool) -> anyhow::Result<()> {
    let token = conn.admin_token().await?;
    match cmd {
        FicCommand::Add {
            app_id,
            name,
            issuer,
            subject,
            service_account,
            audience,
        } => {
            let subject = match (subject, service_account) {
                (Some(s), None) => s,
                (None, Some(sa)) => subject_of(&sa)?,
                _ => bail!("give --subject or --service-account NS/NAME"),
            };
            let app = conn.application_by_app_id(&token, &app_id).await?;
            let name = name.unwrap_or_else(|| fic_name(&subject));
            let f = conn
                .graph(&token, "POST", &format!("/beta/applications/{}/federatedIdentityCredentials", s(&app, "id")), Some(json!({"name": name, "issuer": issuer, "subject": subject, "audiences": [audience]})))
                .await?;
            if json_out {
                println!("{f}")
            } else {
                table(
                    &[vec![s(&f, "name"), s(&f, "issuer"), s(&f, "subject")]],
                    &["NAME", "ISSUER", "SUBJECT"],
                )
            }
        }
        FicCommand::List { app_id } => {
            let app = conn.application_by_app_id(&token, &app_id).await?;
            let r = conn
                .graph(
                    &token,
                    "GET",
                    &format!(
                        "/beta/applications/{}/federatedIdentityCredentials",
                        s(&app, "id")
                    ),
                    None,
                )
                .await?;
            let items = r["value"].as_array().cloned().unwrap_or_default();
            if json_out {
                println!("{}", Value::Array(items));
            } else {
                table(
                    &items
                        .iter()
                        .map(|f| {
                            vec![
                                s(f, "name"),
                                s(f, "issuer"),
                                s(f, "subject"),
                                f["audiences"][0].as_str().unwrap_or("").to_string(),
                            ]
                        })
                        .collect::<Vec<_>>(),
                    &["NAME", "ISSUER", "SUBJECT", "AUDIENCE"],
                );
            }
        }
        FicCommand::Delete { app_id, name } => {
            let app = conn.application_by_app_id(&token, &app_id).await?;
            conn.graph(
                &token,
                "DELETE",
                &format!(
                    "/beta/applications/{}/federatedIdentityCredentials/{name}",
                    s(&app, "id")
                ),
                None,
            )
            .await?;
            eprintln!("deleted federated credential {name}");
        }
    }
    Ok(())
}

async fn consent(conn: &Conn, cmd: ConsentCommand, json_out: bool) -> anyhow::Result<()> {
    let token = conn.admin_token().await?;
    match cmd {
        ConsentCommand::Grant {
            client,
            resource,
            scopes,
        } => {
            let g = conn
                .consent_grant(&token, &client, &resource, &scopes)
                .await?;
            if json_out {
                println!("{g}")
            } else {
                println!(
                    "grant {}: {}{}",
                    s(&g, "id"),
                    s(&g, "scope"),
                    if g["merged"] == true {
                        " (merged into the existing grant)"
                    } else {
                        ""
                    }
                )
            }
        }
        ConsentCommand::List { client } => {
            let path = match client {
                Some(c) => format!(
                    "/v1.0/oauth2PermissionGrants?$filter=clientId eq '{}'",
                    s(&conn.service_principal_by_app_id(&token, &c).await?, "id")
                ),
                None => "/v1.0/oauth2PermissionGrants".to_string(),
            };
            let r = conn.graph(&token, "GET", &path, None).await?;
            let items = r["value"].as_array().cloned().unwrap_or_default();
            if json_out {
                println!("{}", Value::Array(items));
            } else {
                table(
                    &items
                        .iter()
                        .map(|g| {
                            vec![
                                s(g, "id"),
                                s(g, "clientId"),
                                s(g, "resourceId"),
                                s(g, "consentType"),
                                s(g, "scope"),
                            ]
                        })
                        .collect::<Vec<_>>(),
                    &["ID", "CLIENT", "RESOURCE", "TYPE", "SCOPE"],
                );
            }
        }
        ConsentCommand::Revoke { grant_id } => {
            conn.graph(
                &token,
                "DELETE",
                &format!("/v1.0/oauth2PermissionGrants/{grant_id}"),
                None,
            )
            .await?;
            eprintln!("revoked grant {grant_id}");
        }
    }
    Ok(())
}

async fn app(conn: &Conn, cmd: AppCommand, json_out: bool) -> anyhow::Result<()> {
    let token = conn.admin_token().await?;
    match cmd {
        AppCommand::CreateMcpServer { name, agent } => {
            let a = conn
                .graph(
                    &token,
                    "POST",
                    "/v1.0/applications",
                    Some(json!({"displayName": name, "signInAudience": "AzureADMyOrg"})),
                )
                .await?;
            let (obj, app_id) = (s(&a, "id"), s(&a, "appId"));
            conn.graph(
                &token,
                "PATCH",
                &format!("/v1.0/applications/{obj}"),
                Some(json!({"identifierUris": [format!("api://{app_id}")], "api": {"oauth2PermissionScopes": [{"id": uuid::Uuid::new_v4(), "value": "access_as_user", "type": "User",
                    "isEnabled": true, "adminConsentDisplayName": format!("Use {name}"), "adminConsentDescription": format!("Call {name}'s tools for the signed-in user."),
                    "userConsentDisplayName": format!("Use {name}"), "userConsentDescription": format!("Call {name}'s tools for you.")}]}})),
            )
            .await?;
            let sp = conn
                .graph(
                    &token,
                    "POST",
                    "/v1.0/servicePrincipals",
                    Some(json!({"appId": app_id})),
                )
                .await?;
            let grant = match &agent {
                Some(agent) => Some(
                    conn.consent_grant(&token, agent, &app_id, "access_as_user")
                        .await?,
                ),
                None => None,
            };
            let out = json!({"appId": app_id, "objectId": obj, "principalId": s(&sp, "id"), "scope": format!("api://{app_id}/access_as_user"), "grant": grant});
            if json_out {
                println!("{out}");
            } else {
                table(
                    &[vec![
                        name,
                        app_id.clone(),
                        format!("api://{app_id}/access_as_user"),
                    ]],
                    &["NAME", "APP ID", "SCOPE"],
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::AgentCommand;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Agent {
        #[command(subcommand)]
        command: AgentCommand,
    }

    /// Client secrets are drawn from an alphabet with `-` in it, so about one in 64 starts with
    /// one; clap must take it as the option's value, not as a flag.
    #[test]
    fn a_secret_that_starts_with_a_hyphen_is_a_value() {
        for secret in ["-bkPT_grgpTfpLmAxxF9xMqanZ0fWnfI.sqGgtuZ", "--x", "-"] {
            let parsed = Agent::try_parse_from([
                "agent",
                "create",
                "CLI Agent",
                "--blueprint",
                "721788d6-0544-4768-94c4-2196fa747400",
                "--blueprint-secret",
                secret,
            ])
            .unwrap_or_else(|e| panic!("{secret}: {e}"));
            match parsed.command {
                AgentCommand::Create {
                    blueprint_secret, ..
                } => assert_eq!(blueprint_secret, secret),
                _ => panic!("not create"),
            }
        }
    }
}
