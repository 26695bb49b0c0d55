//! `agentid admin`: manage blueprints, agent identities, federated credentials and consents on
//! agentid or on real Entra, through the same Graph calls the guide's scripts make.

mod client;

use anyhow::{Context, bail};
use client::{Conn, ConnArgs};
use serde_json::{Value, json};

pub fn admin_scope() -> String {
    crate::init::ADMIN_GRAPH_SCOPES
        .iter()
        .map(|s| {
            if matches!(*s, "openid" | "profile" | "offline_access") {
                s.to_string()
            } else {
                format!("https://graph.microsoft.com/{s}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
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
        #[arg(long, env = "AGENTID_ADMIN_PASSWORD", hide_env_values = true)]
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

#[derive(clap::Args)]
struct AgentCredential {
    /// The agent identity's id.
    #[arg(long)]
    agent: String,
    /// Its blueprint's appId.
    #[arg(long)]
    blueprint: String,
    /// The blueprint's client secret ($AGENTID_BLUEPRINT_SECRET).
    #[arg(long, env = "AGENTID_BLUEPRINT_SECRET", hide_env_values = true)]
    blueprint_secret: String,
    /// Target scope.
    #[arg(long, default_value = "https://graph.microsoft.com/.default")]
    scope: String,
    /// Print the token's explanation instead of the token.
    #[arg(long)]
    decode: bool,
}

#[derive(clap::Subcommand)]
enum TokenCommand {
    /// The agent acting as itself: T1 (blueprint secret + fmi_path) → T2.
    Agent(AgentCredential),
    /// The agent acting for a user: the user signs in (device code, or --username for scripts)
    /// for the blueprint's API, then T1 → on-behalf-of.
    Obo {
        #[command(flatten)]
        cred: AgentCredential,
        #[arg(long)]
        username: Option<String>,
        /// The user's password ($AGENTID_USER_PASSWORD), with --username.
        #[arg(long, env = "AGENTID_USER_PASSWORD", hide_env_values = true)]
        user_password: Option<String>,
    },
    /// Show a token's claims and explain them.
    Decode { token: Option<String> },
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
        #[arg(long, env = "AGENTID_BLUEPRINT_SECRET", hide_env_values = true)]
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
        #[arg(long, env = "AGENTID_BLUEPRINT_SECRET", hide_env_values = true)]
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
        AdminCommand::Token { command } => token(&conn, command).await,
    }
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
        _ => device_code_token(conn, &scope).await?,
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

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or("").to_string()
}

async fn app_by_app_id(conn: &Conn, token: &str, app_id: &str) -> anyhow::Result<Value> {
    let r = conn
        .graph(
            token,
            "GET",
            &format!("/beta/applications?$filter=appId eq '{app_id}'"),
            None,
        )
        .await?;
    r["value"]
        .get(0)
        .cloned()
        .with_context(|| format!("no application with appId {app_id}"))
}

async fn sp_by_app_id(conn: &Conn, token: &str, app_id: &str) -> anyhow::Result<Value> {
    let r = conn
        .graph(
            token,
            "GET",
            &format!("/v1.0/servicePrincipals?$filter=appId eq '{app_id}'"),
            None,
        )
        .await?;
    r["value"]
        .get(0)
        .cloned()
        .with_context(|| format!("no service principal with appId {app_id}"))
}

fn subject_of(service_account: &str) -> anyhow::Result<String> {
    let (ns, name) = service_account
        .split_once('/')
        .context("--service-account is NAMESPACE/NAME")?;
    Ok(format!("system:serviceaccount:{ns}:{name}"))
}

fn fic_name(subject: &str) -> String {
    subject
        .trim_start_matches("system:serviceaccount:")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
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
            let me = conn.graph(&token, "GET", "/v1.0/me", None).await?;
            let user = format!("{}/v1.0/users/{}", conn.graph, s(&me, "id"));
            let bp = conn
                .graph(&token, "POST", "/beta/applications", Some(json!({"@odata.type": "Microsoft.Graph.AgentIdentityBlueprint", "displayName": name, "sponsors@odata.bind": [user], "owners@odata.bind": [user]})))
                .await?;
            let (obj, app_id) = (s(&bp, "id"), s(&bp, "appId"));
            let sp = conn
                .graph(
                    &token,
                    "POST",
                    "/beta/serviceprincipals/graph.agentIdentityBlueprintPrincipal",
                    Some(json!({"appId": app_id})),
                )
                .await?;
            conn.graph(
                &token,
                "PATCH",
                &format!("/beta/applications/{obj}"),
                Some(json!({"identifierUris": [format!("api://{app_id}")], "api": {"oauth2PermissionScopes": [{"id": uuid::Uuid::new_v4(), "value": "access_as_user", "type": "User", "isEnabled": true,
                    "adminConsentDisplayName": format!("Access {name}"), "adminConsentDescription": format!("Lets agents of {name} act for the signed-in user."),
                    "userConsentDisplayName": format!("Access {name}"), "userConsentDescription": format!("Lets agents of {name} act for you.")}]}})),
            )
            .await?;
            let secret_text = if secret {
                let p = conn
                    .graph(
                        &token,
                        "POST",
                        &format!("/beta/applications/{obj}/addPassword"),
                        Some(json!({"passwordCredential": {"displayName": "agentid admin"}})),
                    )
                    .await?;
                Some(s(&p, "secretText"))
            } else {
                None
            };
            if let (Some(sa), Some(iss)) = (service_account, issuer) {
                let subject = subject_of(&sa)?;
                conn.graph(&token, "POST", &format!("/beta/applications/{obj}/federatedIdentityCredentials"), Some(json!({"name": fic_name(&subject), "issuer": iss, "subject": subject, "audiences": ["api://AzureADTokenExchange"]}))).await?;
            }
            let out = json!({"appId": app_id, "objectId": obj, "principalId": s(&sp, "id"), "identifierUri": format!("api://{app_id}"), "secret": secret_text});
            if json_out {
                println!("{out}");
            } else {
                table(
                    &[vec![name, app_id, obj, s(&sp, "id")]],
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
            serde_json::to_string_pretty(&app_by_app_id(conn, &token, &app_id).await?)?
        ),
        BlueprintCommand::Delete { app_id } => {
            let app = app_by_app_id(conn, &token, &app_id).await?;
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

async fn blueprint_token(conn: &Conn, blueprint: &str, secret: &str) -> anyhow::Result<String> {
    let t = conn
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", blueprint),
            ("client_secret", secret),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .await?;
    Ok(t["access_token"].as_str().unwrap_or_default().to_string())
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
                Some(upn) => s(
                    &conn
                        .graph(&admin, "GET", &format!("/v1.0/users/{upn}"), None)
                        .await?,
                    "id",
                ),
                None => s(&conn.graph(&admin, "GET", "/v1.0/me", None).await?, "id"),
            };
            let bp_token = blueprint_token(conn, &blueprint, &blueprint_secret).await?;
            let agent = conn
                .graph(
                    &bp_token,
                    "POST",
                    "/beta/serviceprincipals/Microsoft.Graph.AgentIdentity",
                    Some(
                        json!({"displayName": name, "agentIdentityBlueprintId": blueprint,
                    "sponsors@odata.bind": [format!("{}/v1.0/users/{sponsor_id}", conn.graph)]}),
                    ),
                )
                .await?;
            let id = s(&agent, "id");
            if let Some(c) = consent {
                grant(conn, &admin, &id, &c).await?;
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
            let bp_token = blueprint_token(conn, &blueprint, &blueprint_secret).await?;
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

/// `RESOURCE/scope1 scope2 …` or bare Graph scopes: grants (merging into an existing grant) for all users.
async fn grant(conn: &Conn, admin: &str, client_app_id: &str, spec: &str) -> anyhow::Result<Value> {
    let mut resource = "https://graph.microsoft.com".to_string();
    let mut scopes = Vec::new();
    for t in spec.split_whitespace() {
        match t.rfind('/') {
            Some(i) if t.contains("://") => {
                resource = t[..i].to_string();
                scopes.push(t[i + 1..].to_string());
            }
            _ => scopes.push(t.to_string()),
        }
    }
    consent_grant(conn, admin, client_app_id, &resource, &scopes.join(" ")).await
}

async fn resource_sp(conn: &Conn, token: &str, resource: &str) -> anyhow::Result<Value> {
    if uuid::Uuid::parse_str(resource).is_ok() {
        return sp_by_app_id(conn, token, resource).await;
    }
    let well_known = match resource.trim_end_matches('/') {
        "https://graph.microsoft.com" => Some(agentid_claims::wellknown::GRAPH_APP_ID),
        "https://cognitiveservices.azure.com" => {
            Some(agentid_claims::wellknown::COGNITIVE_SERVICES_APP_ID)
        }
        _ => None,
    };
    if let Some(id) = well_known {
        return sp_by_app_id(conn, token, id).await;
    }
    let app_id = resource
        .strip_prefix("api://")
        .filter(|r| uuid::Uuid::parse_str(r).is_ok())
        .context("--resource is an appId, api://APPID or a well-known URI")?;
    sp_by_app_id(conn, token, app_id).await
}

async fn consent_grant(
    conn: &Conn,
    admin: &str,
    client: &str,
    resource: &str,
    scopes: &str,
) -> anyhow::Result<Value> {
    let client_sp = sp_by_app_id(conn, admin, client).await?;
    let res = resource_sp(conn, admin, resource).await?;
    let existing = conn
        .graph(admin, "GET", &format!("/v1.0/oauth2PermissionGrants?$filter=clientId eq '{}' and resourceId eq '{}' and consentType eq 'AllPrincipals'", s(&client_sp, "id"), s(&res, "id")), None)
        .await?;
    if let Some(g) = existing["value"].get(0) {
        let mut all: Vec<String> = s(g, "scope")
            .split(' ')
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect();
        for sc in scopes.split(' ').filter(|x| !x.is_empty()) {
            if !all.iter().any(|x| x.eq_ignore_ascii_case(sc)) {
                all.push(sc.to_string());
            }
        }
        conn.graph(
            admin,
            "PATCH",
            &format!("/v1.0/oauth2PermissionGrants/{}", s(g, "id")),
            Some(json!({"scope": all.join(" ")})),
        )
        .await?;
        return Ok(json!({"id": s(g, "id"), "scope": all.join(" "), "merged": true}));
    }
    let g = conn
        .graph(admin, "POST", "/v1.0/oauth2PermissionGrants", Some(json!({"clientId": s(&client_sp, "id"), "consentType": "AllPrincipals", "resourceId": s(&res, "id"), "scope": scopes})))
        .await?;
    Ok(json!({"id": s(&g, "id"), "scope": s(&g, "scope"), "merged": false}))
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
            let app = app_by_app_id(conn, &token, &app_id).await?;
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
            let app = app_by_app_id(conn, &token, &app_id).await?;
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
            let app = app_by_app_id(conn, &token, &app_id).await?;
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
            let g = consent_grant(conn, &token, &client, &resource, &scopes).await?;
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
                    s(&sp_by_app_id(conn, &token, &c).await?, "id")
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
                Some(agent) => {
                    Some(consent_grant(conn, &token, agent, &app_id, "access_as_user").await?)
                }
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

fn show_token(t: &str, decode: bool) -> anyhow::Result<()> {
    if decode {
        let jwt = agentid_claims::UnverifiedJwt::parse(t)?;
        for line in agentid_claims::explain::explain(&jwt.claims, chrono::Utc::now().timestamp()) {
            println!("{line}");
        }
    } else {
        println!("{t}");
    }
    Ok(())
}

async fn t1(conn: &Conn, c: &AgentCredential) -> anyhow::Result<String> {
    let t = conn
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &c.blueprint),
            ("client_secret", &c.blueprint_secret),
            ("scope", "api://AzureADTokenExchange/.default"),
            ("fmi_path", &c.agent),
        ])
        .await?;
    Ok(t["access_token"].as_str().unwrap_or_default().to_string())
}

/// A user token for the blueprint's API (Tc): device code in a browser, or the password grant.
async fn user_token(
    conn: &Conn,
    blueprint: &str,
    username: Option<String>,
    password: Option<String>,
) -> anyhow::Result<String> {
    let scope = format!("api://{blueprint}/access_as_user");
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
        (Some(_), None) => bail!("--username needs $AGENTID_USER_PASSWORD"),
        _ => device_code_token(conn, &scope).await?,
    };
    Ok(t["access_token"].as_str().unwrap_or_default().to_string())
}

async fn token(conn: &Conn, cmd: TokenCommand) -> anyhow::Result<()> {
    const ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    match cmd {
        TokenCommand::Agent(c) => {
            let t1 = t1(conn, &c).await?;
            let t2 = conn
                .token(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", &c.agent),
                    ("scope", &c.scope),
                    ("client_assertion_type", ASSERTION),
                    ("client_assertion", &t1),
                ])
                .await?;
            show_token(t2["access_token"].as_str().unwrap_or_default(), c.decode)
        }
        TokenCommand::Obo {
            cred: c,
            username,
            user_password,
        } => {
            let tc = user_token(conn, &c.blueprint, username, user_password).await?;
            let t1 = t1(conn, &c).await?;
            let t = conn
                .token(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("client_id", &c.agent),
                    ("requested_token_use", "on_behalf_of"),
                    ("assertion", &tc),
                    ("scope", &c.scope),
                    ("client_assertion_type", ASSERTION),
                    ("client_assertion", &t1),
                ])
                .await?;
            show_token(t["access_token"].as_str().unwrap_or_default(), c.decode)
        }
        TokenCommand::Decode { token } => crate::decode::run(crate::decode::DecodeArgs::new(token)),
    }
}

/// The device-code flow with the admin's public client: prints where to sign in, polls until
/// the user has, and returns the token response.
async fn device_code_token(conn: &Conn, scope: &str) -> anyhow::Result<Value> {
    let url = format!("{}/oauth2/v2.0/devicecode", conn.authority);
    let dc: Value = conn
        .http
        .post(&url)
        .form(&[("client_id", conn.client_id.as_str()), ("scope", scope)])
        .send()
        .await?
        .json()
        .await?;
    let Some(device_code) = dc["device_code"].as_str() else {
        bail!(
            "{}",
            dc["error_description"]
                .as_str()
                .unwrap_or("the devicecode endpoint refused the request")
        );
    };
    eprintln!("{}", dc["message"].as_str().unwrap_or_default());
    let interval = dc["interval"].as_u64().unwrap_or(5);
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(interval)).await;
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("client_id", conn.client_id.as_str()),
            ("device_code", device_code),
        ];
        let r: Value = conn
            .http
            .post(conn.token_url())
            .form(&form)
            .send()
            .await?
            .json()
            .await?;
        match r["error"].as_str() {
            None => return Ok(r),
            Some("authorization_pending" | "slow_down") => continue,
            Some(e) => bail!(
                "{e}: {}",
                r["error_description"]
                    .as_str()
                    .unwrap_or("")
                    .split(" Trace ID:")
                    .next()
                    .unwrap_or("")
            ),
        }
    }
}
